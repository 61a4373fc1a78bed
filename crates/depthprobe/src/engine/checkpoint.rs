//! The trainer's checkpoints: every network's variables and momentum buffers (and a stopped
//! epoch's counters) under the PyTorch module's names, copied to the host once per stacked tensor
//! and written network by network; and loading a network back (docs/checkpoints.md).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Tensor};

use super::trainer::{slice, CursorPart, EpochCursor, Trainer};

impl Trainer {
    /// Network k's variables under their PyTorch names and shapes.
    pub fn network_variables(&self, k: usize) -> HashMap<String, Tensor> {
        let n = self.networks();
        self.vs.variables().into_iter().map(|(name, t)| (name, slice(&t, k, n))).collect()
    }

    /// Write network k's checkpoint between epochs ([`HostState::save`]).
    pub fn save(&self, k: usize, path: &Path) -> Result<()> {
        self.host_state(None).save(k, path)
    }

    /// What every network's checkpoint holds, on the host: one device-to-host copy per stacked
    /// tensor whatever K is, where saving network by network would copy each network's slice of
    /// each tensor on its own (about 3,000 small synchronous copies for 32 MLP-10-100 networks
    /// on a GPU). It borrows the trainer, so no step can change the variables while it lives: on
    /// a CPU it shares their storage.
    pub fn host_state(&self, cursor: Option<&EpochCursor>) -> HostState<'_> {
        let host = |t: &Tensor| t.to_device(Device::Cpu);
        let mut stacked: Vec<(String, Tensor)> =
            self.vs.variables().into_iter().map(|(name, t)| (format!("model.{name}"), host(&t))).collect();
        stacked.extend(self.opt.state().into_iter().map(|(name, b)| (format!("momentum.{name}"), host(b))));
        HostState {
            networks: self.networks(),
            stacked,
            cursor: cursor.map(|c| HostCursor {
                step: c.step,
                seen: c.seen,
                loss_sum: host(&c.loss_sum),
                correct: host(&c.correct),
                augment: c.augment.clone(),
            }),
            _trainer: std::marker::PhantomData,
        }
    }

    /// Restore network k from what `save` wrote; its part of the epoch cursor when the
    /// checkpoint is inside an epoch.
    pub fn load(&mut self, k: usize, path: &Path) -> Result<Option<CursorPart>> {
        let n = self.networks();
        let mut saved: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .with_context(|| format!("{}: reading checkpoint", path.display()))?
            .into_iter()
            .collect();
        let mut put = |key: String, var: &Tensor| -> Result<()> {
            let t = saved.remove(&key).with_context(|| format!("{}: no tensor '{key}'", path.display()))?;
            let mut dst = slice(var, k, n);
            if t.size() != dst.size() {
                bail!("{}: '{key}' has shape {:?}, the model {:?}", path.display(), t.size(), dst.size());
            }
            tch::no_grad(|| dst.copy_(&t));
            Ok(())
        };
        for (name, var) in self.vs.variables() {
            put(format!("model.{name}"), &var)?;
        }
        for (name, buf) in self.opt.state_mut() {
            put(format!("momentum.{name}"), buf)?;
        }
        let Some(step) = saved.remove("progress.step") else { return Ok(None) };
        let mut int = |key: &str| -> Result<i64> {
            let t = saved.remove(key).with_context(|| format!("{}: no tensor '{key}'", path.display()))?;
            Ok(t.int64_value(&[0]))
        };
        let (seen, correct) = (int("progress.seen")?, int("progress.correct")?);
        let augment = saved.remove("progress.augment_rng").map(|t| t.int64_value(&[0]) as u64);
        let loss = saved
            .remove("progress.loss_sum")
            .with_context(|| format!("{}: no tensor 'progress.loss_sum'", path.display()))?;
        Ok(Some(CursorPart {
            step: step.int64_value(&[0]) as usize,
            loss_sum: loss.double_value(&[0]) as f32, // saved from f32: exact
            correct,
            seen: seen as usize,
            augment,
        }))
    }
}

/// Every network's checkpoint contents on the host ([`Trainer::host_state`]): the stacked
/// variables and momentum buffers, and a stopped epoch's counters.
pub struct HostState<'a> {
    networks: usize,
    /// `model.<name>` and `momentum.<name>`, each stacked for all networks along dimension 0.
    stacked: Vec<(String, Tensor)>,
    cursor: Option<HostCursor>,
    _trainer: std::marker::PhantomData<&'a Trainer>,
}

/// An [`EpochCursor`] with its counters on the host.
struct HostCursor {
    step: usize,
    seen: usize,
    loss_sum: Tensor,
    correct: Tensor,
    augment: Vec<Option<u64>>,
}

impl HostState<'_> {
    /// Write network k's variables (`model.<name>`, parameters and BatchNorm statistics) and
    /// momentum buffers (`momentum.<name>`), and its part of the cursor if there is one, to a
    /// safetensors file; names and shapes are those of the PyTorch module (docs/checkpoints.md),
    /// whatever K is.
    pub fn save(&self, k: usize, path: &Path) -> Result<()> {
        let n = self.networks;
        let mut named: Vec<(String, Tensor)> =
            self.stacked.iter().map(|(name, t)| (name.clone(), slice(t, k, n).contiguous())).collect();
        // Inside an epoch: where it stopped (docs/checkpoints.md, "Inside an epoch").
        if let Some(c) = &self.cursor {
            let one = |v: i64| Tensor::from_slice(&[v]);
            named.push(("progress.step".into(), one(c.step as i64)));
            named.push(("progress.seen".into(), one(c.seen as i64)));
            named.push(("progress.loss_sum".into(), c.loss_sum.narrow(0, k as i64, 1)));
            named.push(("progress.correct".into(), c.correct.narrow(0, k as i64, 1)));
            if let Some(a) = c.augment[k] {
                named.push(("progress.augment_rng".into(), one(a as i64)));
            }
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Tensor::write_safetensors(&named, path).with_context(|| format!("{}: writing checkpoint", path.display()))
    }
}
