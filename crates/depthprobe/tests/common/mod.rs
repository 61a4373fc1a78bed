//! What the integration tests share.

use std::path::{Path, PathBuf};

/// The test data folder (mnist/, fashion-mnist/, cifar-10-sample/), from DEPTHPROBE_TEST_DATA.
#[allow(dead_code)]
pub fn test_data() -> PathBuf {
    match std::env::var_os("DEPTHPROBE_TEST_DATA") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "DEPTHPROBE_TEST_DATA is not set: point it at the test data folder (mnist/ and fashion-mnist/ with \
             the official IDX files, cifar-10-sample/test_batch_first500.bin); ./run-tests passes it through"
        ),
    }
}

/// The repository's root.
#[allow(dead_code)] // not every test binary uses every helper
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The Python with numpy and torch: DEPTHPROBE_PYTHON, else the project's .venv, else python3.
#[allow(dead_code)]
pub fn python() -> String {
    std::env::var("DEPTHPROBE_PYTHON").unwrap_or_else(|_| {
        let venv = repo_root().join(".venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    })
}
