//! A batched group of runs killed with SIGKILL resumes from its last mid-run checkpoint (not
//! from epoch 0) and ends exactly where an uninterrupted group ends (CPU, byte-identical
//! metrics.csv), with every run's summary recording the group. A stop signal (SIGTERM, SIGINT)
//! checkpoints the step training is at, marks the runs interrupted and exits 128 + the signal;
//! they continue from that step to the same bytes (`train`, `sweep run`, `sweep local`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use depthprobe::config::{Arch, Config, ModelConfig, Numerics};
use depthprobe::engine::init_runtime;
use depthprobe::engine::trainer::{EpochEnd, Group, Trainer};
use depthprobe::sweep::SweepDir;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_depthprobe"))
}

fn sweep_file(dir: &Path) -> PathBuf {
    let p = dir.join("group.toml");
    std::fs::write(
        &p,
        "name = \"group\"\n[config.data]\ndataset = \"synthetic\"\n[config.model]\nwidth = 64\ndepth = 4\n\
         [config.train]\nepochs = 14\nmilestones = [8]\nthreads = 1\ncheckpoint_every = 1\n\
         [config.probe]\nevery = 3\n[axes]\n\"train.seed\" = [0, 1, 2]\n\"corruption.p\" = [0.0, 0.2]\n",
    )
    .unwrap();
    p
}

fn plan(dir: &Path, file: &Path) -> Vec<PathBuf> {
    let st = Command::new(bin()).args(["sweep", "plan"]).arg(file).arg("--out").arg(dir).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let plan = SweepDir(dir.to_path_buf()).read_plan().unwrap();
    plan.runs.iter().map(|r| dir.join("runs").join(&r.id)).collect()
}

