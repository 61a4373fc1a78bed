#!/usr/bin/env python3
"""Training throughput, depthprobe vs PyTorch eager on the same CPU (or --device cuda), alternating runs:
MLP-10-512 on MNIST-shaped input and CONV-8-64 on CIFAR-shaped input, batch 128.

    cargo build --release --example train_throughput   # with scripts/env.sh sourced
    .venv/bin/python bench/train_bench.py [--repeats 3] [--threads 2]
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd):
    """(samples/s of each timed epoch, peak RSS in MiB) of one process, under /usr/bin/time."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, cmd)], check=True, capture_output=True, text=True)
    rss_kib = int(p.stderr.strip().splitlines()[-1])
    return json.loads(p.stdout.strip().splitlines()[-1])["samples_per_s"], rss_kib / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, default=0, help="batches per timed epoch (0: 40 MLP / 6 CONV)")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "examples" / "train_throughput"))
    a = ap.parse_args()
    rs = a.bin
    extra = ["--device", a.device] + (["--batches", str(a.batches)] if a.batches else [])
    print(f"{'workload':22} {'depthprobe samples/s':>21} {'PyTorch samples/s':>18} {'ratio':>6} "
          f"{'peak RSS MiB (ours / PyTorch)':>30}")
    for model, name in (("mlp", "MLP-10-512 train step"), ("conv", "CONV-8-64 train step")):
        ours, theirs, rss_o, rss_t = [], [], [], []
        for _ in range(a.repeats):
            r, m = run([rs, "--model", model, "--threads", str(a.threads), *extra])
            ours += r
            rss_o.append(m)
            r, m = run([sys.executable, ROOT / "bench" / "torch_train_ref.py", "--model", model, "--threads", str(a.threads), *extra])
            theirs += r
            rss_t.append(m)
        mo, mt = statistics.median(ours), statistics.median(theirs)
        print(f"{name:22} {mo:21.0f} {mt:18.0f} {mo / mt:5.2f}x {max(rss_o):14.0f} / {max(rss_t):.0f}")


if __name__ == "__main__":
    main()
