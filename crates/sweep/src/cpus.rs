//! How many CPUs this process may really use, and how LibTorch's threads wait for each other
//! (docs/performance.md, "Sharing the CPU"). The machine's core count says little in a
//! container, on a login node or under `taskset`: what counts is the CPU affinity mask and the
//! cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), of this cgroup and
//! every cgroup above it. No LibTorch here: the launcher reads it before the engine starts.

use std::path::{Path, PathBuf};

/// What limits this process's CPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuBudget {
    /// CPUs in the affinity mask (`sched_getaffinity`).
    pub affinity: usize,
    /// The tightest cgroup CPU quota on the way to the root, in CPUs (None: no quota).
    pub quota: Option<f64>,
    /// Where that quota was read.
    pub quota_file: Option<PathBuf>,
}

impl CpuBudget {
    /// Threads worth running: the affinity mask, capped by the quota rounded up (a quota of 1.5
    /// CPUs gets 2 threads, which then share 1.5 CPUs), at least 1.
    pub fn usable(&self) -> usize {
        let q = self.quota.map_or(usize::MAX, |q| q.ceil().max(1.0) as usize);
        self.affinity.min(q).max(1)
    }

    /// "2 CPUs (affinity mask 2, cgroup quota 1.50 from /sys/fs/cgroup/cpu.max)".
    pub fn describe(&self) -> String {
        let quota = match (&self.quota, &self.quota_file) {
            (Some(q), Some(f)) => format!("cgroup quota {q:.2} from {}", f.display()),
            _ => "no cgroup quota".to_string(),
        };
        format!("{} CPUs (affinity mask {}, {quota})", self.usable(), self.affinity)
    }
}

/// The CPUs this process may use, read now.
pub fn budget() -> CpuBudget {
    budget_at(Path::new("/"), affinity())
}

/// `budget()` with `/proc` and `/sys` under `root` (tests give a folder laid out like them).
pub fn budget_at(root: &Path, affinity: usize) -> CpuBudget {
    let (quota, quota_file) = match cgroup_quota(root) {
        Some((q, f)) => (Some(q), Some(f)),
        None => (None, None),
    };
    CpuBudget { affinity, quota, quota_file }
}

/// CPUs in this process's affinity mask (the machine's count if it cannot be read).
fn affinity() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return n as usize;
            }
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A cgroup file system as `/proc/self/mountinfo` lists it.
struct CgroupMount {
    /// The cgroup the mount shows at its mount point (in a container often not "/").
    root: String,
    point: PathBuf,
    /// cgroup2 (every controller) or v1 with these controllers.
    v2: bool,
    controllers: Vec<String>,
}

/// The cgroup mounts under `root`'s `/proc/self/mountinfo`; without one, the usual places.
fn cgroup_mounts(root: &Path) -> Vec<CgroupMount> {
    let Ok(text) = std::fs::read_to_string(root.join("proc/self/mountinfo")) else {
        let m = |p: &str, v2: bool, c: &[&str]| CgroupMount {
            root: "/".into(),
            point: p.into(),
            v2,
            controllers: c.iter().map(|s| s.to_string()).collect(),
        };
        return vec![
            m("/sys/fs/cgroup", true, &[]),
            m("/sys/fs/cgroup/cpu,cpuacct", false, &["cpu", "cpuacct"]),
            m("/sys/fs/cgroup/cpu", false, &["cpu"]),
        ];
    };
    let mut v = Vec::new();
    for line in text.lines() {
        // id parent major:minor root mount-point options [optional…] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let unescape = |s: &str| s.replace("\\040", " ");
        let (v2, controllers) = match r[0] {
            "cgroup2" => (true, Vec::new()),
            "cgroup" => (false, r[2].split(',').map(String::from).collect()),
            _ => continue,
        };
        v.push(CgroupMount { root: unescape(l[3]), point: PathBuf::from(unescape(l[4])), v2, controllers });
    }
    v
}

