//! What the integration tests share.

use std::path::{Path, PathBuf};

use depthprobe::config::DatasetName;
use depthprobe::data::{self, Dataset, Split, Storage};

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

/// The first CIFAR-10 test records (the sample in the test data), a balanced `per` per class
/// for training and `test` per class for testing.
#[allow(dead_code)]
pub fn cifar_sample(per: usize, test: usize) -> Dataset {
    let (labels, px) =
        depthprobe_formats::cifar::parse_batch(&test_data().join("cifar-10-sample/test_batch_first500.bin")).unwrap();
    let split = Split {
        storage: Storage::bytes(px, data::CIFAR_MEAN.to_vec(), data::CIFAR_STD.to_vec()),
        labels: labels.iter().map(|&l| l as i64).collect(),
    };
    let all = Dataset {
        name: DatasetName::Cifar10,
        shape: vec![3, 32, 32],
        num_classes: 10,
        train: split.clone(),
        test: split,
    };
    let train = data::balanced_subset(&all, &all.train, per + test, "train").unwrap();
    // The first `per` of each class train, the next `test` test.
    let (mut a, mut b, mut seen) = (Vec::new(), Vec::new(), [0usize; 10]);
    for (i, &l) in train.labels.iter().enumerate() {
        if seen[l as usize] < per {
            a.push(i)
        } else {
            b.push(i)
        }
        seen[l as usize] += 1;
    }
    let base = Dataset { train: train.clone(), ..all };
    Dataset { train: data::select(&base, &train, &a), test: data::select(&base, &train, &b), ..base }
}
