use thiserror::Error;

/// Everything that can be wrong with what a caller feeds the probe. Row numbers count from 0
/// within the split and pass, so a reader can point at the offending record.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ProbeError {
    #[error("invalid probe setup: {0}")]
    InvalidSpec(String),
    #[error("layer {layer} does not exist: the probe has layers 1..={layers}")]
    NoSuchLayer { layer: usize, layers: usize },
    #[error("{split} layer {layer}: {values} values is not {rows} rows × dim {dim}")]
    Shape { split: &'static str, layer: usize, values: usize, rows: usize, dim: usize },
    #[error("{split} label {label} at row {row} is out of range: there are {num_classes} classes (0..={max})", max = num_classes - 1)]
    LabelOutOfRange { split: &'static str, row: u64, label: u64, num_classes: usize },
    #[error("{split} layer {layer}: non-finite value {value} at row {row}, column {col}")]
    NonFinite { split: &'static str, layer: usize, row: u64, col: usize, value: f32 },
    #[error("{split} layer {layer}: the embeddings hold a non-finite value (NaN or ±inf); found in statistics reduced on the device, which do not say the row")]
    NonFiniteReduced { split: &'static str, layer: usize },
    #[error("class {class} has no train samples: NCC needs a train mean for every class")]
    EmptyClass { class: usize },
    #[error("{split} row counts differ between layers: layer {layer} has {rows} rows, layer 1 has {expected}")]
    RowCountMismatch { split: &'static str, layer: usize, rows: u64, expected: u64 },
    #[error("{0}")]
    WrongPass(String),
    /// The rows could not be read (a layer stream's own error, which names its file).
    #[error("{0}")]
    Input(String),
}