/// The tightest quota of this process's cgroup and the cgroups above it, in CPUs, with its file.
fn cgroup_quota(root: &Path) -> Option<(f64, PathBuf)> {
    let text = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let mounts = cgroup_mounts(root);
    let mut best: Option<(f64, PathBuf)> = None;
    for line in text.lines() {
        // hierarchy-id:controllers:path; cgroup2 is "0::/path".
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let v2 = controllers.is_empty();
        if !v2 && !controllers.split(',').any(|c| c == "cpu") {
            continue;
        }
        let matching = mounts.iter().filter(|m| m.v2 == v2 && (v2 || m.controllers.iter().any(|c| c == "cpu")));
        for m in matching {
            let base = root.join(m.point.strip_prefix("/").unwrap_or(&m.point));
            // The path relative to what the mount shows; a path outside it (a container's view of
            // the host's hierarchy) leaves the mount's own cgroup.
            let rel = Path::new(path).strip_prefix(&m.root).map(Path::to_path_buf).unwrap_or_default();
            for dir in up_from(&base, &rel) {
                let q = if v2 {
                    read_v2(&dir.join("cpu.max")).map(|q| (q, dir.join("cpu.max")))
                } else {
                    read_v1(&dir.join("cpu.cfs_quota_us"), &dir.join("cpu.cfs_period_us"))
                        .map(|q| (q, dir.join("cpu.cfs_quota_us")))
                };
                if let Some((q, f)) = q {
                    if best.as_ref().is_none_or(|(b, _)| q < *b) {
                        best = Some((q, f));
                    }
                }
            }
        }
    }
    best
}

/// The folder `rel` under the mount folder `base` and each one above it, up to `base` (only
/// `base` when `rel` is not there).
fn up_from(base: &Path, rel: &Path) -> Vec<PathBuf> {
    let mut dir = base.join(rel);
    if !dir.is_dir() {
        dir = base.to_path_buf();
    }
    let mut v = Vec::new();
    while dir.starts_with(base) {
        v.push(dir.clone());
        if !dir.pop() {
            break;
        }
    }
    v
}

/// `cpu.max`: "max 100000" (none) or "QUOTA PERIOD" in microseconds.
fn read_v2(f: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(f).ok()?;
    let mut w = text.split_whitespace();
    let (quota, period) = (w.next()?, w.next().unwrap_or("100000"));
    ratio(quota.parse().ok()?, period.parse().ok()?)
}

/// v1: `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`.
fn read_v1(quota: &Path, period: &Path) -> Option<f64> {
    let q: i64 = std::fs::read_to_string(quota).ok()?.trim().parse().ok()?;
    let p: i64 = std::fs::read_to_string(period).ok()?.trim().parse().ok()?;
    ratio(q, p)
}

fn ratio(quota: i64, period: i64) -> Option<f64> {
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// Set by `sweep local` for each run it starts: that worker's share of the CPUs, used when the
/// run's config leaves the thread count to depthprobe (`train.threads = 0`).
pub const THREADS_ENV: &str = "DEPTHPROBE_THREADS";

/// Each of `jobs` workers' share of `usable` CPUs: an equal whole share, at least one thread
/// (more workers than CPUs share them through the scheduler).
pub fn share(usable: usize, jobs: usize) -> usize {
    (usable / jobs.max(1)).max(1)
}

/// The threads of a run whose config says `train.threads = 0`, and where the number came from:
/// `sweep local`'s share ([`THREADS_ENV`]), else SLURM's allotment (`SLURM_CPUS_PER_TASK`), else
/// every CPU this process may use ([`budget`]).
pub fn default_threads(get: &dyn Fn(&str) -> Option<String>, budget: &CpuBudget) -> (usize, String) {
    let number = |k: &str| get(k).and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0);
    if let Some(n) = number(THREADS_ENV) {
        return (n, format!("sweep local's share of the CPUs ({THREADS_ENV}={n})"));
    }
    if let Some(n) = number("SLURM_CPUS_PER_TASK") {
        return (n, format!("SLURM_CPUS_PER_TASK={n}"));
    }
    (budget.usable(), budget.describe())
}

