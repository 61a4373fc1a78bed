//! Training on a CPU it shares (docs/performance.md, "Sharing the CPU"): the thread count comes
//! from the CPUs the process may use (here a `taskset` affinity mask; cgroup quotas are simulated
//! in `depthprobe_sweep::cpus`'s own tests), `sweep local -j N` divides them among its workers, a
//! chosen count adapts while it trains (the governor's choices are tested in its own file), how
//! LibTorch's OpenMP threads wait is switchable, and none of the wait policies changes a number.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use depthprobe_sweep::cpus;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_depthprobe"))
}

/// `depthprobe args…`, optionally under `taskset -c CPUS`, with `env` set and no OpenMP settings
/// of the caller's.
fn dp(taskset: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = match taskset {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    c.args(args);
    for k in ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "DEPTHPROBE_OMP_WAIT", "OMP_DISPLAY_ENV", cpus::THREADS_ENV] {
        c.env_remove(k);
    }
    c.envs(env.iter().copied());
    let o = c.output().expect("run depthprobe");
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// A tiny run on the built-in data with `threads` and more `[train]` lines.
fn config(dir: &Path, name: &str, threads: usize, train: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "[data]\ndataset = \"synthetic\"\ntrain_per_class = 60\ntest_per_class = 20\n[model]\ndepth = 3\nwidth = 32\n\
             [train]\nepochs = 2\nmilestones = []\nthreads = {threads}\n{train}[probe]\nevery = 1\n"
        ),
    )
    .unwrap();
    p
}

fn cpu(run: &Path) -> serde_json::Value {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    s["cpu"].clone()
}

