//! Each probed layer's weight spectrum at a probe (`probe.weight_spectra`): the weight behind the
//! layer (`Network::layer_weights`), network k's slice of it on the host, and the class means of
//! what it multiplies: from the probe itself (a probed layer, or its 3×3 patches) or, where the
//! probe does not see it (the data among them), from one more eval pass over the train split
//! (`Network::weight_inputs`, class sums on the device); the spectrum is
//! `depthprobe_measures::weight_spectrum` (docs/method.md, "Weight spectra").

use depthprobe_measures::{weight_spectrum, ProbeResult};
use tch::{Kind, Tensor};

use super::host_f32;
use super::network::WeightInput;
use super::trainer::Trainer;
use crate::data::Dataset;

/// The mean 3×3 patch (stride 1, zero padding 1) of each class's mean feature map: what a 3×3
/// convolution's reshaped weight (out × C·9, channel-major) sees on average. Unfolding is linear,
/// so the mean of the patches is the patches of the mean.
pub(crate) fn patch_class_means(means: &[f64], classes: usize, ch: usize, h: usize, w: usize) -> Vec<f64> {
    assert_eq!(means.len(), classes * ch * h * w);
    let mut out = vec![0.0; classes * ch * 9];
    let cells = (h * w) as f64;
    for c in 0..classes {
        let m = &means[c * ch * h * w..(c + 1) * ch * h * w];
        for k in 0..ch {
            for dy in 0..3 {
                for dx in 0..3 {
                    let mut s = 0.0;
                    for y in 0..h {
                        for x in 0..w {
                            let (yy, xx) = (y + dy, x + dx);
                            if (1..=h).contains(&yy) && (1..=w).contains(&xx) {
                                s += m[k * h * w + (yy - 1) * w + (xx - 1)];
                            }
                        }
                    }
                    out[c * ch * 9 + k * 9 + dy * 3 + dx] = s / cells;
                }
            }
        }
    }
    out
}

impl Trainer {
    /// The class means of every `Hidden` weight input, per layer (None elsewhere) and network
    /// (C × in, row-major, under the network's own train labels): one eval pass over the train
    /// split, `batch` rows at a time, class sums accumulated in f64 where the networks run.
    fn hidden_input_means(&mut self, data: &[&Dataset], batch: usize) -> Vec<Option<Vec<Vec<f64>>>> {
        let k = self.networks();
        let n = data[0].train.len();
        let c = data[0].num_classes as i64;
        let mut sums: Vec<Option<Tensor>> = Vec::new();
        let mut counts = Tensor::zeros([k as i64, c], (Kind::Double, self.device));
        let mut start = 0;
        while start < n {
            let rows: Vec<usize> = (start..(start + batch.max(1)).min(n)).collect();
            let r: Vec<&[usize]> = vec![&rows[..]; k];
            let (x, _) = self.batch(data, false, &r, &mut vec![None; k]);
            let inputs = tch::no_grad(|| self.net.weight_inputs(&x));
            let b = rows.len() as i64;
            let labels: Vec<i64> =
                data.iter().flat_map(|d| rows.iter().map(|&i| d.train.labels[i]).collect::<Vec<_>>()).collect();
            // [K, B, C] one-hot of each network's labels.
            let onehot =
                Tensor::from_slice(&labels).to_device(self.device).view([k as i64, b]).onehot(c).to_kind(Kind::Double);
            counts += onehot.sum_dim_intlist(1, false, Kind::Double);
            if sums.is_empty() {
                sums = inputs.iter().map(|_| None).collect();
            }
            for (s, t) in sums.iter_mut().zip(&inputs) {
                let Some(t) = t else { continue };
                // [B, K·in] → [K, B, in] → class sums [K, C, in].
                let t = t.to_kind(Kind::Double).view([b, k as i64, -1]).transpose(0, 1);
                let add = onehot.transpose(1, 2).bmm(&t);
                match s {
                    Some(acc) => *acc += add,
                    None => *s = Some(add),
                }
            }
            start += rows.len();
        }
        let counts = counts.clamp_min(1.0).unsqueeze(2);
        sums.into_iter()
            .map(|s| {
                s.map(|s| {
                    let means = super::host_f64(&(s / &counts));
                    let per = means.len() / k;
                    (0..k).map(|j| means[j * per..(j + 1) * per].to_vec()).collect()
                })
            })
            .collect()
    }

    /// Fill every layer's weight_* fields of each network's probe result (None for a network
    /// whose probe failed; its entry is skipped).
    pub(crate) fn add_weight_spectra(
        &mut self,
        data: &[&Dataset],
        batch: usize,
        results: &mut [Option<&mut ProbeResult>],
    ) {
        let weights = self.net.layer_weights();
        let k = results.len();
        let hidden = if weights.iter().any(|w| matches!(w.input, WeightInput::Hidden { .. })) {
            self.hidden_input_means(data, batch)
        } else {
            Vec::new()
        };
        for (i, lw) in weights.iter().enumerate() {
            let size = lw.weight.size();
            let all = host_f32(&lw.weight);
            let rows = size[0] as usize / k;
            let cols = all.len() / (rows * k);
            for (j, res) in results.iter_mut().enumerate() {
                let Some(res) = res.as_deref_mut() else { continue };
                let c = res.classes.len();
                let means: Option<Vec<f64>> = match lw.input {
                    WeightInput::Layer(l) => res.train_class_means.get(l - 1).cloned(),
                    WeightInput::Patches3x3 { layer, channels, height, width } => {
                        res.train_class_means.get(layer - 1).map(|m| patch_class_means(m, c, channels, height, width))
                    }
                    WeightInput::Hidden { patches } => {
                        let m = hidden.get(i).and_then(|h| h.as_ref()).map(|h| &h[j]);
                        // Only the measured classes' means (all of them in training).
                        let m = m.filter(|_| c == data[j].num_classes);
                        match patches {
                            None => m.cloned(),
                            Some((ch, h, w)) => m.map(|m| patch_class_means(m, c, ch, h, w)),
                        }
                    }
                };
                let means = means.filter(|m| m.len() == c * cols);
                let w = &all[j * rows * cols..(j + 1) * rows * cols];
                let Some(s) = weight_spectrum(w, rows, cols, means.as_deref().map(|m| (m, c))) else { continue };
                if let Some(l) = res.layers.get_mut(i) {
                    l.weight_rank = Some(s.numerical_rank as f64);
                    l.weight_stable_rank = s.stable_rank;
                    l.weight_effective_rank = s.effective_rank;
                    l.weight_alignment = s.class_mean_alignment;
                    l.weight_singular_values = s.singular_values;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_means_are_the_mean_of_the_unfolded_patches() {
        // One class, 2 channels, 3×4 map: compare with unfolding every position by hand.
        let (ch, h, w) = (2, 3, 4);
        let m: Vec<f64> = (0..ch * h * w).map(|v| (v * 7 % 11) as f64 - 3.0).collect();
        let got = patch_class_means(&m, 1, ch, h, w);
        let mut want = vec![0.0; ch * 9];
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                for k in 0..ch {
                    for dy in -1..=1i64 {
                        for dx in -1..=1i64 {
                            let (yy, xx) = (y + dy, x + dx);
                            let v = if (0..h as i64).contains(&yy) && (0..w as i64).contains(&xx) {
                                m[k * h * w + yy as usize * w + xx as usize]
                            } else {
                                0.0
                            };
                            want[k * 9 + ((dy + 1) * 3 + dx + 1) as usize] += v / (h * w) as f64;
                        }
                    }
                }
            }
        }
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }
}
