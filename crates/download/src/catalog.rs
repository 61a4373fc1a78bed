//! The data sets `depthprobe data download` knows: their official files, published MD5s and
//! sizes, and the public mirrors torchvision fetches them from (first that works wins).

/// One official file as a mirror serves it.
#[derive(Clone, Debug)]
pub struct Remote {
    pub name: String,
    /// The published MD5 (torchvision's list; the CIFAR-10 page's for its archive).
    pub md5: String,
    pub size: u64,
}

/// A file inside an archive, checked after unpacking.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub md5: String,
    pub size: u64,
}

/// How the downloaded files become what `train` reads.
#[derive(Clone, Debug)]
pub enum Unpack {
    /// The files are read as they are (IDX .gz), in `ROOT/<folder>/`.
    AsIs,
    /// One .tar.gz whose `<dir>/` holds `members`, unpacked to `ROOT/<dir>/`.
    TarGz { dir: String, members: Vec<Member> },
}

/// A data set: the name on the command line, the folder under a mirror's base URL (and, for
/// files read as they are, under the data root), the default mirrors, the files.
#[derive(Clone, Debug)]
pub struct DataSet {
    pub name: String,
    pub folder: String,
    pub mirrors: Vec<String>,
    pub files: Vec<Remote>,
    pub unpack: Unpack,
}

impl DataSet {
    /// Where `train` reads this data set, under `root`.
    pub fn target_dir(&self, root: &std::path::Path) -> std::path::PathBuf {
        match &self.unpack {
            Unpack::AsIs => root.join(&self.folder),
            Unpack::TarGz { dir, .. } => root.join(dir),
        }
    }
}

fn remote(name: &str, md5: &str, size: u64) -> Remote {
    Remote { name: name.into(), md5: md5.into(), size }
}

fn idx_set(name: &str, mirrors: &[&str], md5s: [(&str, &str, u64); 4]) -> DataSet {
    DataSet {
        name: name.into(),
        folder: name.into(),
        mirrors: mirrors.iter().map(|m| m.to_string()).collect(),
        files: md5s.iter().map(|(n, m, s)| remote(n, m, *s)).collect(),
        unpack: Unpack::AsIs,
    }
}

/// Every data set, in the order `all` fetches them.
pub fn catalog() -> Vec<DataSet> {
    let mnist = idx_set(
        "mnist",
        &["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        [
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28_881),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1_648_877),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4_542),
        ],
    );
    let fashion = idx_set(
        "fashion-mnist",
        &[
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
        [
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26_421_880),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29_515),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4_422_102),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5_148),
        ],
    );
    let bin = |n: &str, md5: &str| Member { name: n.into(), md5: md5.into(), size: 30_730_000 };
    let cifar10 = DataSet {
        name: "cifar10".into(),
        folder: "cifar-10".into(),
        mirrors: vec!["https://www.cs.toronto.edu/~kriz/".into()],
        files: vec![remote("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", 170_052_171)],
        unpack: Unpack::TarGz {
            dir: "cifar-10-batches-bin".into(),
            members: vec![
                bin("data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25"),
                bin("data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692"),
                bin("data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421"),
                bin("data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb"),
                bin("data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d"),
                bin("test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d"),
            ],
        },
    };
    vec![mnist, fashion, cifar10]
}

/// The data sets a command-line name stands for (`all` is every one).
pub fn lookup(name: &str) -> Option<Vec<DataSet>> {
    let all = catalog();
    match name {
        "all" => Some(all),
        "fashion_mnist" | "fashionmnist" => lookup("fashion-mnist"),
        "cifar-10" | "cifar_10" => lookup("cifar10"),
        _ => all.into_iter().find(|d| d.name == name).map(|d| vec![d]),
    }
}
