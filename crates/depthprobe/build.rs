// One binary for CPU and CUDA. Debian's linker runs with --as-needed, which drops
// libtorch_cuda.so (nothing references it directly) and tch then sees no GPU; keep it NEEDED.
// Also record LibTorch's lib folder as the RUNPATH so the binary runs without LD_LIBRARY_PATH
// (on a GPU machine with its own PyTorch, LD_LIBRARY_PATH still takes precedence over RUNPATH).
use std::process::Command;

fn torch_lib() -> Option<String> {
    if let Ok(lib) = std::env::var("DEPTHPROBE_TORCH_LIB") {
        return Some(lib);
    }
    if let Ok(root) = std::env::var("LIBTORCH") {
        return Some(format!("{root}/lib"));
    }
    // As torch-sys does with LIBTORCH_USE_PYTORCH: ask the Python that has torch.
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    for v in ["LIBTORCH", "LIBTORCH_USE_PYTORCH", "DEPTHPROBE_TORCH_LIB", "PYTHON_SYS_EXECUTABLE"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch_cuda");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    if let Some(lib) = torch_lib() {
        println!("cargo:rustc-link-search=native={lib}");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
