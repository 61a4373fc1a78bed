#!/usr/bin/env python3
"""Benchmark: `depthprobe measure` against the published code's way of measuring
(bench/paper_measures_torch.py), same .npy files, same machine, alternating runs.

Default workload (issue #2): 60,000 train + 10,000 test samples × 10 layers × 512 dims, 10 classes.
Prints a table of median wall time and peak RSS, the speed-up, a check that both agree on every
layer's NCC accuracy and CDNV, and the RSS of depthprobe at N/10 (memory must not grow with N).

usage: ./run-tests is not needed; run with the project's venv python:
    .venv/bin/python bench/measure_bench.py [--repeats 3] [--threads 2]
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"

TIMER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
if p.returncode != 0:
    sys.stderr.write(p.stderr); sys.exit(p.returncode)
print(json.dumps({"wall_s": wall, "rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "stdout": p.stdout}))
"""


def make_split(d, n, layers, dim, c, seed, centres):
    d.mkdir(parents=True, exist_ok=True)
    if (d / f"layer_{layers}.npy").exists() and len(np.load(d / "labels.npy")) == n:
        return
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)
    np.save(d / "labels.npy", y.astype(np.int64))
    for l in range(layers):
        x = centres[l][y] + rng.standard_normal((n, dim), dtype=np.float32)
        np.save(d / f"layer_{l + 1}.npy", x.astype(np.float32))


def timed(cmd):
    r = subprocess.run([sys.executable, "-c", TIMER, *map(str, cmd)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}\n{r.stderr}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "depthprobe"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    # Separation grows with depth, as in a trained network.
    centres = [rng.standard_normal((a.classes, a.dim)).astype(np.float32) * (0.05 + 0.1 * l) for l in range(a.layers)]
    tag = f"{a.n_train}x{a.layers}x{a.dim}"
    tr, te = OUT / f"emb-{tag}" / "train", OUT / f"emb-{tag}" / "test"
    make_split(tr, a.n_train, a.layers, a.dim, a.classes, 1, centres)
    make_split(te, a.n_test, a.layers, a.dim, a.classes, 2, centres)
    small = OUT / f"emb-{a.n_train // 10}x{a.layers}x{a.dim}" / "train"
    make_split(small, a.n_train // 10, a.layers, a.dim, a.classes, 3, centres)

    dp = lambda train, out, rank: [a.bin, "measure", "--train", train, "--test", te, "--out", out, "--rank-max-dim", rank]
    runs = {"depthprobe (paper quantities + NC1/NC2/fuzziness)": [], "depthprobe (all measures incl. rank)": [], "PyTorch, published code's way": []}
    outs = {}
    for _ in range(a.repeats):
        r = timed(dp(tr, OUT / "dp", "0"))
        runs["depthprobe (paper quantities + NC1/NC2/fuzziness)"].append(r)
        r = timed(dp(tr, OUT / "dp-rank", "1024"))
        runs["depthprobe (all measures incl. rank)"].append(r)
        r = timed([sys.executable, ROOT / "bench" / "paper_measures_torch.py", tr, te, "--threads", a.threads])
        runs["PyTorch, published code's way"].append(r)
        outs["torch"] = json.loads(r["stdout"])
    small_rss = timed(dp(small, OUT / "dp-small", "0"))["rss_mib"]
    ours = json.loads((OUT / "dp" / "summary.json").read_text())

    worst = 0.0
    for lo, lt in zip(ours["layers"], outs["torch"]["layers"]):
        for k in ("ncc_train_acc", "ncc_test_acc", "cdnv_train", "cdnv_test"):
            worst = max(worst, abs(lo[k] - lt[k]) / max(abs(lt[k]), 1e-12))
    base = statistics.median(r["wall_s"] for r in runs["PyTorch, published code's way"])
    print(f"workload: {a.n_train:,} train + {a.n_test:,} test × {a.layers} layers × {a.dim} dims, {a.classes} classes; threads {a.threads}")
    print(f"{'':52} {'median s':>9} {'min s':>7} {'peak RSS MiB':>13} {'speed-up':>9}")
    for name, rs in runs.items():
        w = [r["wall_s"] for r in rs]
        print(f"{name:52} {statistics.median(w):9.2f} {min(w):7.2f} {max(r['rss_mib'] for r in rs):13.0f} {base / statistics.median(w):8.1f}x")
    print(f"depthprobe peak RSS at N={a.n_train // 10:,}: {small_rss:.0f} MiB (vs {max(r['rss_mib'] for r in runs['depthprobe (paper quantities + NC1/NC2/fuzziness)']):.0f} MiB at N={a.n_train:,})")
    print(f"largest relative difference in NCC accuracy / CDNV between the two: {worst:.2e}")


if __name__ == "__main__":
    main()
