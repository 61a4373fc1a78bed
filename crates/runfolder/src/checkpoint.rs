//! `checkpoint.json`: which state file the run can resume from (docs/checkpoints.md).

use serde::{Deserialize, Serialize};

pub const CHECKPOINT_FORMAT: &str = "depthprobe-checkpoint-1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Epochs completed when the state was saved.
    pub epoch: usize,
    /// The state file, relative to the run folder.
    pub file: String,
    pub format: String,
}

impl CheckpointMeta {
    pub fn new(epoch: usize) -> CheckpointMeta {
        CheckpointMeta { epoch, file: state_file(epoch), format: CHECKPOINT_FORMAT.into() }
    }
}

/// The state file of `epoch`, relative to the run folder.
pub fn state_file(epoch: usize) -> String {
    format!("checkpoints/epoch-{epoch:05}.safetensors")
}