fn checkpoint_epoch(run: &Path) -> u64 {
    std::fs::read_to_string(run.join("checkpoint.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["epoch"].as_u64())
        .unwrap_or(0)
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_killed_batched_group_resumes_from_its_last_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let f = sweep_file(t.path());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let runs_a = plan(&a, &f);
    let runs_b = plan(&b, &f);
    let all = "0,1,2,3,4,5";
    let st = Command::new(bin()).args(["sweep", "run"]).arg(&a).args(["--index", all, "--quiet"]).status().unwrap();
    assert!(st.success());
    // Kill the same group at a random moment after every run has checkpointed epoch 4: within
    // four times the time epoch 4 took, while ten epochs are still to come (so the kill lands
    // before the end however fast this machine trains).
    let mut child = Command::new(bin())
        .args(["sweep", "run"])
        .arg(&b)
        .args(["--index", all, "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |epoch: u64| {
        let t0 = Instant::now();
        while runs_b.iter().any(|r| checkpoint_epoch(r) < epoch) {
            assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint of epoch {epoch} appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(3);
    let t3 = Instant::now();
    wait_for(4);
    let epoch = t3.elapsed().as_millis() as u64;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let delay = depthprobe::rng::Rng::new(nanos).below(4 * epoch + 1);
    std::thread::sleep(Duration::from_millis(delay));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        runs_b.iter().all(|r| summary(r)["status"] == "running"),
        "the kill must land before the group finished (delay {delay} ms)"
    );
    let at_kill: Vec<u64> = runs_b.iter().map(|r| checkpoint_epoch(r)).collect();
    let o = Command::new(bin()).args(["sweep", "run"]).arg(&b).args(["--index", all]).output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    // One group of six networks, continued from the epoch every run had a checkpoint of.
    let from = at_kill.iter().min().unwrap();
    assert!(*from >= 4, "checkpoints at the kill: {at_kill:?}");
    assert!(log.contains(&format!("6 networks batched · resuming from epoch {from} of 14")), "{log}");
    for (ra, rb) in runs_a.iter().zip(&runs_b) {
        let (ma, mb) = (std::fs::read(ra.join("metrics.csv")).unwrap(), std::fs::read(rb.join("metrics.csv")).unwrap());
        assert!(ma == mb, "{}: metrics.csv after kill -9 (delay {delay} ms) and resume differs", rb.display());
        let s = summary(rb);
        assert_eq!(s["status"], "done");
        assert_eq!(s["batch"]["size"], 6);
        assert_eq!(s["batch"]["runs"].as_array().unwrap().len(), 6);
        assert_eq!(std::fs::read_dir(rb.join("checkpoints")).unwrap().count(), 1, "older states are removed");
    }
    // A run trained alone records no group.
    let one = t.path().join("one");
    let cfg = runs_a[0].join("config.toml");
    let st = Command::new(bin())
        .arg("train")
        .arg(&cfg)
        .arg("--out")
        .arg(&one)
        .arg("--quiet")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(summary(&one).get("batch").is_none());
}

fn run_files(runs: &[PathBuf]) -> Vec<Vec<u8>> {
    runs.iter().map(|r| std::fs::read(r.join("metrics.csv")).unwrap()).collect()
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// SIGTERM after step 2 of epoch 5 (raised at that exact step through the real handler by the
/// test hook DEPTHPROBE_STOP_AT): every run of the group checkpoints that step, says so, and
/// the rerun continues from it to the bytes of an uninterrupted group.
#[test]
fn a_stop_signal_checkpoints_the_step_and_the_group_continues_from_it() {
    let t = tempfile::tempdir().unwrap();
    let f = sweep_file(t.path());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let runs_a = plan(&a, &f);
    let runs_b = plan(&b, &f);
    let all = "0,1,2,3,4,5";
    let st = Command::new(bin()).args(["sweep", "run"]).arg(&a).args(["--index", all, "--quiet"]).status().unwrap();
    assert!(st.success());
    let o = Command::new(bin())
        .args(["sweep", "run"])
        .arg(&b)
        .args(["--index", all, "--quiet"])
        .env("DEPTHPROBE_STOP_AT", "5:2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("6 of 6 runs stopped (checkpointed)"), "{}", stderr_of(&o));
    for r in &runs_b {
        let c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r.join("checkpoint.json")).unwrap()).unwrap();
        assert_eq!((c["epoch"].as_u64(), c["step"].as_u64()), (Some(4), Some(2)), "{c}");
        let s = summary(r);
        assert_eq!(s["status"], "interrupted");
        assert!(s["reason"].as_str().unwrap().contains("SIGTERM at step 2 of epoch 5"), "{s}");
        assert_eq!(std::fs::read_dir(r.join("checkpoints")).unwrap().count(), 1, "older states are removed");
    }
    let status = Command::new(bin()).args(["sweep", "status"]).arg(&b).output().unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("6 interrupted"));
    let o = Command::new(bin()).args(["sweep", "run"]).arg(&b).args(["--index", all]).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("6 networks batched · resuming from step 2 of epoch 5"), "{}", stderr_of(&o));
    assert!(run_files(&runs_a) == run_files(&runs_b), "metrics.csv after the stop and the continuation differ");
}

/// Real signals at a random moment: Ctrl-C (SIGINT) on `train`, SIGTERM on `sweep local`. Each
/// exits 128 + the signal, leaves its runs interrupted, and continues to the same bytes.
#[test]
fn sigint_and_sigterm_at_a_random_moment_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("run.toml");
    std::fs::write(
        &cfg,
        "[data]\ndataset = \"synthetic\"\n[model]\nwidth = 64\ndepth = 4\n[train]\nepochs = 12\nmilestones = [8]\n\
         threads = 1\n[probe]\nevery = 4\n",
    )
    .unwrap();
    let (reference, cut) = (t.path().join("ref"), t.path().join("cut"));
    let st = Command::new(bin()).arg("train").arg(&cfg).arg("--out").arg(&reference).arg("--quiet").output().unwrap();
    assert!(st.status.success());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let delay = Duration::from_millis(depthprobe::rng::Rng::new(nanos).below(400));
    let child = Command::new(bin())
        .arg("train")
        .arg(&cfg)
        .arg("--out")
        .arg(&cut)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once training has begun (config.toml is written before the first step).
    let t0 = Instant::now();
    while !cut.join("config.toml").exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "training never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(delay);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    let s = summary(&cut);
    if s["status"] == "done" {
        // The run had already finished (a slow machine), or the signal came after its last step
        // (then the exit status still says it was received): nothing to check but its result.
        assert!(matches!(o.status.code(), Some(0) | Some(130)), "{:?}", o.status);
    } else {
        assert_eq!(o.status.code(), Some(130), "delay {delay:?}: {}", stderr_of(&o));
        assert_eq!(s["status"], "interrupted", "delay {delay:?}");
        assert!(stderr_of(&o).contains("depthprobe train --resume"), "{}", stderr_of(&o));
        let o = Command::new(bin()).args(["train", "--resume"]).arg(&cut).arg("--quiet").output().unwrap();
        assert!(o.status.success(), "{}", stderr_of(&o));
    }
    assert!(
        std::fs::read(reference.join("metrics.csv")).unwrap() == std::fs::read(cut.join("metrics.csv")).unwrap(),
        "delay {delay:?}: metrics.csv differs after SIGINT and --resume"
    );

    // SIGTERM to `sweep local` (not to its children): it stops its children, which checkpoint.
    let f = sweep_file(t.path());
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let runs_a = plan(&a, &f);
    let runs_b = plan(&b, &f);
    let st = Command::new(bin()).args(["sweep", "local"]).arg(&a).args(["-j", "2", "--quiet"]).output().unwrap();
    assert!(st.status.success());
    let child = Command::new(bin())
        .args(["sweep", "local"])
        .arg(&b)
        .args(["-j", "2", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !runs_b.iter().any(|r| r.join("metrics.csv").exists()) {
        assert!(t0.elapsed() < Duration::from_secs(60), "no run started");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(delay / 4);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let statuses: Vec<String> =
        runs_b.iter().filter(|r| r.join("summary.json").exists()).map(|r| summary(r)["status"].to_string()).collect();
    if o.status.code() != Some(0) {
        assert_eq!(o.status.code(), Some(143), "{}", stderr_of(&o));
        assert!(statuses.iter().all(|s| s == "\"done\"" || s == "\"interrupted\""), "{statuses:?}");
        assert!(statuses.iter().any(|s| s == "\"interrupted\""), "{statuses:?}");
        let o = Command::new(bin()).args(["sweep", "local"]).arg(&b).args(["-j", "2", "--quiet"]).output().unwrap();
        assert!(o.status.success(), "{}", stderr_of(&o));
    }
    assert!(run_files(&runs_a) == run_files(&runs_b), "metrics.csv differs after SIGTERM to sweep local");
}

/// The cursor of a stopped epoch holds all its state, the augmentation generators included:
/// two ConvNets on CIFAR images with augmentation, stopped after step 3 of epoch 2, saved,
/// loaded into a fresh trainer and continued, equal an unstopped trainer bit for bit.
#[test]
fn a_stopped_epoch_continues_bit_for_bit_with_augmentation() {
    let ds = common::cifar_sample(8, 2);
    let mut c = Config {
        model: ModelConfig { arch: Arch::Conv, depth: 2, width: 8, ..Default::default() },
        ..Default::default()
    };
    c.train.batch_size = 16;
    c.train.warmup_epochs = 0;
    c.train.milestones = vec![];
    let g = Group { model: &c.model, train: &c.train, seeds: vec![3, 4], augment: true };
    let data = [&ds, &ds];
    let fresh = || {
        init_runtime(0, 1, Numerics::Native);
        Trainer::new(&g, &data).unwrap()
    };
    let mut whole = fresh();
    whole.train_epoch(&data, 1);
    let want = whole.train_epoch(&data, 2);
    let mut first = fresh();
    first.train_epoch(&data, 1);
    let EpochEnd::Stopped(cursor) = first.train_epoch_from(&data, 2, None, &mut |step| step == 3) else {
        panic!("the epoch did not stop")
    };
    assert_eq!(cursor.step, 3);
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..2).map(|k| dir.path().join(format!("{k}.safetensors"))).collect();
    let state = first.host_state(Some(&cursor));
    for (k, p) in paths.iter().enumerate() {
        state.save(k, p).unwrap();
    }
    let mut second = fresh();
    let parts: Vec<_> = paths.iter().enumerate().map(|(k, p)| second.load(k, p).unwrap().unwrap()).collect();
    let cursor = second.cursor(&parts).unwrap();
    let EpochEnd::Done(got) = second.train_epoch_from(&data, 2, Some(cursor), &mut |_| false) else {
        panic!("stopped again")
    };
    for k in 0..2 {
        assert_eq!((got[k].loss, got[k].acc), (want[k].loss, want[k].acc), "network {k}: epoch statistics");
        let (a, b) = (whole.network_variables(k), second.network_variables(k));
        for (name, v) in &a {
            assert!(v.equal(&b[name]), "network {k}: {name} differs after the continued epoch");
        }
    }
    // Without the generators' state the continuation draws other augmentations and drifts.
    let mut third = fresh();
    let mut parts: Vec<_> = paths.iter().enumerate().map(|(k, p)| third.load(k, p).unwrap().unwrap()).collect();
    for p in &mut parts {
        p.augment = p.augment.map(|s| s ^ 1);
    }
    let cursor = third.cursor(&parts).unwrap();
    third.train_epoch_from(&data, 2, Some(cursor), &mut |_| false);
    let (a, b) = (whole.network_variables(0), third.network_variables(0));
    assert!(a.iter().any(|(n, v)| !v.equal(&b[n])), "the augmentation state would not matter");
}
