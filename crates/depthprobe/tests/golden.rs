//! Golden outputs: what users are shown is what the code produces.
//!
//! * Tiny MLP runs with portable numerics (the same bytes on every x86-64 CPU with AVX2) must
//!   give the metrics.csv digests recorded in tests/golden/metrics.sha256. When a change alters
//!   the numerics on purpose, this test says so and what to regenerate. (ConvNets go through
//!   oneDNN, whose kernels block by the CPU's cache sizes: not portable, so not here.)
//! * The README's demo block and docs/img's demo figures must be what `depthprobe demo` prints
//!   and draws.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_depthprobe"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&std::ffi::OsStr]) -> String {
    let o = Command::new(bin()).args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sha256(paths: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for p in paths {
        h.update(std::fs::read(p).unwrap());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The tiny runs: (name, config text, how many runs trained as one group).
fn cases() -> Vec<(&'static str, String, usize)> {
    let portable = "[train]\nnumerics = \"portable\"\nepochs = 3\nmilestones = [2]\nwarmup_epochs = 1\n";
    vec![
        (
            "mlp-synthetic",
            format!("[data]\ndataset = \"synthetic\"\n[model]\ndepth = 3\nwidth = 16\n{portable}[probe]\nevery = 1\n"),
            1,
        ),
        (
            "mlp-mnist-batched",
            format!(
                "[data]\ndataset = \"mnist\"\ntrain_per_class = 12\ntest_per_class = 6\n[model]\ndepth = 3\n\
                 width = 16\nembedding = \"post_activation\"\n{portable}batch_size = 32\n[probe]\nevery = 3\n"
            ),
            3,
        ),
    ]
}

#[test]
fn tiny_runs_give_the_recorded_metrics() {
    let golden_path = repo().join("tests/golden/metrics.sha256");
    let golden = std::fs::read_to_string(&golden_path).unwrap();
    let want = |name: &str| {
        golden.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' '))).map(str::trim).unwrap_or("")
    };
    let t = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    for (name, config, group) in cases() {
        let files: Vec<PathBuf> = if group == 1 {
            let cfg = t.path().join(format!("{name}.toml"));
            std::fs::write(&cfg, config).unwrap();
            let out = t.path().join(name);
            run(&[
                "train".as_ref(),
                cfg.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
                "--quiet".as_ref(),
                "--data-dir".as_ref(),
                common::test_data().as_os_str(),
            ]);
            vec![out.join("metrics.csv")]
        } else {
            // A batched group: seeds and corruption through a sweep trained as one model.
            let sweep = t.path().join(format!("{name}.toml"));
            let body = config.replace("[data]", "[config.data]").replace("[model]", "[config.model]");
            let body = body.replace("[train]", "[config.train]").replace("[probe]", "[config.probe]");
            std::fs::write(
                &sweep,
                format!("name = \"{name}\"\n{body}[axes]\n\"train.seed\" = [0, 1, 2]\n\"corruption.p\" = [0.25]\n"),
            )
            .unwrap();
            let dir = t.path().join(name);
            run(&["sweep".as_ref(), "plan".as_ref(), sweep.as_os_str(), "--out".as_ref(), dir.as_os_str()]);
            run(&[
                "sweep".as_ref(),
                "run".as_ref(),
                dir.as_os_str(),
                "--index".as_ref(),
                "0,1,2".as_ref(),
                "--quiet".as_ref(),
                "--data-dir".as_ref(),
                common::test_data().as_os_str(),
            ]);
            let plan = depthprobe::sweep::SweepDir(dir.clone()).read_plan().unwrap();
            plan.runs.iter().map(|r| dir.join("runs").join(&r.id).join("metrics.csv")).collect()
        };
        let got = sha256(&files);
        if got != want(name) {
            wrong.push(format!("{name} {got}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the numerics changed: these tiny runs' metrics.csv digests differ from {}:\n{}\n\
         If the change is intended, regenerate everything that shows numbers from the new code \
         (the README's demo block and Measured section, docs/img, docs/results: see \
         docs/results/README.md) and put the lines above into that file.",
        golden_path.display(),
        wrong.join("\n")
    );
}

#[test]
fn the_readme_and_docs_show_what_demo_prints_and_draws() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("demo");
    let printed = run(&["demo".as_ref(), "--quiet".as_ref(), "--out".as_ref(), out.as_os_str()]);
    let table: Vec<&str> = printed.lines().take_while(|l| !l.starts_with("wrote ")).collect();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let block: Vec<&str> = readme
        .split("```\n")
        .find(|b| b.starts_with("layer    dim"))
        .expect("README has the demo's table in a ``` block")
        .lines()
        .collect();
    assert!(table.len() > 10);
    assert_eq!(block, table, "README.md's demo block differs from what `depthprobe demo` prints: paste the table");
    for fig in ["ncc_by_epoch", "layer_profile"] {
        let drawn = std::fs::read_to_string(out.join(format!("{fig}.svg"))).unwrap();
        let docs = std::fs::read_to_string(repo().join(format!("docs/img/demo_{fig}.svg"))).unwrap_or_default();
        assert!(
            drawn == docs,
            "docs/img/demo_{fig}.svg is not what `depthprobe demo` draws: copy runs/demo/{fig}.svg and .png there"
        );
    }
}
