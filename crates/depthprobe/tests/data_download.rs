//! `depthprobe data download` as a user runs it, against the real catalog: the real MNIST files
//! served over HTTP on 127.0.0.1 (never the internet), a corrupted copy, a connection dropped
//! halfway, the default data folder that `train` then reads, and the message `train` gives when
//! a data set is missing.

mod common;
#[path = "../../download/tests/server/mod.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use server::{Behaviour, Server};

/// depthprobe with a clean data environment: no DEPTHPROBE_DATA (run-tests sets one) and the
/// user's data directory inside the test.
fn dp(args: &[&str], xdg: &Path, mirror: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_depthprobe"));
    c.args(args).env_remove("DEPTHPROBE_DATA").env("XDG_DATA_HOME", xdg);
    match mirror {
        Some(m) => c.env("DEPTHPROBE_MIRROR", m),
        None => c.env_remove("DEPTHPROBE_MIRROR"),
    };
    c.output().expect("run depthprobe")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A mirror folder with the real MNIST files, laid out as BASE/mnist/<official name>.
fn mnist_mirror(dir: &Path) -> PathBuf {
    let m = dir.join("mirror");
    std::fs::create_dir_all(m.join("mnist")).unwrap();
    for e in std::fs::read_dir(common::test_data().join("mnist")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), m.join("mnist").join(e.file_name())).unwrap();
    }
    m
}

fn same_as_source(root: &Path) {
    for e in std::fs::read_dir(common::test_data().join("mnist")).unwrap() {
        let e = e.unwrap();
        let got = std::fs::read(root.join("mnist").join(e.file_name())).unwrap();
        assert!(got == std::fs::read(e.path()).unwrap(), "{:?} differs", e.file_name());
    }
}

#[test]
fn download_into_the_default_folder_then_train_from_it() {
    let t = tempfile::tempdir().unwrap();
    let mirror = mnist_mirror(t.path());
    let xdg = t.path().join("xdg");
    let cfg = t.path().join("tiny.toml");
    std::fs::write(
        &cfg,
        "[data]\ndataset = \"mnist\"\ntrain_per_class = 20\ntest_per_class = 10\n[model]\ndepth = 2\nwidth = 16\n[train]\nepochs = 1\nmilestones = []\nthreads = 1\n",
    )
    .unwrap();
    let out = t.path().join("run");
    let train = ["train", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"];

    // Before: train names the command that fetches the data.
    let o = dp(&train, &xdg, None);
    assert!(!o.status.success());
    assert!(text(&o).contains("fetch it with `depthprobe data download mnist`"), "{}", text(&o));

    let server = Server::start(mirror.clone(), Behaviour::default());
    let o = dp(&["data", "download", "mnist"], &xdg, Some(&server.url));
    assert!(o.status.success(), "{}", text(&o));
    let root = xdg.join("depthprobe");
    same_as_source(&root);
    for (name, md5) in [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ] {
        assert!(text(&o).contains(&format!("mnist/{name}: MD5 {md5} verified")), "{}", text(&o));
    }
    let o = dp(&["data", "download", "mnist"], &xdg, Some(&server.url));
    assert!(text(&o).contains("already in") && server.seen().len() == 4, "{}", text(&o));

    // After: the same train command finds it, with no --data-dir.
    let o = dp(&train, &xdg, None);
    assert!(o.status.success(), "{}", text(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "done");
    let used = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(used.contains("dataset = \"mnist\""), "{used}");

    // A data set missing from a folder named on the command line: the hint names the folder.
    let other = t.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let o = dp(&[&train[..], &["--data-dir", other.to_str().unwrap(), "--force"]].concat(), &xdg, None);
    let want = format!("depthprobe data download mnist --root {}", other.display());
    assert!(!o.status.success() && text(&o).contains(&want), "{}", text(&o));
}

#[test]
fn a_corrupted_copy_is_refused_naming_the_file_and_both_checksums() {
    let t = tempfile::tempdir().unwrap();
    let mirror = mnist_mirror(t.path());
    let bad = mirror.join("mnist/t10k-labels-idx1-ubyte.gz");
    let mut b = std::fs::read(&bad).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    std::fs::write(&bad, &b).unwrap();
    let got = depthprobe_download::md5_file(&bad).unwrap();
    let server = Server::start(mirror, Behaviour::default());
    let root = t.path().join("data");
    let o = dp(&["data", "download", "mnist", "--root", root.to_str().unwrap()], t.path(), Some(&server.url));
    assert!(!o.status.success());
    let e = text(&o);
    assert!(e.contains("mnist/t10k-labels-idx1-ubyte.gz: checksum mismatch"), "{e}");
    assert!(e.contains("ec29112dd5afa0611ce80d1b7f02629c") && e.contains(&got), "{e}");
    assert!(!root.join("mnist/t10k-labels-idx1-ubyte.gz").exists());
}

#[test]
fn a_dropped_connection_is_continued_and_the_files_are_whole() {
    let t = tempfile::tempdir().unwrap();
    let mirror = mnist_mirror(t.path());
    let server = Server::start(mirror, Behaviour { drop_first_at: Some(0.5), ..Default::default() });
    let root = t.path().join("data");
    let o = dp(&["data", "download", "mnist", "--root", root.to_str().unwrap()], t.path(), Some(&server.url));
    assert!(o.status.success(), "{}", text(&o));
    same_as_source(&root);
    let resumed = server.seen().iter().filter(|s| s.from.is_some_and(|f| f > 0)).count();
    assert_eq!(resumed, 4, "{:?}", server.seen());
    assert!(text(&o).contains("continuing at byte"), "{}", text(&o));

    // Unknown names and bad mirrors are refused before anything is fetched.
    let o = dp(&["data", "download", "imagenet", "--root", root.to_str().unwrap()], t.path(), None);
    assert!(text(&o).contains("unknown data set 'imagenet': choose from mnist, fashion-mnist, cifar10, all"));
    let o =
        dp(&["data", "download", "mnist", "--root", t.path().join("r2").to_str().unwrap()], t.path(), Some("ftp://x"));
    assert!(!o.status.success() && text(&o).contains("DEPTHPROBE_MIRROR: 'ftp://x'"), "{}", text(&o));
}
