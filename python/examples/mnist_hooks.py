#!/usr/bin/env python3
"""Probe a PyTorch MLP on real MNIST while it trains, through forward hooks.

An nn.Sequential MLP-4-256 with BatchNorm (the paper's MLP-L-H) trains for a few epochs on a
balanced MNIST subset; after each epoch, forward hooks on every Linear layer (the pre-BatchNorm
output, as the paper measures) stream the embeddings into depthprobe.LayerProbe, which prints
the per-layer table and the effective depth.

    python python/examples/mnist_hooks.py --data-dir DATA [--epochs 3]

where DATA holds mnist/ with the official IDX files (or set DEPTHPROBE_DATA).

Without torch it exits 0 after printing why it was skipped.
"""
import argparse
import gzip
import os
import sys
from pathlib import Path

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:
    print("skipped: torch is not installed (pip install torch) — this example needs it")
    sys.exit(0)

import depthprobe


def read_idx(path):
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(root, per_class):
    d = Path(root) / "mnist"
    out = []
    for split in ("train", "t10k"):
        x = read_idx(d / f"{split}-images-idx3-ubyte.gz")
        y = read_idx(d / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
        keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
        keep.sort()
        # The paper's preprocessing: pad 28→32, normalise with the MNIST statistics.
        x = np.pad(x[keep], ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255.0
        out.append((torch.from_numpy((x - 0.1307) / 0.3081).flatten(1), torch.from_numpy(y[keep])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("DEPTHPROBE_DATA"), required="DEPTHPROBE_DATA" not in os.environ)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=500)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    (xtr, ytr), (xte, yte) = load_mnist(a.data_dir, a.per_class)
    depth, width = 4, 256
    layers = []
    for i in range(depth):
        layers += [nn.Linear(1024 if i == 0 else width, width), nn.BatchNorm1d(width), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    linears = [m for m in model if isinstance(m, nn.Linear)][:depth]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    captured = {}
    for i, lin in enumerate(linears, start=1):
        lin.register_forward_hook(lambda mod, inp, out, i=i: captured.__setitem__(i, out))

    def probe_now():
        model.eval()
        probe = depthprobe.LayerProbe(num_classes=10, layers=depth)
        with torch.no_grad():
            for _ in probe.passes():
                for x, y, update in ((xtr, ytr, probe.update_train), (xte, yte, probe.update_test)):
                    for s in range(0, len(y), 1000):
                        model(x[s:s + 1000])
                        for i in range(1, depth + 1):
                            update(i, captured[i], y[s:s + 1000])
        model.train()
        return probe.result()

    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(len(ytr))
        for s in range(0, len(ytr), 128):
            idx = perm[s:s + 128]
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        r = probe_now()
        print(f"epoch {epoch}: loss {loss.item():.4f} · effective depth {r['effective_depth']}")
    print(f"{'layer':>5} {'NCC train':>10} {'NCC test':>9} {'CDNV train':>11} {'CDNV test':>10}")
    for l in r["layers"]:
        print(f"{l['layer']:>5} {l['ncc_train_acc']:>10.4f} {l['ncc_test_acc']:>9.4f} {l['cdnv_train']:>11.4f} {l['cdnv_test']:>10.4f}")
    top = r["layers"][-1]["ncc_train_acc"]
    assert top > 0.9, f"the top layer should be nearly NCC-separable after training, got {top}"


if __name__ == "__main__":
    main()
