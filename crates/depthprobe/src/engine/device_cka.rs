//! CKA's minibatch HSIC sums on the training device (the host's is `CkaBatcher` in
//! `depthprobe_measures`): each network's measured rows are cut into minibatches of
//! CKA_BATCH_ROWS in arrival order, as on the host, and each minibatch's Gram matrices and every
//! pair's unbiased HSIC are computed in f64 where the embeddings are; only the L×L sums and the
//! counts come back.

use depthprobe_measures::{CkaHsic, CKA_BATCH_ROWS, CKA_MIN_ROWS};
use tch::{Device, Kind, Tensor};

use super::host_f64;

struct Network {
    /// Per layer, the rows held since the last minibatch, [m, D_i] f64 chunks.
    held: Vec<Vec<Tensor>>,
    n: usize,
    hsic: Tensor,
    batches: u64,
    rows: u64,
}

/// Every network's CKA statistic of one split.
pub(super) struct DeviceCka {
    layers: usize,
    nets: Vec<Network>,
}

impl DeviceCka {
    pub fn new(k: usize, layers: usize, device: Device) -> DeviceCka {
        let l = layers as i64;
        let nets = (0..k)
            .map(|_| Network {
                held: (0..layers).map(|_| Vec::new()).collect(),
                n: 0,
                hsic: Tensor::zeros([l, l], (Kind::Double, device)),
                batches: 0,
                rows: 0,
            })
            .collect();
        DeviceCka { layers, nets }
    }

    /// Network k's measured rows of one batch: every layer's [n, D_i] f64.
    pub fn push(&mut self, k: usize, xs: Vec<Tensor>, n: usize) {
        assert_eq!(xs.len(), self.layers, "one tensor per layer");
        if n == 0 {
            return;
        }
        let net = &mut self.nets[k];
        for (held, x) in net.held.iter_mut().zip(xs) {
            held.push(x);
        }
        net.n += n;
        while net.n >= CKA_BATCH_ROWS {
            let b = CKA_BATCH_ROWS as i64;
            let all: Vec<Tensor> = net.held.iter().map(|h| Tensor::cat(h, 0)).collect();
            let rest = (net.n - CKA_BATCH_ROWS) as i64;
            let batch: Vec<Tensor> = all.iter().map(|x| x.narrow(0, 0, b)).collect();
            add_batch(net, &batch, CKA_BATCH_ROWS);
            net.held = all.iter().map(|x| vec![x.narrow(0, b, rest)]).collect();
            net.n -= CKA_BATCH_ROWS;
        }
    }

    /// Network k's statistic, the rows still held added as a last minibatch.
    pub fn finish(&mut self, k: usize) -> CkaHsic {
        let net = &mut self.nets[k];
        if net.n >= CKA_MIN_ROWS {
            let all: Vec<Tensor> = net.held.iter().map(|h| Tensor::cat(h, 0)).collect();
            let n = net.n;
            add_batch(net, &all, n);
        }
        net.held.iter_mut().for_each(Vec::clear);
        net.n = 0;
        CkaHsic::from_parts(self.layers, net.batches, net.rows, host_f64(&net.hsic)).expect("L×L")
    }
}

/// One minibatch: K̃_l = X_l X_lᵀ with a zero diagonal for every layer, then every pair's
/// HSIC₁ = [tr(K̃_a K̃_b) + 1ᵀK̃_a1·1ᵀK̃_b1/((n−1)(n−2)) − 2/(n−2)·(K̃_a1)·(K̃_b1)] / (n(n−3)).
fn add_batch(net: &mut Network, xs: &[Tensor], n: usize) {
    let grams: Vec<Tensor> = xs
        .iter()
        .map(|x| {
            let g = x.matmul(&x.transpose(0, 1));
            let mut diagonal = g.diagonal(0, 0, 1);
            let _ = diagonal.fill_(0.0);
            g.view([1, -1])
        })
        .collect();
    let g = Tensor::cat(&grams, 0); // [L, n²]
    let nf = n as f64;
    let trace = g.matmul(&g.transpose(0, 1));
    let rows = g.view([xs.len() as i64, n as i64, n as i64]).sum_dim_intlist(2, false, Kind::Double); // [L, n]
    let totals = rows.sum_dim_intlist(1, true, Kind::Double); // [L, 1]
    let cross = rows.matmul(&rows.transpose(0, 1));
    let h = (trace + totals.matmul(&totals.transpose(0, 1)) / ((nf - 1.0) * (nf - 2.0)) - cross * (2.0 / (nf - 2.0)))
        / (nf * (nf - 3.0));
    net.hsic += h;
    net.batches += 1;
    net.rows += n as u64;
}
