//! The machine a command ran on, in one line (CPU model, cores, memory, GPUs): what a report's
//! provenance names so a reader can tell what the wall times mean.

use std::sync::OnceLock;

/// E.g. "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz · 2 cores · 23 GiB · GPU: NVIDIA H200".
pub fn describe() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut parts = vec![cpu, format!("{cores} cores")];
        let mem_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
            t.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        if let Some(k) = mem_kib {
            parts.push(format!("{} GiB", (k as f64 / 1048576.0).round()));
        }
        // GPUs as the driver names them; nothing when there is no driver.
        let gpus = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=name", "--format=csv,noheader"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if !gpus.is_empty() {
            parts.push(format!("GPU: {}", gpus.join(", ")));
        }
        parts.join(" · ")
    })
}
