//! `cargo bench -p depthprobe-measures`: the two-pass probe over in-memory embeddings
//! (20,000 train + 5,000 test samples × 4 layers × 512 dims, 10 classes). The end-to-end
//! comparison with PyTorch lives in bench/measure_bench.py. Also the Gram matrix alone (the rank
//! measures' cost), in multiply-adds per second on one core, to compare with the core's peak.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use depthprobe_measures::{Gram, LayerProbe, ProbeSpec, Split};

fn data(n: usize, d: usize, layers: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let y: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let xs = (0..layers)
        .map(|l| {
            y.iter()
                .flat_map(|&c| {
                    (0..d).map(|j| next() + if j % 10 == c as usize { l as f32 } else { 0.0 }).collect::<Vec<_>>()
                })
                .collect()
        })
        .collect();
    (xs, y)
}

fn bench(c: &mut Criterion) {
    let (d, layers, batch) = (512, 4, 1024);
    let (train, ytr) = data(20_000, d, layers, 1);
    let (test, yte) = data(5_000, d, layers, 2);
    let feed = |p: &mut LayerProbe, xs: &[Vec<f32>], y: &[u32], split: Split| {
        for s in (0..y.len()).step_by(batch) {
            let e = (s + batch).min(y.len());
            let refs: Vec<&[f32]> = xs.iter().map(|x| &x[s * d..e * d]).collect();
            p.update_all(split, &refs, &y[s..e]).unwrap();
        }
    };
    let mut g = c.benchmark_group("probe");
    g.sample_size(10);
    for (name, rank) in [("ncc_cdnv_nc1", 0usize), ("with_rank", 1024)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut spec = ProbeSpec::new(10, vec![d; layers]);
                spec.rank_max_dim = rank;
                let mut p = LayerProbe::new(spec).unwrap();
                feed(&mut p, &train, &ytr, Split::Train);
                p.next_pass().unwrap();
                feed(&mut p, &train, &ytr, Split::Train);
                feed(&mut p, &test, &yte, Split::Test);
                p.finish().unwrap()
            })
        });
    }
    g.finish();
}

fn gram(c: &mut Criterion) {
    let (n, d) = (8192, 512);
    let (xs, _) = data(n, d, 1, 3);
    let rows: Vec<&[f32]> = xs[0].chunks_exact(d).collect();
    let mut g = c.benchmark_group("gram");
    g.sample_size(10);
    // Lower triangle only: N·D(D+1)/2 multiply-adds ("elements" in criterion's report).
    g.throughput(Throughput::Elements((n * d * (d + 1) / 2) as u64));
    g.bench_function("8192x512", |b| {
        let mut gram = Gram::new(d);
        b.iter(|| {
            gram.begin_batch();
            for batch in rows.chunks(1024) {
                gram.stage(batch);
            }
            gram.commit();
        })
    });
    g.finish();
}

criterion_group!(benches, bench, gram);
criterion_main!(benches);
