//! The trainer's batches: rows of each network's split put together as one channel-stacked batch
//! on the device (assembled on the host), the rows of a split every network shares, and the
//! train inputs kept on the device. Augmented batches assembled on the device are
//! `device_data.rs`.

use tch::{Device, Tensor};

use super::trainer::Trainer;
use crate::data::Dataset;
use crate::rng::Rng;

impl Trainer {
    /// Rows `rows[k]` of each network's split as one channel-stacked batch [B, K·C, …] on the
    /// device, and the labels [B·K] (row b, network k at b·K + k).
    pub(super) fn batch(
        &mut self,
        data: &[&Dataset],
        test: bool,
        rows: &[&[usize]],
        aug: &mut [Option<Rng>],
    ) -> (Tensor, Tensor) {
        let k = rows.len();
        let b = rows[0].len();
        let n: usize = self.shape.iter().product::<i64>() as usize;
        let mut y = vec![0i64; b * k];
        if k == 1 {
            let split = data[0].split(test);
            data[0].fill_batch(split, rows[0], aug[0].as_mut(), &mut self.xbuf);
            for (o, &i) in y.iter_mut().zip(rows[0]) {
                *o = split.labels[i];
            }
        } else {
            self.xbuf.resize(b * k * n, 0.0);
            for (j, (ds, r)) in data.iter().zip(rows).enumerate() {
                let split = ds.split(test);
                ds.fill_batch(split, r, aug[j].as_mut(), &mut self.one);
                for (i, &row) in r.iter().enumerate() {
                    self.xbuf[(i * k + j) * n..(i * k + j + 1) * n].copy_from_slice(&self.one[i * n..(i + 1) * n]);
                    y[i * k + j] = split.labels[row];
                }
            }
        }
        let mut shape = vec![b as i64, k as i64 * self.shape[0]];
        shape.extend(&self.shape[1..]);
        let x = Tensor::from_slice(&self.xbuf).view(shape.as_slice()).to_device(self.device);
        (x, Tensor::from_slice(&y).to_device(self.device))
    }

    /// Rows start..start+n of a split all networks share: [n, C, …] on the device (a slice of the
    /// resident train inputs when they are there).
    pub(super) fn shared_batch(&mut self, ds: &Dataset, test: bool, start: usize, n: usize) -> Tensor {
        if let (Some(xr), false) = (&self.resident, test) {
            return xr.narrow(0, start as i64, n as i64);
        }
        let rows: Vec<usize> = (start..start + n).collect();
        ds.fill_batch(ds.split(test), &rows, None, &mut self.xbuf);
        let mut shape = vec![n as i64];
        shape.extend(&self.shape);
        Tensor::from_slice(&self.xbuf).view(shape.as_slice()).to_device(self.device)
    }
}

/// Whether every data set holds the same inputs in the split (seeds and corruption draws
/// change only labels and order).
pub(super) fn same_inputs(data: &[&Dataset], test: bool) -> bool {
    let d0 = data[0];
    data.iter().all(|d| d.shape == d0.shape && d.split(test).storage == d0.split(test).storage)
}

/// The shared train inputs [N, …] on the device, normalised, for unaugmented batches.
pub(super) fn resident_inputs(d0: &Dataset, device: Device) -> Tensor {
    let all: Vec<usize> = (0..d0.train.len()).collect();
    let mut x0 = Vec::new();
    d0.fill_batch(&d0.train, &all, None, &mut x0);
    let mut shape = vec![all.len() as i64];
    shape.extend(d0.shape.iter().map(|&s| s as i64));
    Tensor::from_slice(&x0).view(shape.as_slice()).to_device(device)
}
