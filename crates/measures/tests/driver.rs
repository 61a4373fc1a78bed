//! The one two-pass driver (`drive`) over the host reduction: it gives exactly what the
//! push-style `LayerProbe` gives, for K networks at once, and a network whose rows are bad fails
//! alone.

use depthprobe_measures::{
    drive, HostBatch, HostReducer, LayerProbe, NetworkRows, Probe, ProbeError, ProbeSpec, Split,
};

mod common;
use common::Rng;

/// `n` rows of two layers (dims 3 and 6) with class structure, and their labels over 4 classes.
fn data(seed: u64, n: usize) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut r = Rng(seed);
    let y: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
    let layers = [3usize, 6]
        .iter()
        .map(|&d| {
            y.iter()
                .flat_map(|&c| {
                    (0..d)
                        .map(|j| (r.normal() + if j % 4 == c as usize { 2.0 } else { 0.0 }) as f32)
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .collect();
    (layers, y)
}

fn spec() -> ProbeSpec {
    let mut s = ProbeSpec::new(4, vec![3, 6]);
    s.rank_max_dim = 8;
    s
}

#[test]
fn drive_equals_the_push_probe_and_fails_networks_alone() {
    type Rows = (Vec<Vec<f32>>, Vec<u32>);
    let mut nets: Vec<(Rows, Rows)> = (0..3).map(|k| (data(10 + k, 250), data(20 + k, 90))).collect();
    // Network 2 has a NaN in layer 2 of its test rows.
    nets[2].1 .0[1][17 * 6 + 5] = f32::NAN;
    let batch = 64;
    let mut reducer = HostReducer::new(3);
    let probes = (0..3).map(|_| Probe::new(spec())).collect();
    let mut streamed = Vec::new();
    let results = drive(probes, &mut reducer, |pass, split, sink| -> Result<(), ProbeError> {
        streamed.push((pass, split));
        let n = if split == Split::Train { 250 } else { 90 };
        for s in (0..n).step_by(batch) {
            let e = (s + batch).min(n);
            let rows: Vec<NetworkRows> = nets
                .iter()
                .map(|(tr, te)| {
                    let (x, y) = if split == Split::Train { tr } else { te };
                    NetworkRows {
                        layers: vec![&x[0][s * 3..e * 3], &x[1][s * 6..e * 6]],
                        logits: None,
                        labels: &y[s..e],
                    }
                })
                .collect();
            sink(HostBatch::Rows(&rows))?;
        }
        Ok(())
    })
    .unwrap();
    // The passes: train, then train again and test.
    assert_eq!(streamed.iter().map(|p| p.1).collect::<Vec<_>>(), vec![Split::Train, Split::Train, Split::Test]);
    for (k, r) in results.iter().enumerate().take(2) {
        let mut p = LayerProbe::new(spec()).unwrap();
        let (tr, te) = &nets[k];
        for pass in 0..2 {
            for s in (0..250).step_by(batch) {
                let e = (s + batch).min(250);
                p.update_all(Split::Train, &[&tr.0[0][s * 3..e * 3], &tr.0[1][s * 6..e * 6]], &tr.1[s..e]).unwrap();
            }
            if pass == 0 {
                p.next_pass().unwrap();
            }
        }
        for s in (0..90).step_by(batch) {
            let e = (s + batch).min(90);
            p.update_all(Split::Test, &[&te.0[0][s * 3..e * 3], &te.0[1][s * 6..e * 6]], &te.1[s..e]).unwrap();
        }
        let want = p.finish().unwrap();
        let got = r.as_ref().unwrap();
        assert_eq!(serde_json::to_string(got).unwrap(), serde_json::to_string(&want).unwrap(), "network {k}");
        assert!(got.layers[0].numerical_rank.is_some());
    }
    let e = results[2].as_ref().unwrap_err().to_string();
    assert!(e.contains("test layer 2") && e.contains("row 17") && e.contains("NaN"), "{e}");
}

#[test]
fn an_empty_class_fails_its_network_and_a_source_error_ends_the_probe() {
    let (x, mut y) = data(1, 40);
    y.iter_mut().for_each(|l| *l = (*l).min(2)); // class 3 never appears
    let mut reducer = HostReducer::new(1);
    let r = drive(vec![Probe::new(spec())], &mut reducer, |_, _, sink| -> Result<(), ProbeError> {
        sink(HostBatch::Rows(&[NetworkRows { layers: vec![&x[0], &x[1]], logits: None, labels: &y }]))
    })
    .unwrap();
    assert!(r[0].as_ref().unwrap_err().to_string().contains("class 3 has no train samples"));
    // A failure of the source itself (not of a network's rows) is the probe's error.
    #[derive(Debug, PartialEq)]
    struct Disk(String);
    impl From<ProbeError> for Disk {
        fn from(e: ProbeError) -> Disk {
            Disk(e.to_string())
        }
    }
    let mut reducer = HostReducer::new(1);
    let r =
        drive(vec![Probe::new(spec())], &mut reducer, |_, _, _| -> Result<(), Disk> { Err(Disk("disk gone".into())) });
    assert_eq!(r.err().unwrap(), Disk("disk gone".into()));
}

/// In-memory layer streams: each layer's rows in batches of `batch`, logits with the top layer.
struct Memory<'a> {
    x: &'a [Vec<f32>],
    logits: &'a [f32],
    y: &'a [u32],
    batch: usize,
    /// A read error at this row of this layer.
    fail: Option<(usize, usize)>,
}

impl depthprobe_measures::LayerStreams for Memory<'_> {
    fn stream(
        &self,
        layer: usize,
        logits: bool,
        sink: &mut depthprobe_measures::LayerSink<'_>,
    ) -> Result<(), ProbeError> {
        let d = [3, 6][layer - 1];
        for s in (0..self.y.len()).step_by(self.batch) {
            let e = (s + self.batch).min(self.y.len());
            if self.fail.is_some_and(|(l, r)| l == layer && (s..e).contains(&r)) {
                return Err(ProbeError::Input(format!("layer_{layer}.npy: disk gone at row {s}")));
            }
            let lg = logits.then(|| &self.logits[s * 4..e * 4]);
            sink(&self.x[layer - 1][s * d..e * d], &self.y[s..e], lg)?;
        }
        Ok(())
    }

    fn stream_all(&self, sink: &mut depthprobe_measures::AllLayersSink<'_>) -> Result<(), ProbeError> {
        for s in (0..self.y.len()).step_by(self.batch) {
            let e = (s + self.batch).min(self.y.len());
            sink(&[&self.x[0][s * 3..e * 3], &self.x[1][s * 6..e * 6]], &self.y[s..e])?;
        }
        Ok(())
    }
}

/// Each layer streamed on its own, in parallel, gives exactly the results of all layers fed
/// batch by batch (same batches), NC4 included; a stream's read error fails the network with
/// its message.
#[test]
fn layer_streams_give_what_batches_of_every_layer_give() {
    let (tr, te) = (data(31, 300), data(32, 70));
    let logits = |n: usize, seed: u64| {
        let mut r = Rng(seed);
        (0..n * 4).map(|_| r.normal() as f32).collect::<Vec<f32>>()
    };
    let (lg_tr, lg_te) = (logits(300, 5), logits(70, 6));
    let batch = 48;
    let run = |streams: bool, fail: Option<(usize, usize)>| {
        let mut reducer = HostReducer::new(1);
        let mut p = Probe::new(spec()).unwrap();
        p.set_classifier(&[0.5; 4 * 6]).unwrap();
        drive(vec![Ok(p)], &mut reducer, |pass, split, sink| -> Result<(), ProbeError> {
            let ((x, y), lg) = if split == Split::Train { (&tr, &lg_tr) } else { (&te, &lg_te) };
            let with_logits = pass == depthprobe_measures::Pass::Decisions;
            if streams {
                let m = Memory { x, logits: lg, y, batch, fail };
                return sink(HostBatch::Streams(&m));
            }
            for s in (0..y.len()).step_by(batch) {
                let e = (s + batch).min(y.len());
                sink(HostBatch::Rows(&[NetworkRows {
                    layers: vec![&x[0][s * 3..e * 3], &x[1][s * 6..e * 6]],
                    logits: with_logits.then(|| &lg[s * 4..e * 4]),
                    labels: &y[s..e],
                }]))?;
            }
            Ok(())
        })
        .unwrap()
        .pop()
        .unwrap()
    };
    let by_batches = run(false, None).unwrap();
    assert!(by_batches.layers[1].nc4_agreement_test.is_some());
    assert_eq!(format!("{:?}", run(true, None).unwrap()), format!("{by_batches:?}"));
    let e = run(true, Some((2, 200))).unwrap_err();
    assert_eq!(e, ProbeError::Input("layer_2.npy: disk gone at row 192".into()));
}
