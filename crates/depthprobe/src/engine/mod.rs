//! Everything that touches the tensor library (tch / LibTorch) lives under this module, so the
//! engine can change in one place. The measures engine never sees a tensor: it gets `f32` slices.

pub mod batched;
pub mod device_probe;
pub mod model;
pub mod sgd;
mod shim;
pub mod trainer;

use anyhow::{bail, Result};
pub use tch::Device;
use tch::{Kind, Tensor};

/// Parse `cpu`, `cuda` or `cuda:N` (availability is checked by `resolve_device`).
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Device::Cuda(n)),
            _ => bail!("device '{s}': expected cpu, cuda or cuda:N"),
        },
    }
}

/// The device, refusing clearly when the GPU asked for is not there.
pub fn resolve_device(s: &str) -> Result<Device> {
    let d = parse_device(s)?;
    if let Device::Cuda(n) = d {
        let count = tch::Cuda::device_count() as usize;
        if count == 0 {
            bail!("device '{s}': no CUDA GPU is visible to LibTorch (tch::Cuda::device_count() = 0); use --device cpu");
        }
        if n >= count {
            bail!("device '{s}': only {count} CUDA device(s) visible (cuda:0..cuda:{})", count - 1);
        }
    }
    Ok(d)
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}"),
    }
}

/// Seed LibTorch's generator and fix its CPU thread count (0 = all cores).
pub fn init_runtime(seed: u64, threads: usize) {
    keep_freed_memory();
    let n = if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads };
    tch::set_num_threads(n as i32);
    // Through the lock: an unlocked reseed on another thread would land in the middle of a
    // with_seed draw (the thread test caught it in CI).
    with_seed(seed, || ());
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
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
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
    let t = t.to_device(Device::Cpu).to_kind(Kind::Double).contiguous().view([-1]);
    let mut v = vec![0.0; t.numel()];
    t.copy_data(&mut v, t.numel());
    v
}

/// Whether a config's training augmentation applies to this data (images only).
pub(crate) fn augments(cfg: &crate::config::Config, ds: &crate::data::Dataset) -> bool {
    cfg.data.augment && ds.shape.len() == 3
}
