//! The fuzz target's entry point (`fuzz/fuzz_targets/config.rs`), replayed over the stored
//! corpus by `tests/fuzz_corpus.rs`: a run config as `depthprobe train` reads it must parse or
//! be refused with a message, never panic.

use crate::Config;

pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text, "fuzz.toml", &[]);
    }
}
