//! Replays the config fuzz target's seeds and regressions (`fuzz/seeds/config`,
//! `fuzz/regressions/config`): each must return without a panic.

use std::path::Path;

#[test]
fn config_inputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join("config")) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            let r = std::panic::catch_unwind(|| depthprobe_config::fuzz::config(&bytes));
            assert!(r.is_ok(), "config: {} panics", p.display());
            n += 1;
        }
    }
    assert!(n >= 3, "found only {n} config inputs");
}
