//! `depthprobe measure` end to end: .npy / .safetensors input, parity with the independent
//! numpy implementation (tests/numpy_reference.py), result files, and bad input.

mod common;

use std::path::Path;
use std::process::Command;

use depthprobe::measure::{measure, MeasureOptions};
use depthprobe::rng::Rng;
use depthprobe_formats::{npy_bytes, npy_bytes_f32, npy_bytes_i64};
use serde_json::Value;

struct Split {
    y: Vec<i64>,
    layers: Vec<(usize, Vec<f32>)>,
}

/// Layers with growing class separation; layer dims 5, 12, 20; 4 classes.
fn make_split(seed: u64, n: usize, centres: &[Vec<f64>]) -> Split {
    let mut r = Rng::new(seed);
    let c = 4;
    let y: Vec<i64> = (0..n).map(|i| if i < c { i as i64 } else { r.below(c as u64) as i64 }).collect();
    let layers = centres
        .iter()
        .map(|cent| {
            let d = cent.len() / c;
            let x = y
                .iter()
                .flat_map(|&k| (0..d).map(|j| (cent[k as usize * d + j] + r.normal() + 2.0) as f32).collect::<Vec<_>>())
                .collect();
            (d, x)
        })
        .collect();
    Split { y, layers }
}

fn centres(seed: u64) -> Vec<Vec<f64>> {
    let mut r = Rng::new(seed);
    [(5usize, 0.3), (12, 1.0), (20, 3.0)].iter().map(|&(d, s)| (0..4 * d).map(|_| r.normal() * s).collect()).collect()
}

fn write_npy_dir(dir: &Path, s: &Split, extra: &[(&str, Vec<usize>, Vec<f32>)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("labels.npy"), npy_bytes_i64(&s.y)).unwrap();
    for (i, (d, x)) in s.layers.iter().enumerate() {
        std::fs::write(dir.join(format!("layer_{}.npy", i + 1)), npy_bytes_f32(&[s.y.len(), *d], x)).unwrap();
    }
    for (name, shape, data) in extra {
        std::fs::write(dir.join(format!("{name}.npy")), npy_bytes_f32(shape, data)).unwrap();
    }
}

