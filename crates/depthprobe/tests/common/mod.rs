//! What the integration tests share.

use std::path::PathBuf;

/// The test data folder (mnist/, fashion-mnist/, cifar-10-sample/), from DEPTHPROBE_TEST_DATA.
pub fn test_data() -> PathBuf {
    match std::env::var_os("DEPTHPROBE_TEST_DATA") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "DEPTHPROBE_TEST_DATA is not set: point it at the test data folder (mnist/ and fashion-mnist/ with \
             the official IDX files, cifar-10-sample/test_batch_first500.bin); ./run-tests passes it through"
        ),
    }
}