/// How LibTorch's OpenMP threads wait in this process, from its environment (read once, when
/// LibTorch's OpenMP runtime loads).
pub fn omp_wait(get: &dyn Fn(&str) -> Option<String>) -> String {
    match (get("OMP_WAIT_POLICY"), get("GOMP_SPINCOUNT")) {
        (Some(p), _) if p.eq_ignore_ascii_case("passive") => "passive (OMP_WAIT_POLICY=PASSIVE)".into(),
        (Some(p), _) => format!("OMP_WAIT_POLICY={p}"),
        (None, Some(n)) => format!("spin {n} times, then sleep (GOMP_SPINCOUNT={n})"),
        (None, None) => "LibTorch's default (spin, then sleep)".into(),
    }
}

/// The environment LibTorch's OpenMP threads read when the engine starts: with
/// `DEPTHPROBE_OMP_WAIT=passive`, threads that wait for their partners sleep at once instead of
/// spinning first (`OMP_WAIT_POLICY=PASSIVE`). Not the default: on the 2-core development machine
/// it cost 37% alone (a sleeping thread is woken at every parallel region), and beside a busy
/// process a run whose thread count depthprobe chose does better by giving way itself
/// (`governor.rs`; docs/performance.md, "Sharing the CPU"). An OMP_WAIT_POLICY or GOMP_SPINCOUNT
/// of the user's is left alone.
pub fn omp_environment(get: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    if get("OMP_WAIT_POLICY").is_some() || get("GOMP_SPINCOUNT").is_some() {
        return Vec::new();
    }
    match get("DEPTHPROBE_OMP_WAIT").map(|v| v.to_ascii_lowercase()).as_deref() {
        Some("passive") => vec![("OMP_WAIT_POLICY", "PASSIVE".to_string())],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    const V2: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn cgroup_v2_quota_of_this_cgroup_and_the_ones_above() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "proc/self/mountinfo", V2);
        write(r, "proc/self/cgroup", "0::/user.slice/job.scope\n");
        write(r, "sys/fs/cgroup/cpu.max", "max 100000\n");
        write(r, "sys/fs/cgroup/user.slice/cpu.max", "max 100000\n");
        write(r, "sys/fs/cgroup/user.slice/job.scope/cpu.max", "150000 100000\n");
        let b = budget_at(r, 16);
        assert_eq!(b.quota, Some(1.5));
        assert_eq!(b.usable(), 2, "1.5 CPUs: 2 threads");
        assert!(b.describe().contains("job.scope/cpu.max"), "{}", b.describe());
        // A tighter parent wins.
        write(r, "sys/fs/cgroup/user.slice/cpu.max", "100000 100000\n");
        assert_eq!(budget_at(r, 16).usable(), 1);
        // The affinity mask, when it is tighter.
        write(r, "sys/fs/cgroup/user.slice/cpu.max", "800000 100000\n");
        write(r, "sys/fs/cgroup/user.slice/job.scope/cpu.max", "max 100000\n");
        assert_eq!(budget_at(r, 3).usable(), 3);
        assert_eq!(budget_at(r, 16).usable(), 8);
        // Without a mountinfo, the usual place.
        std::fs::remove_file(r.join("proc/self/mountinfo")).unwrap();
        assert_eq!(budget_at(r, 16).usable(), 8);
    }

    #[test]
    fn cgroup_v1_where_mountinfo_says_and_a_containers_own_view() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        // A docker container: the cpu controller's mount shows the container's own cgroup at its
        // mount point, and /proc/self/cgroup names it by the host's path.
        write(
            r,
            "proc/self/mountinfo",
            "40 31 0:37 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
             41 31 0:38 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n",
        );
        write(r, "proc/self/cgroup", "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n");
        write(r, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000\n");
        write(r, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        let b = budget_at(r, 64);
        assert_eq!((b.quota, b.usable()), (Some(2.5), 3));
        write(r, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
        assert_eq!(budget_at(r, 64), CpuBudget { affinity: 64, quota: None, quota_file: None });

        // A hybrid host (this project's CI machine): cpu mounted alone, cgroup2 elsewhere
        // without the cpu controller, the process in a child cgroup.
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "proc/self/mountinfo",
            "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        );
        write(r, "proc/self/cgroup", "1:cpu:/jobs/7\n0::/\n");
        write(r, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
        write(r, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
        write(r, "sys/fs/cgroup/cpu/jobs/7/cpu.cfs_quota_us", "50000\n");
        write(r, "sys/fs/cgroup/cpu/jobs/7/cpu.cfs_period_us", "100000\n");
        let b = budget_at(r, 2);
        assert_eq!((b.quota, b.usable()), (Some(0.5), 1));
        assert!(b.describe().ends_with("jobs/7/cpu.cfs_quota_us)"), "{}", b.describe());
    }

    #[test]
    fn nothing_readable_means_the_affinity_mask() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(budget_at(t.path(), 5).usable(), 5);
        write(t.path(), "proc/self/cgroup", "0::/\n");
        write(t.path(), "sys/fs/cgroup/cpu.max", "garbage\n");
        assert_eq!(budget_at(t.path(), 5).usable(), 5);
        assert_eq!(budget_at(t.path(), 0).usable(), 1);
    }

    #[test]
    fn threads_come_from_sweep_local_then_slurm_then_the_budget() {
        let b = CpuBudget { affinity: 6, quota: Some(3.5), quota_file: Some("/q".into()) };
        let none = |_: &str| None;
        assert_eq!(default_threads(&none, &b).0, 4);
        assert!(default_threads(&none, &b).1.contains("affinity mask 6, cgroup quota 3.50"));
        let slurm = |k: &str| (k == "SLURM_CPUS_PER_TASK").then(|| "3".to_string());
        assert_eq!(default_threads(&slurm, &b), (3, "SLURM_CPUS_PER_TASK=3".into()));
        let both = |k: &str| match k {
            "SLURM_CPUS_PER_TASK" => Some("3".to_string()),
            THREADS_ENV => Some("2".to_string()),
            _ => None,
        };
        assert_eq!(default_threads(&both, &b).0, 2);
        let bad = |k: &str| (k == THREADS_ENV).then(|| "zero".to_string());
        assert_eq!(default_threads(&bad, &b).0, 4, "an unreadable share is ignored");
        assert_eq!((share(8, 3), share(2, 2), share(2, 4), share(5, 0)), (2, 1, 1, 5));
    }

    #[test]
    fn the_wait_policy_is_passive_only_when_asked_and_the_users_own_wins() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(a, _)| *a == k).map(|(_, v)| v.to_string())
        };
        assert!(omp_environment(&env(&[])).is_empty());
        let passive = vec![("OMP_WAIT_POLICY", "PASSIVE".to_string())];
        assert_eq!(omp_environment(&env(&[("DEPTHPROBE_OMP_WAIT", "Passive")])), passive);
        assert!(omp_environment(&env(&[("DEPTHPROBE_OMP_WAIT", "active")])).is_empty());
        assert!(omp_environment(&env(&[("DEPTHPROBE_OMP_WAIT", "passive"), ("OMP_WAIT_POLICY", "active")])).is_empty());
        assert!(omp_environment(&env(&[("DEPTHPROBE_OMP_WAIT", "passive"), ("GOMP_SPINCOUNT", "10")])).is_empty());
        assert_eq!(omp_wait(&env(&[])), "LibTorch's default (spin, then sleep)");
        assert_eq!(omp_wait(&env(&[("OMP_WAIT_POLICY", "PASSIVE")])), "passive (OMP_WAIT_POLICY=PASSIVE)");
    }
}
