//! Each probed layer's weight spectrum at a probe (`probe.weight_spectra`): the weight behind the
//! layer (`Network::layer_weights`), network k's slice of it on the host, and the class means of
//! what it multiplies, from the probe itself (a probed layer, or its 3×3 patches) or from the
//! data; the spectrum is `depthprobe_measures::weight_spectrum` (docs/method.md, "Weight spectra").

use depthprobe_measures::{weight_spectrum, ProbeResult};

use super::host_f32;
use super::network::WeightInput;
use super::trainer::Trainer;
use crate::data::Dataset;

/// The class means of the train inputs of `ds` under its own (possibly corrupted) labels,
/// flattened, C × D row-major; the classes the probe measures are all of them.
fn data_class_means(ds: &Dataset) -> Vec<f64> {
    let (d, c) = (ds.sample_len(), ds.num_classes);
    let mut sums = vec![0.0f64; c * d];
    let mut counts = vec![0u64; c];
    let mut buf = Vec::new();
    let idx: Vec<usize> = (0..ds.train.len()).collect();
    for chunk in idx.chunks(1024) {
        ds.fill_batch(&ds.train, chunk, None, &mut buf);
        for (row, &i) in buf.chunks_exact(d).zip(chunk) {
            let y = ds.train.labels[i] as usize;
            counts[y] += 1;
            for (s, &v) in sums[y * d..(y + 1) * d].iter_mut().zip(row) {
                *s += v as f64;
            }
        }
    }
    for (y, &n) in counts.iter().enumerate() {
        for s in &mut sums[y * d..(y + 1) * d] {
            *s /= n.max(1) as f64;
        }
    }
    sums
}

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
    /// Fill every layer's weight_* fields of each network's probe result (None for a network
    /// whose probe failed; its entry is skipped).
    pub(crate) fn add_weight_spectra(&self, data: &[&Dataset], results: &mut [Option<&mut ProbeResult>]) {
        let weights = self.net.layer_weights();
        let k = results.len();
        let mut data_means: Vec<Option<Vec<f64>>> = vec![None; k];
        for (i, lw) in weights.iter().enumerate() {
            let size = lw.weight.size();
            let all = host_f32(&lw.weight);
            let rows = size[0] as usize / k;
            let cols = all.len() / (rows * k);
            for (j, res) in results.iter_mut().enumerate() {
                let Some(res) = res.as_deref_mut() else { continue };
                let c = res.classes.len();
                let means: Option<Vec<f64>> = match lw.input {
                    WeightInput::Data => {
                        let m = data_means[j].get_or_insert_with(|| data_class_means(data[j]));
                        (res.classes.len() == data[j].num_classes).then(|| m.clone())
                    }
                    WeightInput::Layer(l) => res.train_class_means.get(l - 1).cloned(),
                    WeightInput::Patches3x3 { layer, channels, height, width } => {
                        res.train_class_means.get(layer - 1).map(|m| patch_class_means(m, c, channels, height, width))
                    }
                    WeightInput::Unprobed => None,
                };
                let means = means.filter(|m| m.len() == c * cols);
                let w = &all[j * rows * cols..(j + 1) * rows * cols];
                let Some(s) = weight_spectrum(w, rows, cols, means.as_deref().map(|m| (m, c))) else { continue };
                if let Some(l) = res.layers.get_mut(i) {
                    l.weight_rank = Some(s.numerical_rank as f64);
                    l.weight_stable_rank = s.stable_rank;
                    l.weight_effective_rank = s.effective_rank;
                    l.weight_alignment = s.class_mean_alignment;
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
