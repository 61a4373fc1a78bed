//! `scripts/test-data.sh`, what `./run-tests` runs when no DEPTHPROBE_TEST_DATA is given, as a new
//! contributor's clone runs it, but against a mirror on 127.0.0.1 (never the internet) that serves
//! the official file names: it must build the very folder the tests read.
//!
//! The mirror's CIFAR-10 archive is packed here from the whole CIFAR-10 binary version in
//! DEPTHPROBE_DATA (run-tests puts it there), so it is not the official archive byte for byte:
//! `data download` accepts it because each file in it matches its published MD5.

mod common;
#[path = "../../download/tests/server/mod.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use server::{Behaviour, Server};

/// The folder that holds the whole CIFAR-10 binary version, verified.
fn full_cifar10() -> PathBuf {
    let root = std::env::var_os("DEPTHPROBE_DATA").map(PathBuf::from).unwrap_or_default();
    let ds = depthprobe_download::lookup("cifar10").unwrap().remove(0);
    assert!(
        !root.as_os_str().is_empty() && depthprobe_download::present(&ds, &root),
        "this test packs its mirror's CIFAR-10 archive from the whole CIFAR-10 in DEPTHPROBE_DATA ('{}'), \
         which has none: `depthprobe data download cifar10 --root {}` (./run-tests does it)",
        root.display(),
        root.display()
    );
    ds.target_dir(&root)
}

/// A tar.gz with `cifar-10-batches-bin/<file>` for every file of `bins`, packed here.
fn pack(bins: &Path, out: &Path) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(out).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut names: Vec<_> = std::fs::read_dir(bins).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for n in names {
        let name = n.to_string_lossy();
        tar.append_path_with_name(bins.join(&n), format!("cifar-10-batches-bin/{name}")).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn prepare(out: &Path, mirror: &str) -> Output {
    Command::new("bash")
        .arg(common::repo_root().join("scripts/test-data.sh"))
        .arg(out)
        .env("DEPTHPROBE_BIN", env!("CARGO_BIN_EXE_depthprobe"))
        .env("DEPTHPROBE_MIRROR", mirror)
        .env_remove("DEPTHPROBE_TEST_DATA")
        .env_remove("DEPTHPROBE_DATA")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every file the tests read from the test data folder, relative to it.
fn files_the_tests_read() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for set in ["mnist", "fashion-mnist"] {
        for e in std::fs::read_dir(common::test_data().join(set)).unwrap() {
            v.push(Path::new(set).join(e.unwrap().file_name()));
        }
    }
    v.push("cifar-10-sample/test_batch_first500.bin".into());
    v.sort();
    v
}

#[test]
fn without_test_data_the_tests_build_their_own_folder_from_a_mirror() {
    let t = tempfile::tempdir().unwrap();
    let mirror = t.path().join("mirror");
    for set in ["mnist", "fashion-mnist"] {
        std::fs::create_dir_all(mirror.join(set)).unwrap();
        for e in std::fs::read_dir(common::test_data().join(set)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), mirror.join(set).join(e.file_name())).unwrap();
        }
    }
    pack(&full_cifar10(), &mirror.join("cifar-10/cifar-10-binary.tar.gz"));
    let server = Server::start(mirror, Behaviour::default());

    let out = t.path().join("test-data");
    let o = prepare(&out, &server.url);
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    // What it fetched, from where, and how it checked it.
    for set in ["mnist", "fashion-mnist"] {
        assert!(server.seen().iter().any(|s| s.path == format!("/{set}/train-images-idx3-ubyte.gz")), "{set}");
    }
    assert!(log.contains("CIFAR-10 (170.1 MB"), "{log}");
    assert!(log.contains("mnist/t10k-labels-idx1-ubyte.gz: MD5 ec29112dd5afa0611ce80d1b7f02629c verified"), "{log}");
    assert!(log.contains("each of its 6 files matches its published MD5"), "{log}");
    assert!(log.contains("cifar-10-sample: the first 500 test records cut, SHA-256 verified"), "{log}");

    // The folder is the one the tests read: every file, byte for byte.
    for f in files_the_tests_read() {
        let (want, got) = (common::test_data().join(&f), out.join(&f));
        assert!(got.exists(), "{} is missing", f.display());
        assert!(std::fs::read(&got).unwrap() == std::fs::read(&want).unwrap(), "{} differs", f.display());
    }
    let ds = depthprobe_download::lookup("all").unwrap();
    assert!(ds.iter().all(|d| depthprobe_download::present(d, &out)), "every data set there, verified");

    // Again: nothing is fetched.
    let asked = server.seen().len();
    let o = prepare(&out, &server.url);
    assert!(o.status.success() && text(&o).contains("cifar-10-sample: already in"), "{}", text(&o));
    assert_eq!(server.seen().len(), asked, "nothing fetched the second time");

    // A damaged sample is cut again from the verified CIFAR-10, still without fetching.
    let sample = out.join("cifar-10-sample/test_batch_first500.bin");
    let mut b = std::fs::read(&sample).unwrap();
    b[1000] ^= 1;
    std::fs::write(&sample, b).unwrap();
    let o = prepare(&out, &server.url);
    assert!(o.status.success() && text(&o).contains("records cut, SHA-256 verified"), "{}", text(&o));
    let want = common::test_data().join("cifar-10-sample/test_batch_first500.bin");
    assert!(std::fs::read(&sample).unwrap() == std::fs::read(want).unwrap());
    assert_eq!(server.seen().len(), asked);
}
