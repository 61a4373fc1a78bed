#!/usr/bin/env python3
"""Sweep throughput: K MLP-L-H+BN networks trained as one batched model by depthprobe
(examples/sweep_throughput.rs) against PyTorch eager training them one at a time
(bench/torch_train_ref.py, the same network, batch 128). Prints network-steps/s and the ratio.

    cargo build --release --example sweep_throughput --example train_throughput
    .venv/bin/python bench/sweep_bench.py [--device cuda] [--ks 1,8,32,128] [--width 100]
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def last_json(cmd):
    """The JSON line a process prints last, with its peak RSS in MiB (from /usr/bin/time)."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, cmd)], check=True, capture_output=True, text=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["peak_rss_mib"] = int(p.stderr.strip().splitlines()[-1]) / 1024
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ks", default="1,8,32,128")
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "examples" / "sweep_throughput"))
    a = ap.parse_args()
    common = ["--device", a.device, "--threads", str(a.threads), "--batches", str(a.batches)]
    ref = last_json([sys.executable, ROOT / "bench" / "torch_train_ref.py", "--model", "mlp", "--depth", a.depth,
                     "--width", a.width, *common])
    torch_steps = statistics.median(ref["samples_per_s"]) / 128
    print(f"MLP-{a.depth}-{a.width}+BN on {a.device}, batch 128: PyTorch eager one at a time "
          f"{torch_steps:.0f} network-steps/s, peak RSS {ref['peak_rss_mib']:.0f} MiB")
    print(f"{'K':>5} {'depthprobe batched network-steps/s':>36} {'vs PyTorch eager':>17} {'peak RSS MiB':>13}")
    for k in [int(x) for x in a.ks.split(",")]:
        r = last_json([a.bin, "--k", k, "--depth", a.depth, "--width", a.width, *common])
        m = statistics.median(r["network_steps_per_s"])
        print(f"{k:5d} {m:36.0f} {m / torch_steps:16.1f}x {r['peak_rss_mib']:13.0f}", flush=True)


if __name__ == "__main__":
    main()
