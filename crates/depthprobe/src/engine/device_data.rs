//! Augmented training batches assembled where the network runs (docs/method.md, "Data"): the
//! train split's pixel bytes stay on the device, and crop, flip and rotation run there as one
//! gather, followed by a table lookup for the normalisation. The random transforms are drawn on
//! the host from each network's generator in the host path's order (data/augment.rs), and the
//! source pixel of every output pixel is computed by the same f64 expression, so both paths give
//! the same bits and the same generator states (tested: tests/device_data.rs). A batch costs the
//! device a few elementwise passes and moves only indices and 40 bytes per image to it.

use tch::{Device, Kind, Tensor};

use crate::data::{normalised, Dataset, Storage, Transform};
use crate::rng::Rng;

/// A split's images on the device, ready to be gathered into augmented batches.
pub struct DeviceImages {
    /// The pixels, [N, C, H·W] bytes.
    pixels: Tensor,
    /// normalised(p, mean[c], std[c]) at c·256 + p, [C·256] f32.
    table: Tensor,
    /// c·256 for each channel, [1, C, 1] i64.
    channel_base: Tensor,
    /// Output pixels' centred coordinates, f64: rows [1, H, 1] and columns [1, 1, W].
    fy: Tensor,
    fx: Tensor,
    c: i64,
    h: i64,
    w: i64,
    device: Device,
}

impl DeviceImages {
    /// The train split of `ds` on `device`; None unless its images are stored as bytes.
    pub fn new(ds: &Dataset, device: Device) -> Option<DeviceImages> {
        let Storage::Bytes { pixels, mean, std } = &ds.train.storage else { return None };
        let &[c, h, w] = ds.shape.as_slice() else { return None };
        let (c, h, w) = (c as i64, h as i64, w as i64);
        let n = ds.train.len() as i64;
        let table: Vec<f32> =
            (0..c as usize).flat_map(|ch| (0..=255u8).map(move |p| normalised(p, mean[ch], std[ch]))).collect();
        let centred = |len: i64| {
            let mid = (len as f64 - 1.0) / 2.0;
            Tensor::from_slice(&(0..len).map(|i| i as f64 - mid).collect::<Vec<f64>>()).to_device(device)
        };
        Some(DeviceImages {
            pixels: Tensor::from_slice(pixels).view([n, c, h * w]).to_device(device),
            table: Tensor::from_slice(&table).to_device(device),
            channel_base: (Tensor::arange(c, (Kind::Int64, device)) * 256).view([1, c, 1]),
            fy: centred(h).view([1, h, 1]),
            fx: centred(w).view([1, 1, w]),
            c,
            h,
            w,
            device,
        })
    }

    /// Rows `rows[j]` of network j, each transformed by the next draw of `aug[j]` (as they are
    /// when the host fills the batch), channel-stacked: [B, K·C, H, W] f32, row b of network j at
    /// channel block j.
    pub fn batch(&self, rows: &[&[usize]], aug: &mut [Option<Rng>]) -> Tensor {
        let (k, b) = (rows.len(), rows[0].len());
        let mut index = vec![0i64; b * k];
        let mut t = vec![Transform::IDENTITY; b * k];
        // Each network's draws in its own row order, as the host path makes them.
        for (j, (r, g)) in rows.iter().zip(aug.iter_mut()).enumerate() {
            for (i, &row) in r.iter().enumerate() {
                index[i * k + j] = row as i64;
                if let Some(g) = g.as_mut() {
                    t[i * k + j] = Transform::draw(g);
                }
            }
        }
        let (c, h, w) = (self.c, self.h, self.w);
        let images = self.pixels.index_select(0, &self.on_device(&index));
        let bytes = if aug.iter().any(Option::is_some) { self.transformed(&images, &t) } else { images };
        let looked_up = self.table.take(&(bytes.to_kind(Kind::Int64) + &self.channel_base));
        looked_up.view([b as i64, k as i64 * c, h, w])
    }

    /// `images` [n, C, H·W] under transforms `t`: Transform::source evaluated for every output
    /// pixel at once, then one gather (zero where the source is outside the image).
    fn transformed(&self, images: &Tensor, t: &[Transform]) -> Tensor {
        let (c, h, w) = (self.c, self.h, self.w);
        let n = t.len() as i64;
        // Every image's parameters in one copy to the device: [5, n, 1, 1] (the offsets and the
        // flip are small integers, exact in f64).
        let columns: [fn(&Transform) -> f64; 5] =
            [|t| t.sin, |t| t.cos, |t| t.flip as i64 as f64, |t| t.dy as f64, |t| t.dx as f64];
        let params: Vec<f64> = columns.iter().flat_map(|f| t.iter().map(f)).collect();
        let params = self.on_device(&params).view([5, n, 1, 1]);
        let (sin, cos) = (params.get(0), params.get(1));
        let (flip, dy, dx) =
            (params.get(2).to_kind(Kind::Bool), params.get(3).to_kind(Kind::Int64), params.get(4).to_kind(Kind::Int64));
        let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
        // (cos·fy − sin·fx) + cy and (sin·fy + cos·fx) + cx, one operation at a time, rounded half
        // away from zero: exactly f64::round of the host's expression.
        let ry = round_half_away(&((&cos * &self.fy - &sin * &self.fx) + cy));
        let rx = round_half_away(&((&sin * &self.fy + &cos * &self.fx) + cx));
        let rx = (-&rx + (w - 1)).where_self(&flip, &rx);
        let (sy, sx) = (&ry + dy, &rx + dx);
        let inside = |v: &Tensor, len: i64| v.ge(0).logical_and(&v.lt(len));
        let valid =
            inside(&ry, h).logical_and(&inside(&rx, w)).logical_and(&inside(&sy, h)).logical_and(&inside(&sx, w));
        let source = (sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1)).view([n, 1, h * w]).expand([n, c, h * w], false);
        let gathered = images.gather(2, &source, false);
        gathered * valid.view([n, 1, h * w]).to_kind(Kind::Uint8)
    }

    fn on_device<T: tch::kind::Element>(&self, v: &[T]) -> Tensor {
        Tensor::from_slice(v).to_device(self.device)
    }
}

/// f64::round on a tensor (half away from zero; torch.round rounds half to even), as i64.
/// v − trunc(v) is exact, so the comparison with one half decides exactly.
fn round_half_away(v: &Tensor) -> Tensor {
    let t = v.trunc();
    let up = (v - &t).abs().ge(0.5).to_kind(Kind::Double) * v.sign();
    (t + up).to_kind(Kind::Int64)
}
