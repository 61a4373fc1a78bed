//! What a probe measures: the classes, the layers' dimensions, the ε values, which optional
//! measures, and the one default of each setting (used by the CLI, configs and Python alike).

/// The default ε list for effective depth.
pub const DEFAULT_EPS: [f64; 3] = [0.01, 0.05, 0.1];

/// Rank measures need a D×D Gram matrix (N·D² work per probe), so they are off unless asked
/// for: the default largest dimension they are computed for is 0.
pub const DEFAULT_RANK_MAX_DIM: usize = 0;
/// The linear probe is off unless asked for (it costs a D×D Gram matrix per layer and a D³
/// solve: docs/method.md, "Linear probe").
pub const DEFAULT_LINEAR_MAX_DIM: usize = 0;
/// The ridge classifier's regularisation, relative: λ = α · tr(centred scatter) / D.
pub const DEFAULT_LINEAR_RIDGE: f64 = 1e-3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub const BOTH: [Split; 2] = [Split::Train, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Split> {
        match s {
            "train" => Some(Split::Train),
            "test" => Some(Split::Test),
            _ => None,
        }
    }

    pub(crate) fn idx(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The probe's two passes over the train split (docs/method.md, "How a probe runs").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Per-class moments (and the Gram matrix) of the train split; optionally the test moments.
    Moments,
    /// NCC decisions against the final train means, the within-class scatter projected on the
    /// between-class subspace (train), the test split's decisions and moments, NC4 agreement.
    Decisions,
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    /// Labels run over 0..num_classes.
    pub num_classes: usize,
    /// Embedding dimension of each layer (layer i+1 at index i).
    pub dims: Vec<usize>,
    /// ε values for effective depth.
    pub eps: Vec<f64>,
    /// Restrict every measure to these classes (samples of other classes are ignored).
    pub classes: Option<Vec<usize>>,
    /// NC1, fuzziness (projections on the between-class subspace; O(C·D)).
    pub collapse_measures: bool,
    /// Numerical / effective rank for layers with dim ≤ this (0 disables; D×D memory).
    pub rank_max_dim: usize,
    /// Linear-probe (ridge classifier) accuracy for layers with dim ≤ this (0 disables).
    pub linear_max_dim: usize,
    /// Its relative ridge α.
    pub linear_ridge: f64,
    /// Linear CKA between every pair of layers, on train (pass 1) and test (pass 2): Σ D_i ·
    /// CKA_BATCH_ROWS multiply-adds per row (docs/method.md, "Layer similarity (CKA)").
    pub cka: bool,
    /// Keep each layer's train class means in the result (`ProbeResult::train_class_means`):
    /// what the weight spectra's alignment needs.
    pub keep_class_means: bool,
}

impl ProbeSpec {
    pub fn new(num_classes: usize, dims: Vec<usize>) -> Self {
        ProbeSpec {
            num_classes,
            dims,
            eps: DEFAULT_EPS.to_vec(),
            classes: None,
            collapse_measures: true,
            rank_max_dim: DEFAULT_RANK_MAX_DIM,
            linear_max_dim: DEFAULT_LINEAR_MAX_DIM,
            linear_ridge: DEFAULT_LINEAR_RIDGE,
            cka: false,
            keep_class_means: false,
        }
    }
}

/// Format ε as a JSON key: the shortest decimal that round-trips ("0.01").
pub fn eps_key(eps: f64) -> String {
    format!("{eps}")
}
