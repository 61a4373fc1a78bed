#!/usr/bin/env python3
"""Training throughput, depthprobe vs PyTorch eager on the same CPU (or --device cuda), alternating runs:
MLP-10-512 on MNIST-shaped input and CONV-8-64 on CIFAR-shaped input, batch 128.

    cargo build --release --example train_throughput   # with scripts/env.sh sourced
    .venv/bin/python bench/train_bench.py [--repeats 3] [--threads 2]

With --baseline-bin OTHER (another build's train_throughput, e.g. of an earlier commit) it also
times that build in the same alternation and prints ours / OTHER: how a change moved the speed
of the lone-network (K = 1) path.
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd):
    """(samples per wall second of each timed epoch, samples per CPU second of each, peak RSS in
    MiB) of one process, under /usr/bin/time."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, cmd)], check=True, capture_output=True, text=True)
    rss_kib = int(p.stderr.strip().splitlines()[-1])
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return out["samples_per_s"], out["cpu_samples_per_s"], rss_kib / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, default=0, help="batches per timed epoch (0: 40 MLP / 6 CONV)")
    ap.add_argument("--model", default="both", choices=["both", "mlp", "conv"])
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "examples" / "train_throughput"))
    ap.add_argument("--baseline-bin", default="", help="another build's train_throughput, timed in the same alternation")
    a = ap.parse_args()
    rs = a.bin
    extra = ["--device", a.device] + (["--batches", str(a.batches)] if a.batches else [])
    # Wall-time throughput is what a user sees. Per CPU second (all threads) is printed too: on a
    # shared machine other tenants' load moves wall time by ±20% between runs but CPU time much
    # less (on a GPU it only counts the host side).
    print(f"{'workload':22} {'depthprobe samples/s':>21} {'PyTorch samples/s':>18} {'ratio':>6} "
          f"{'per CPU-s (ours / PyTorch)':>28} {'ratio':>6} {'peak RSS MiB (ours / PyTorch)':>30}")
    models = (("mlp", "MLP-10-512 train step"), ("conv", "CONV-8-64 train step"))
    baseline = {}
    for model, name in (m for m in models if a.model in ("both", m[0])):
        ours, theirs, cpu_o, cpu_t, rss_o, rss_t = [], [], [], [], [], []
        base, cpu_b = [], []
        for _ in range(a.repeats):
            r, c, m = run([rs, "--model", model, "--threads", str(a.threads), *extra])
            ours += r
            cpu_o += c
            rss_o.append(m)
            if a.baseline_bin:
                r, c, _ = run([a.baseline_bin, "--model", model, "--threads", str(a.threads), *extra])
                base += r
                cpu_b += c
            r, c, m = run([sys.executable, ROOT / "bench" / "torch_train_ref.py", "--model", model, "--threads", str(a.threads), *extra])
            theirs += r
            cpu_t += c
            rss_t.append(m)
        mo, mt = statistics.median(ours), statistics.median(theirs)
        co, ct = statistics.median(cpu_o), statistics.median(cpu_t)
        print(f"{name:22} {mo:21.0f} {mt:18.0f} {mo / mt:5.2f}x {co:14.0f} / {ct:<11.0f} {co / ct:5.2f}x "
              f"{max(rss_o):14.0f} / {max(rss_t):.0f}")
        if base:
            baseline[name] = (mo, statistics.median(base), co, statistics.median(cpu_b))
    for name, (mo, mb, co, cb) in baseline.items():
        print(f"{name:22} ours {mo:.0f} vs baseline build {mb:.0f} samples/s: {mo / mb:.3f}x "
              f"(per CPU second {co:.0f} vs {cb:.0f}: {co / cb:.3f}x)")


if __name__ == "__main__":
    main()
