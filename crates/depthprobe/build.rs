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
    let Some(lib) = torch_lib() else {
        panic!("LibTorch not found: set LIBTORCH, DEPTHPROBE_TORCH_LIB, or a PYTHON_SYS_EXECUTABLE with torch");
    };
    println!("cargo:rustc-link-search=native={lib}");
    // Only what uses LibTorch links libtorch_cuda whether referenced or not: the engine, the
    // integration tests and the examples. The `depthprobe` binary (src/main.rs) must not, or
    // `measure` pays LibTorch's start-up; the RUNPATH alone loads nothing, and every target
    // that links LibTorch (the library's unit tests too) needs it.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // c10_cuda: the shim's CUDA graph calls (streams, the caching allocator) reference it.
    for a in ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"] {
        println!("cargo:rustc-link-arg-bin=depthprobe-engine={a}");
        println!("cargo:rustc-link-arg-tests={a}");
        println!("cargo:rustc-link-arg-examples={a}");
    }
    shim(&lib);
    commit();
}

/// The commit the binary is built from, for the provenance of results (summary.json's
/// `producer`, the report). "+dirty" when tracked files differ from it; "unknown" outside git.
fn commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let id = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(id) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            format!("{id}{}", if dirty { "+dirty" } else { "" })
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=DEPTHPROBE_COMMIT={id}");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        // Rebuild when HEAD moves (a commit, a checkout), the index changes (staging) or any
        // source changes (a build from a changed tree is "+dirty").
        for src in ["src", "csrc", "../measures/src", "../config/src", "../runfolder/src", "../formats/src"] {
            println!("cargo:rerun-if-changed={src}");
        }
        for f in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={dir}/{f}");
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
    }
}

/// csrc/shim.cpp: the ATen ops tch does not wrap (fused SGD), against the headers of the
/// LibTorch we link (`<lib>/../include`, as in the wheel and in a LibTorch download).
fn shim(lib: &str) {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    let include = std::path::Path::new(lib).join("../include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let mut build = cc::Build::new();
    // CUDA graphs need CUDA's runtime headers: the wheel's NVIDIA package (CUDA 13 or 12), or a
    // CUDA toolkit. Without them the shim says, at run time, that graphs are not built in.
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let site = std::path::Path::new(lib).join("../..");
    let mut cuda: Vec<std::path::PathBuf> =
        ["nvidia/cu13/include", "nvidia/cuda_runtime/include"].iter().map(|p| site.join(p)).collect();
    if let Ok(home) = std::env::var("CUDA_HOME") {
        cuda.push(std::path::Path::new(&home).join("include"));
    }
    cuda.push("/usr/local/cuda/include".into());
    // A header package installed later (scripts/env.sh adds crt/) changes the folder.
    for d in cuda.iter().filter(|d| d.is_dir()) {
        println!("cargo:rerun-if-changed={}", d.display());
    }
    // cuda_runtime.h includes crt/host_config.h, which the wheel's runtime package lacks.
    if let Some(dir) =
        cuda.iter().find(|d| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists())
    {
        build.include(dir).define("DP_CUDA_GRAPHS", None);
    } else {
        println!("cargo:warning=CUDA headers not found: built without CUDA graph support (train.graph)");
    }
    build
        .cpp(true)
        .file("csrc/shim.cpp")
        .include(&include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("depthprobe_shim");
}
