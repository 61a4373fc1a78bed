//! Replays the fuzz seeds (`fuzz/seeds/<target>/`) and every input a fuzz run found a crash or
//! hang with (`fuzz/regressions/<target>/`) through the same entry points as the fuzz targets:
//! each must return without a panic.

use std::path::Path;

use depthprobe_formats::fuzz;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            let r = std::panic::catch_unwind(|| f(&bytes));
            assert!(r.is_ok(), "{target}: {} panics", p.display());
            n += 1;
        }
    }
    n
}

#[test]
fn idx_inputs() {
    assert!(replay("idx", fuzz::idx) >= 5);
}

#[test]
fn cifar_inputs() {
    assert!(replay("cifar", fuzz::cifar) >= 3);
}

#[test]
fn npy_inputs() {
    assert!(replay("npy", fuzz::npy) >= 5);
}

#[test]
fn safetensors_inputs() {
    assert!(replay("safetensors", fuzz::safetensors) >= 2);
}
