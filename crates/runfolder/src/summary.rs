//! `summary.json`: where a run stands and its latest probe (docs/result-files.md). One type for
//! training runs, re-probes of a checkpoint and `measure`; the fields a kind of summary does not
//! have are absent.

use depthprobe_config::{CorruptionMode, DatasetName, ModelConfig};
use depthprobe_measures::{json, ProbeResult};
use serde::{Deserialize, Serialize};

/// A training run's status in summary.json.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Training (or killed while training: the sweep tools tell which by the run's lock).
    Running,
    /// Stopped by a signal after writing a checkpoint of the step it was at; resumes from it.
    Interrupted,
    Done,
    /// Stopped by an error, named in `reason`.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Interrupted => "interrupted",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }
}

/// The label corruption a run trained with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptionInfo {
    pub p: f64,
    pub mode: CorruptionMode,
    /// Train labels actually changed (corrupted_labels.csv has them).
    pub changed: usize,
}

/// The group a run was trained in, as one batched model of `size` networks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInfo {
    pub size: usize,
    /// The runs of the group (sweep run ids, or run folder names), in network order.
    pub runs: Vec<String>,
}

/// The network's own accuracy and loss (eval mode) at the probe; null when not finite.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkMetrics {
    #[serde(serialize_with = "json::f64_value", deserialize_with = "json::de_f64")]
    pub train_acc: f64,
    #[serde(serialize_with = "json::f64_value", deserialize_with = "json::de_f64")]
    pub test_acc: f64,
    #[serde(serialize_with = "json::f64_value", deserialize_with = "json::de_f64")]
    pub train_loss: f64,
    #[serde(serialize_with = "json::f64_value", deserialize_with = "json::de_f64")]
    pub test_loss: f64,
}

/// How a run used the CPU: LibTorch's threads, where that number came from, and how the
/// threads wait for each other (docs/performance.md, "Sharing the CPU").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    pub threads: usize,
    /// E.g. "train.threads = 4", "SLURM_CPUS_PER_TASK=4", "2 CPUs (affinity mask 2, no cgroup quota)".
    pub threads_from: String,
    /// E.g. "LibTorch's default (spin, then sleep)".
    pub omp_wait: String,
    /// With `train.threads = 0` on a CPU: how the run gave way when the CPU was shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveThreads>,
}

/// A run that chose between `threads` and `fewer` threads as it went (docs/performance.md,
/// "Sharing the CPU"): how often it changed, and how long it ran with fewer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveThreads {
    pub fewer: usize,
    pub changes: usize,
    /// Seconds of timed work (training steps and probe batches) with fewer threads, and in all.
    pub fewer_s: f64,
    pub timed_s: f64,
}

/// Where the embeddings came from: `measure`'s two folders or files, or a re-probed checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Embeddings { train: String, test: String },
    Checkpoint(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The latest probe (absent in a run that stopped before its first probe).
    #[serde(flatten)]
    pub result: Option<ProbeResult>,
    #[serde(flatten)]
    pub network: Option<NetworkMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Epochs completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs_planned: Option<usize>,
    /// The epoch of the probe the layers come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_epoch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corruption: Option<CorruptionInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The depthprobe build that wrote it: version and commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
    /// The machine it ran on (CPU model, cores, memory, GPUs), in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// How it used the CPU (training runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
    /// Seconds the run (or command) has taken.
    pub wall_s: f64,
}

impl Summary {
    /// A summary of `result` alone (what `measure` writes, plus `source`).
    pub fn of_probe(result: ProbeResult, wall_s: f64) -> Summary {
        Summary::of_probe_opt(Some(result), wall_s)
    }

    /// A summary with `result` if there is one yet; every other field to be filled in.
    pub fn of_probe_opt(result: Option<ProbeResult>, wall_s: f64) -> Summary {
        Summary {
            result,
            network: None,
            status: None,
            reason: None,
            epochs: None,
            epochs_planned: None,
            probe_epoch: None,
            device: None,
            dataset: None,
            model: None,
            corruption: None,
            batch: None,
            source: None,
            producer: None,
            machine: None,
            cpu: None,
            wall_s,
        }
    }

    pub fn is_done(&self) -> bool {
        self.status == Some(Status::Done)
    }
}