fn opts(train: &Path, test: &Path) -> MeasureOptions {
    MeasureOptions {
        train: train.into(),
        test: test.into(),
        eps: vec![0.01, 0.05, 0.1],
        num_classes: None,
        classes: None,
        rank_max_dim: 1024,
        linear_max_dim: 0,
        linear_ridge: depthprobe_measures::DEFAULT_LINEAR_RIDGE,
        cka: false,
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn measure_matches_independent_numpy_implementation() {
    let tmp = tempfile::tempdir().unwrap();
    let cent = centres(1);
    let tr = make_split(2, 700, &cent);
    let te = make_split(3, 300, &cent);
    let mut r = Rng::new(4);
    let w: Vec<f32> = (0..4 * 20).map(|_| r.normal() as f32).collect();
    let lg_tr: Vec<f32> = (0..700 * 4).map(|_| r.normal() as f32).collect();
    let lg_te: Vec<f32> = (0..300 * 4).map(|_| r.normal() as f32).collect();
    let (trd, ted, out) = (tmp.path().join("train"), tmp.path().join("test"), tmp.path().join("out"));
    write_npy_dir(&trd, &tr, &[("classifier_weight", vec![4, 20], w), ("logits", vec![700, 4], lg_tr)]);
    write_npy_dir(&ted, &te, &[("logits", vec![300, 4], lg_te)]);
    let mut o = opts(&trd, &ted);
    o.cka = true;
    measure(&o, &out, "test").unwrap();
    let ours: Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let script = common::repo_root().join("tests/numpy_reference.py");
    let o = Command::new(common::python())
        .arg(&script)
        .arg(&trd)
        .arg(&ted)
        .output()
        .expect("running python for the numpy reference");
    assert!(
        o.status.success(),
        "numpy reference failed (numpy is required for the test suite): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let theirs: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut compared = 0;
    for (a, b) in ours["layers"].as_array().unwrap().iter().zip(theirs["layers"].as_array().unwrap()) {
        for (k, bv) in b.as_object().unwrap() {
            let av = &a[k];
            assert!(!av.is_null(), "layer {}: {k} missing from summary.json", b["layer"]);
            let (x, y) = (num(av), num(bv));
            let rel = if x == y { 0.0 } else { (x - y).abs() / y.abs() };
            assert!(rel < 1e-6, "layer {} {k}: depthprobe {x}, numpy {y}", b["layer"]);
            compared += 1;
        }
    }
    assert!(compared >= 3 * 12, "compared only {compared} values");
    assert_eq!(ours["effective_depth"], theirs["effective_depth"]);
    assert_eq!(ours["fuzziness_fit"]["first_layer"], theirs["fuzziness_fit"]["first_layer"]);
    assert_eq!(ours["fuzziness_fit"]["last_layer"], theirs["fuzziness_fit"]["last_layer"]);
    for k in ["slope", "intercept", "pearson_r", "r_squared"] {
        let (x, y) = (num(&ours["fuzziness_fit"][k]), num(&theirs["fuzziness_fit"][k]));
        assert!((x - y).abs() <= 1e-6 * y.abs(), "fuzziness_fit.{k}: {x} vs {y}");
    }
    // CKA: the minibatch estimator (700 train rows: minibatches of 256, 256, 188; 300 test rows:
    // 256, 44), every pair of layers.
    let mut pairs = 0;
    for split in ["train", "test"] {
        let (a, b) = (&ours["cka"][split], &theirs[&format!("cka_{split}")]);
        for (ra, rb) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
            for (x, y) in ra.as_array().unwrap().iter().zip(rb.as_array().unwrap()) {
                let (x, y) = (num(x), num(y));
                assert!((x - y).abs() <= 1e-9, "{split} CKA: depthprobe {x}, numpy {y}");
                pairs += 1;
            }
        }
    }
    assert_eq!(pairs, 2 * 3 * 3);
    assert_eq!((ours["cka"]["train_batches"].as_u64(), ours["cka"]["test_batches"].as_u64()), (Some(3), Some(2)));
    // metrics.csv carries the same numbers in long format.
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(csv.starts_with("layer,split,metric,value\n"));
    let want = format!("2,train,ncc_acc,{}", num(&ours["layers"][1]["ncc_train_acc"]));
    assert!(csv.lines().any(|l| l == want), "{want} not in metrics.csv");
}

#[test]
fn safetensors_input_gives_the_same_results_as_npy() {
    let tmp = tempfile::tempdir().unwrap();
    let cent = centres(7);
    let tr = make_split(8, 400, &cent);
    let te = make_split(9, 100, &cent);
    let (trd, ted) = (tmp.path().join("train"), tmp.path().join("test"));
    write_npy_dir(&trd, &tr, &[]);
    write_npy_dir(&ted, &te, &[]);
    let st = |s: &Split, path: &Path| {
        use safetensors::tensor::{Dtype, TensorView};
        let ybytes: Vec<u8> = s.y.iter().flat_map(|v| v.to_le_bytes()).collect();
        let lbytes: Vec<Vec<u8>> =
            s.layers.iter().map(|(_, x)| x.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
        let mut views = vec![("labels".to_string(), TensorView::new(Dtype::I64, vec![s.y.len()], &ybytes).unwrap())];
        for (i, ((d, _), b)) in s.layers.iter().zip(&lbytes).enumerate() {
            views.push((format!("layer_{}", i + 1), TensorView::new(Dtype::F32, vec![s.y.len(), *d], b).unwrap()));
        }
        safetensors::tensor::serialize_to_file(views, None, path).unwrap();
    };
    let (trs, tes) = (tmp.path().join("train.safetensors"), tmp.path().join("test.safetensors"));
    st(&tr, &trs);
    st(&te, &tes);
    let a = measure(&opts(&trd, &ted), &tmp.path().join("a"), "test").unwrap();
    let b = measure(&opts(&trs, &tes), &tmp.path().join("b"), "test").unwrap();
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        assert_eq!(format!("{:?}", la.scalar_metrics()), format!("{:?}", lb.scalar_metrics()));
    }
}

fn expect_err(train: &Path, test: &Path, needles: &[&str]) {
    let e = match measure(&opts(train, test), &train.parent().unwrap().join("out"), "test") {
        Ok(_) => panic!("expected an error mentioning {needles:?}"),
        Err(e) => format!("{e:#}"),
    };
    for n in needles {
        assert!(e.contains(n), "error {e:?} does not mention {n:?}");
    }
}

#[test]
fn bad_input_names_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let cent = centres(11);
    let s = make_split(12, 50, &cent);
    let fresh = |name: &str| {
        let d = tmp.path().join(name);
        write_npy_dir(&d, &s, &[]);
        d
    };
    let good = fresh("good");
    let _ = std::fs::create_dir_all(tmp.path());

    // Label out of range (with --num-classes 4 given, label 9 is out).
    let d = fresh("label_range");
    let mut y = s.y.clone();
    y[17] = 9;
    std::fs::write(d.join("labels.npy"), npy_bytes_i64(&y)).unwrap();
    let mut o = opts(&d, &good);
    o.num_classes = Some(4);
    let e = format!("{:#}", measure(&o, &tmp.path().join("o1"), "test").unwrap_err());
    assert!(e.contains("labels.npy") && e.contains("label 9 at row 17"), "{e}");

    // A class absent from train: relabel all of class 2 as 3.
    let d = fresh("absent");
    let y: Vec<i64> = s.y.iter().map(|&v| if v == 2 { 3 } else { v }).collect();
    std::fs::write(d.join("labels.npy"), npy_bytes_i64(&y)).unwrap();
    expect_err(&d, &good, &["labels.npy", "class 2 has no train samples"]);

    // Row counts that differ between files.
    let d = fresh("rows");
    std::fs::write(d.join("layer_2.npy"), npy_bytes_f32(&[49, 12], &s.layers[1].1[..49 * 12])).unwrap();
    expect_err(&d, &good, &["layer_2.npy", "49 rows", "labels.npy has 50"]);

    // Wrong dtype: int32 embeddings; float labels; 1-D embeddings.
    let d = fresh("dtype");
    std::fs::write(d.join("layer_1.npy"), npy_bytes("<i4", &[50, 5], vec![0u8; 50 * 5 * 4])).unwrap();
    expect_err(&d, &good, &["layer_1.npy", "float32", "int32"]);
    let d = fresh("labeldtype");
    std::fs::write(d.join("labels.npy"), npy_bytes_f32(&[50], &[0.0; 50])).unwrap();
    expect_err(&d, &good, &["labels.npy", "integers"]);
    let d = fresh("shape");
    std::fs::write(d.join("layer_3.npy"), npy_bytes_f32(&[50], &[0.0; 50])).unwrap();
    expect_err(&d, &good, &["layer_3.npy", "[N, D]"]);

    // NaN / Inf in an embedding, with the row.
    let d = fresh("nan");
    let mut x = s.layers[2].1.clone();
    x[33 * 20 + 4] = f32::INFINITY;
    std::fs::write(d.join("layer_3.npy"), npy_bytes_f32(&[50, 20], &x)).unwrap();
    expect_err(&d, &good, &["layer_3.npy", "non-finite value inf at row 33, column 4"]);

    // Truncated file.
    let d = fresh("trunc");
    let bytes = std::fs::read(d.join("layer_2.npy")).unwrap();
    std::fs::write(d.join("layer_2.npy"), &bytes[..bytes.len() - 7]).unwrap();
    expect_err(&d, &good, &["layer_2.npy", "truncated"]);

    // Train and test with different layer dimensions.
    let d = fresh("dims");
    std::fs::write(d.join("layer_1.npy"), npy_bytes_f32(&[50, 1], &[0.0; 50])).unwrap();
    expect_err(&good, &d, &["layers differ"]);

    // A missing layer in the numbering.
    let d = fresh("gap");
    std::fs::rename(d.join("layer_2.npy"), d.join("layer_5.npy")).unwrap();
    expect_err(&d, &good, &["without gaps", "layer_2 is missing"]);

    // Not an npy file at all.
    let d = fresh("magic");
    std::fs::write(d.join("labels.npy"), b"hello world, not numpy").unwrap();
    expect_err(&d, &good, &["labels.npy", "bad magic"]);
}

#[test]
fn memory_does_not_depend_on_rows_read_in_chunks() {
    // More rows than one chunk: results equal those of a single in-memory probe.
    let tmp = tempfile::tempdir().unwrap();
    let cent = centres(21);
    let n = depthprobe::measure::CHUNK_ROWS * 2 + 123;
    let tr = make_split(22, n, &cent);
    let te = make_split(23, 500, &cent);
    let (trd, ted) = (tmp.path().join("train"), tmp.path().join("test"));
    write_npy_dir(&trd, &tr, &[]);
    write_npy_dir(&ted, &te, &[]);
    let a = measure(&opts(&trd, &ted), &tmp.path().join("o"), "test").unwrap();
    let mut spec = depthprobe_measures::ProbeSpec::new(4, vec![5, 12, 20]);
    spec.rank_max_dim = 1024;
    let mut p = depthprobe_measures::LayerProbe::new(spec).unwrap();
    let y: Vec<u32> = tr.y.iter().map(|&v| v as u32).collect();
    let yt: Vec<u32> = te.y.iter().map(|&v| v as u32).collect();
    let refs: Vec<&[f32]> = tr.layers.iter().map(|(_, x)| x.as_slice()).collect();
    let trefs: Vec<&[f32]> = te.layers.iter().map(|(_, x)| x.as_slice()).collect();
    p.update_all(depthprobe_measures::Split::Train, &refs, &y).unwrap();
    p.next_pass().unwrap();
    p.update_all(depthprobe_measures::Split::Train, &refs, &y).unwrap();
    p.update_all(depthprobe_measures::Split::Test, &trefs, &yt).unwrap();
    let b = p.finish().unwrap();
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        for ((name, split, va), (_, _, vb)) in la.scalar_metrics().into_iter().zip(lb.scalar_metrics()) {
            if let (Some(va), Some(vb)) = (va, vb) {
                assert!((va - vb).abs() <= 1e-12 * vb.abs().max(1e-300), "{name}/{split}: {va} vs {vb}");
            }
        }
    }
}

