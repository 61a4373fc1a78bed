//! `checkpoint.json`: which state file the run can resume from (docs/checkpoints.md).

use serde::{Deserialize, Serialize};

/// Checkpoints at the end of an epoch.
pub const CHECKPOINT_FORMAT: &str = "depthprobe-checkpoint-1";
/// Checkpoints inside an epoch (after a stop signal): they add `step`, which an older reader
/// would ignore, so they name another format.
pub const CHECKPOINT_FORMAT_STEP: &str = "depthprobe-checkpoint-2";

/// Where training stands: `epoch` epochs completed and `step` steps of the next one (0 at an
/// epoch's end). Ordered by training time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub epoch: usize,
    pub step: usize,
}

impl Position {
    pub fn end_of(epoch: usize) -> Position {
        Position { epoch, step: 0 }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.step == 0 {
            write!(f, "epoch {}", self.epoch)
        } else {
            write!(f, "step {} of epoch {}", self.step, self.epoch + 1)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Epochs completed when the state was saved.
    pub epoch: usize,
    /// Steps of epoch `epoch + 1` completed (0: the checkpoint is at the end of `epoch`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub step: usize,
    /// The state file, relative to the run folder.
    pub file: String,
    pub format: String,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl CheckpointMeta {
    pub fn new(at: Position) -> CheckpointMeta {
        let format = if at.step == 0 { CHECKPOINT_FORMAT } else { CHECKPOINT_FORMAT_STEP };
        CheckpointMeta { epoch: at.epoch, step: at.step, file: state_file(at), format: format.into() }
    }

    pub fn position(&self) -> Position {
        Position { epoch: self.epoch, step: self.step }
    }
}

/// The state file of a position, relative to the run folder.
pub fn state_file(at: Position) -> String {
    if at.step == 0 {
        format!("checkpoints/epoch-{:05}.safetensors", at.epoch)
    } else {
        format!("checkpoints/epoch-{:05}-step-{:06}.safetensors", at.epoch, at.step)
    }
}
