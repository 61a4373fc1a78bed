//! A batched group of runs killed with SIGKILL resumes from its last mid-run checkpoint (not
//! from epoch 0) and ends exactly where an uninterrupted group ends (CPU, byte-identical
//! metrics.csv), with every run's summary recording the group.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    // Kill the same group at a random moment after every run has checkpointed epoch 3.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let delay = depthprobe::rng::Rng::new(nanos).below(200);
    let mut child = Command::new(bin())
        .args(["sweep", "run"])
        .arg(&b)
        .args(["--index", all, "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while runs_b.iter().any(|r| checkpoint_epoch(r) < 3) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
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
    assert!(*from >= 3, "checkpoints at the kill: {at_kill:?}");
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