#[test]
fn a_full_disk_fails_clearly_and_keeps_earlier_results() {
    // 40 classes: cdnv_pairs.csv grows to ~100 KB, over the 24 KiB file-size limit set below.
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Rng::new(41);
    let (n, c, d) = (800usize, 40usize, 8usize);
    let y: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
    let x: Vec<f32> = y
        .iter()
        .flat_map(|&k| {
            (0..d).map(|j| (k as f32 * (j as f32 + 1.0)).sin() + 0.3 * r.normal() as f32).collect::<Vec<_>>()
        })
        .collect();
    let split = Split { y, layers: vec![(d, x.clone()), (d, x)] };
    let (trd, out) = (tmp.path().join("train"), tmp.path().join("out"));
    write_npy_dir(&trd, &split, &[]);
    let bin = env!("CARGO_BIN_EXE_depthprobe");
    let measure = |limit_kib: Option<u32>| {
        // SIGXFSZ is ignored so that writes past the limit fail with EFBIG, as on a full disk.
        let ulimit = limit_kib.map(|k| format!("ulimit -f {k}; ")).unwrap_or_default();
        let cmd = format!("trap '' XFSZ; {ulimit}exec \"$0\" measure --train \"$1\" --test \"$1\" --out \"$2\"");
        Command::new("bash").arg("-c").arg(cmd).arg(bin).arg(&trd).arg(&out).output().unwrap()
    };
    assert!(measure(None).status.success());
    let before: Vec<Vec<u8>> =
        ["summary.json", "metrics.csv", "cdnv_pairs.csv"].iter().map(|f| std::fs::read(out.join(f)).unwrap()).collect();
    assert!(before[2].len() > 24 * 1024, "the test needs a cdnv_pairs.csv over the limit");
    let o = measure(Some(24));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cdnv_pairs.csv") && err.contains("earlier results are kept") && err.contains("too large"),
        "{err}"
    );
    let after: Vec<Vec<u8>> =
        ["summary.json", "metrics.csv", "cdnv_pairs.csv"].iter().map(|f| std::fs::read(out.join(f)).unwrap()).collect();
    // wall_s differs between runs, so "intact" means: the very same bytes as before.
    assert!(before == after, "earlier results changed");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

