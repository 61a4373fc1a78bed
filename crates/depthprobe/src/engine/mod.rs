//! Everything that touches the tensor library (tch / LibTorch) lives under this module, so the
//! engine can change in one place. The measures never see a tensor: they get f32 slices (host
//! reduction) or the statistics a device reduction computed.
//!
//! | concept | file |
//! |---|---|
//! | layers of K networks at once | `layers.rs` |
//! | the network abstraction and the architecture registry | `network.rs` |
//! | one file per architecture | `arch/` |
//! | the trainer of K ≥ 1 networks: the model, epochs, steps | `trainer.rs` |
//! | its batches, assembled on the host | `batches.rs` |
//! | its probe: batches streamed through the two-pass driver, the probe cache | `probe_stream.rs` |
//! | its checkpoints | `checkpoint.rs` |
//! | its thread count on a shared CPU | `threads.rs` |
//! | augmented training batches assembled on the device | `device_data.rs` |
//! | the probe's reduction on the device | `device_reducer.rs` |
//! | SGD (fused kernel through `shim.rs` / `csrc/shim.cpp`) | `sgd.rs` |

pub mod arch;
mod batches;
mod checkpoint;
mod device_cka;
pub mod device_data;
pub mod device_reducer;
pub mod layers;
pub mod network;
mod probe_stream;
mod sgd;
mod shim;
mod step_graph;
mod threads;
pub mod trainer;
mod weight_spectra;

use anyhow::{bail, Result};
use depthprobe_config::{Device, Numerics};
use depthprobe_runfolder::CpuUse;
use depthprobe_sweep::cpus;
use tch::{Kind, Tensor};

/// The LibTorch device of a configured one, refusing clearly when the GPU asked for is not there.
pub fn resolve_device(d: Device) -> Result<tch::Device> {
    match d {
        Device::Cpu => Ok(tch::Device::Cpu),
        Device::Cuda(n) => {
            let count = tch::Cuda::device_count() as usize;
            if count == 0 {
                bail!("device '{d}': no CUDA GPU is visible to LibTorch (tch::Cuda::device_count() = 0); use --device cpu");
            }
            if n >= count {
                bail!("device '{d}': only {count} CUDA device(s) visible (cuda:0..cuda:{})", count - 1);
            }
            Ok(tch::Device::Cuda(n))
        }
    }
}

/// Refuse a configured GPU that is not there, before anything is written.
pub fn check_device(d: Device) -> Result<()> {
    resolve_device(d).map(|_| ())
}

/// Set up LibTorch for a run: CPU kernels and thread count (`numerics`; `threads` = 0 leaves the
/// count to depthprobe: `depthprobe_sweep::cpus::default_threads`), the allocator, and the
/// generator's seed, and say how the CPU is used. Call before the first tensor operation of the
/// process: the kernel choice is read once, at the first operation.
pub fn init_runtime(seed: u64, threads: usize, numerics: Numerics) -> CpuUse {
    keep_freed_memory();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (n, from) = match numerics {
        // One thread (reduction order depends on the thread count), ATen's AVX2 kernels, and MKL's
        // COMPATIBLE reproducibility branch: MKL's AVX2 branch is reproducible on Intel CPUs only
        // (on others MKL dispatches by itself), COMPATIBLE on every x86-64 CPU; STRICT drops its
        // alignment condition (docs/method.md, "Reproducibility").
        Numerics::Portable => {
            for (k, v) in
                [("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "COMPATIBLE,STRICT"), ("ONEDNN_MAX_CPU_ISA", "AVX2")]
            {
                std::env::set_var(k, v);
            }
            (1, "train.numerics = \"portable\": one thread".to_string())
        }
        Numerics::Native if threads == 0 => cpus::default_threads(&env, &cpus::budget()),
        Numerics::Native => (threads, format!("train.threads = {threads}")),
    };
    tch::set_num_threads(n as i32);
    // Through the lock: an unlocked reseed on another thread would land in the middle of a
    // with_seed draw (the thread test caught it in CI).
    with_seed(seed, || ());
    CpuUse { threads: n, threads_from: from, omp_wait: cpus::omp_wait(&env), adaptive: None }
}

/// Run `draw` right after seeding LibTorch's default generator with `seed`, under a lock. That
/// generator is process-global, so two networks built on two threads at once (parallel tests,
/// a library user's threads) would otherwise take each other's draws: a flaky test found it.
pub fn with_seed<T>(seed: u64, draw: impl FnOnce() -> T) -> T {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed as i64);
    draw()
}

/// Every CPU training step allocates and frees the same multi-MB activation and gradient
/// buffers. glibc serves those with mmap and returns them with munmap (or trims the heap), so
/// each step page-faults them in again: about 330,000 faults in a CONV-8-64 benchmark process,
/// against 95,000 with these limits (docs/performance.md). Buffers up to 64 MiB now come from
/// the heap and stay there for reuse; larger ones are still mapped and returned.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// A tensor's values as f32 on the host, into a reused buffer.
pub(crate) fn copy_f32(t: &Tensor, buf: &mut Vec<f32>) {
    let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    buf.resize(t.numel(), 0.0);
    t.copy_data(buf, t.numel());
}

/// A tensor's values as f32 on the host.
pub(crate) fn host_f32(t: &Tensor) -> Vec<f32> {
    let mut v = Vec::new();
    copy_f32(t, &mut v);
    v
}

/// A tensor's values as f64 on the host.
pub(crate) fn host_f64(t: &Tensor) -> Vec<f64> {
    let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Double).contiguous().view([-1]);
    let mut v = vec![0.0; t.numel()];
    t.copy_data(&mut v, t.numel());
    v
}
