//! `depthprobe measure` without LibTorch: embeddings dumped by any framework, streamed from their
//! files through the measures (docs/method.md), and the table the CLI prints. Kept apart from the
//! engine so that the `depthprobe` binary runs `measure` without loading LibTorch, whose start-up
//! alone costs about half a second (docs/architecture.md, "Two binaries").

use std::path::PathBuf;

pub mod console;
pub mod measure;

pub use measure::{measure, MeasureOptions, CHUNK_ROWS};

/// The arguments of `depthprobe measure`, shared by both binaries.
#[derive(clap::Args, Debug, Clone)]
pub struct MeasureArgs {
    /// Train split: folder with labels.npy, layer_1.npy … layer_L.npy, or a .safetensors file.
    #[arg(long)]
    pub train: PathBuf,
    /// Test split, same layout.
    #[arg(long)]
    pub test: PathBuf,
    /// Output folder for summary.json, metrics.csv, cdnv_pairs.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// ε values for effective depth.
    #[arg(long, value_delimiter = ',', default_values_t = depthprobe_measures::DEFAULT_EPS.to_vec())]
    pub eps: Vec<f64>,
    /// Number of classes (default: largest train label + 1).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Measure only these classes (comma-separated labels).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<usize>>,
    /// Rank measures for layers of at most this dimension (D×D memory; 0 = never).
    #[arg(long, default_value_t = depthprobe_measures::DEFAULT_RANK_MAX_DIM)]
    pub rank_max_dim: usize,
    /// Linear-probe (ridge classifier) accuracy for layers of at most this dimension (D×D
    /// memory, a D³ solve per layer; 0 = never).
    #[arg(long, default_value_t = depthprobe_measures::DEFAULT_LINEAR_MAX_DIM)]
    pub linear_max_dim: usize,
    /// The ridge's relative regularisation α (λ = α · tr(centred scatter) / D).
    #[arg(long, default_value_t = depthprobe_measures::DEFAULT_LINEAR_RIDGE)]
    pub linear_ridge: f64,
    /// Linear CKA between every pair of layers (unbiased minibatch estimator, minibatches of 256
    /// rows; one more read of the files; docs/method.md, "Layer similarity (CKA)").
    #[arg(long)]
    pub cka: bool,
}

/// Run `measure` with these arguments, print its table, and say where it wrote; `producer` is the
/// build recorded in summary.json. Err with the message to print.
pub fn run(a: MeasureArgs, producer: &str) -> anyhow::Result<()> {
    if a.linear_ridge.is_nan() || a.linear_ridge <= 0.0 {
        anyhow::bail!("--linear-ridge {}: must be > 0", a.linear_ridge);
    }
    let opts = MeasureOptions {
        train: a.train,
        test: a.test,
        eps: a.eps,
        num_classes: a.num_classes,
        classes: a.classes,
        rank_max_dim: a.rank_max_dim,
        linear_max_dim: a.linear_max_dim,
        linear_ridge: a.linear_ridge,
        cka: a.cka,
    };
    let r = measure(&opts, &a.out, producer)?;
    print!("{}", console::table(&r));
    println!("wrote {}/{{summary.json, metrics.csv, cdnv_pairs.csv}}", a.out.display());
    Ok(())
}