/// `depthprobe measure` runs in the binary without LibTorch (LD_DEBUG lists every library the
/// loader opens), with the same results as the engine's `measure`; commands that train are
/// handed to the engine, which does load it (`sweep local` and `sweep status`: tests/sweep.rs).
#[test]
fn measure_starts_without_libtorch_and_the_rest_goes_to_the_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let split = make_split(3, 200, &centres(5));
    let trd = tmp.path().join("train");
    write_npy_dir(&trd, &split, &[]);
    let bin = env!("CARGO_BIN_EXE_depthprobe");
    let engine = env!("CARGO_BIN_EXE_depthprobe-engine");
    let run = |exe: &str, args: &[&str]| Command::new(exe).args(args).env("LD_DEBUG", "libs").output().unwrap();
    let t = trd.to_str().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let o = run(bin, &["measure", "--train", t, "--test", t, "--out", a.to_str().unwrap()]);
    let loaded = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{loaded}");
    assert!(loaded.contains("libc.so"), "LD_DEBUG=libs lists what the loader opens: {loaded}");
    assert!(!loaded.contains("libtorch"), "measure loaded LibTorch");
    let o = run(engine, &["measure", "--train", t, "--test", t, "--out", b.to_str().unwrap()]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("libtorch_cpu"));
    let metrics = |d: &Path| std::fs::read(d.join("metrics.csv")).unwrap();
    assert_eq!(metrics(&a), metrics(&b), "both binaries measure the same");
    // Another command: the engine answers (its help lists every command), through the same pid.
    let o = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && help.contains("sweep") && help.contains("measure"), "{help}");
    let o = Command::new(bin).args(["measure", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("--rank-max-dim"));
    let o = Command::new(bin).args(["measure", "--train", t]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--test"));
}