fn train(dir: &Path, cfg: &Path, name: &str, taskset: Option<&str>, env: &[(&str, &str)]) -> PathBuf {
    let out = dir.join(name);
    dp(taskset, env, &["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    out
}

#[test]
fn threads_follow_the_affinity_mask_and_sweep_local_shares_them() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path(), "tiny", 0, "");
    // One CPU in the mask: one thread, whatever the machine has.
    let c = cpu(&train(t.path(), &cfg, "one", Some("0"), &[]));
    assert_eq!(c["threads"], 1, "{c}");
    assert!(c["threads_from"].as_str().unwrap().contains("affinity mask 1"), "{c}");
    // No mask set: what this process may use.
    let usable = cpus::budget().usable();
    let c = cpu(&train(t.path(), &cfg, "all", None, &[]));
    assert_eq!(c["threads"], usable, "{c}");
    // A thread count in the config is taken as it is.
    let fixed = config(t.path(), "fixed", 3, "");
    let c = cpu(&train(t.path(), &fixed, "fixed", Some("0"), &[]));
    assert_eq!((c["threads"].as_u64(), c["threads_from"].as_str()), (Some(3), Some("train.threads = 3")), "{c}");

    // sweep local -j N: each run gets an equal share.
    let sweep = t.path().join("share.toml");
    std::fs::write(
        &sweep,
        format!("base = \"{}\"\n[axes]\n\"train.seed\" = [0, 1]\n", std::fs::canonicalize(&cfg).unwrap().display()),
    )
    .unwrap();
    for jobs in [1usize, 2] {
        let dir = t.path().join(format!("sweep-j{jobs}"));
        dp(None, &[], &["sweep", "plan", sweep.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
        dp(None, &[], &["sweep", "local", dir.to_str().unwrap(), "-j", &jobs.to_string(), "--quiet"]);
        for e in std::fs::read_dir(dir.join("runs")).unwrap() {
            let p = e.unwrap().path();
            if !p.is_dir() {
                continue;
            }
            let c = cpu(&p);
            assert_eq!(c["threads"], cpus::share(usable, jobs), "-j {jobs}: {c}");
            assert!(c["threads_from"].as_str().unwrap().contains("sweep local's share"), "{c}");
        }
    }
}

#[test]
fn openmp_threads_wait_as_libtorch_does_unless_asked_and_the_users_own_setting_wins() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(t.path(), "tiny", 0, "");
    // LibTorch's OpenMP runtime itself reports how long its threads spin before they sleep (its
    // OMP_WAIT_POLICY line says PASSIVE for an unset policy too: the spin count tells).
    for (env, runtime, recorded) in [
        (None, "GOMP_SPINCOUNT = '300000'", "LibTorch's default (spin, then sleep)"),
        (Some(("DEPTHPROBE_OMP_WAIT", "passive")), "GOMP_SPINCOUNT = '0'", "passive (OMP_WAIT_POLICY=PASSIVE)"),
        (Some(("OMP_WAIT_POLICY", "active")), "GOMP_SPINCOUNT = '30000000000'", "OMP_WAIT_POLICY=active"),
        (
            Some(("GOMP_SPINCOUNT", "1000")),
            "GOMP_SPINCOUNT = '1000'",
            "spin 1000 times, then sleep (GOMP_SPINCOUNT=1000)",
        ),
    ] {
        let name = env.map_or("default", |e| e.0);
        let out = t.path().join(name);
        let mut vars = vec![("OMP_DISPLAY_ENV", "verbose")];
        vars.extend(env);
        let o = dp(None, &vars, &["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
        let shown = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(shown.contains(runtime), "{name}: {shown}");
        assert_eq!(cpu(&out)["omp_wait"], recorded, "{name}");
    }
    // The user's own policy wins over depthprobe's switch.
    let out = t.path().join("both");
    let o = dp(
        None,
        &[("OMP_DISPLAY_ENV", "verbose"), ("DEPTHPROBE_OMP_WAIT", "passive"), ("OMP_WAIT_POLICY", "active")],
        &["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("GOMP_SPINCOUNT = '30000000000'"));
}

/// Only a thread count depthprobe chose gives way on a shared CPU; one the config fixes, the one
/// thread of portable numerics and a single usable CPU stay as they are.
#[test]
fn only_a_chosen_thread_count_adapts() {
    let t = tempfile::tempdir().unwrap();
    let usable = cpus::budget().usable();
    let auto = cpu(&train(t.path(), &config(t.path(), "auto", 0, ""), "auto", None, &[]));
    if usable >= 2 {
        let a = &auto["adaptive"];
        assert_eq!(a["fewer"], (usable / 2).max(1), "{auto}");
        assert!(
            a["timed_s"].as_f64().unwrap() > 0.0 && a["fewer_s"].as_f64().unwrap() <= a["timed_s"].as_f64().unwrap(),
            "{auto}"
        );
    } else {
        assert!(auto.get("adaptive").is_none(), "{auto}");
    }
    for (name, threads, extra, taskset) in
        [("fixed", 2, "", None), ("portable", 0, "numerics = \"portable\"\n", None), ("one-cpu", 0, "", Some("0"))]
    {
        let c = cpu(&train(t.path(), &config(t.path(), name, threads, extra), name, taskset, &[]));
        assert!(c.get("adaptive").is_none(), "{name}: {c}");
    }
}

#[test]
fn the_wait_policy_changes_no_number() {
    let t = tempfile::tempdir().unwrap();
    for (numerics, threads) in [("portable", 0), ("native", 2)] {
        let cfg = config(t.path(), numerics, threads, &format!("numerics = \"{numerics}\"\n"));
        let metrics = |name: &str, env: &[(&str, &str)]| {
            std::fs::read(train(t.path(), &cfg, &format!("{numerics}-{name}"), None, env).join("metrics.csv")).unwrap()
        };
        let default = metrics("default", &[]);
        assert!(default == metrics("passive", &[("DEPTHPROBE_OMP_WAIT", "passive")]), "{numerics}");
        assert!(default == metrics("spin", &[("GOMP_SPINCOUNT", "10000")]), "{numerics}");
    }
}
