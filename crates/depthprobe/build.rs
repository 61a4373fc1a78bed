// One binary for CPU and CUDA. Debian's linker runs with --as-needed, which drops
// libtorch_cuda.so (nothing references it directly) and tch then sees no GPU; keep it NEEDED.
// Also record the wheel's torch/lib as an rpath so the binary runs without LD_LIBRARY_PATH
// (on the GPU machine, LD_LIBRARY_PATH pointing at its own PyTorch takes precedence: RUNPATH).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEPTHPROBE_TORCH_LIB");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch_cuda");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    if let Ok(lib) = std::env::var("DEPTHPROBE_TORCH_LIB") {
        println!("cargo:rustc-link-search=native={lib}");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
