#!/usr/bin/env python3
"""The per-layer NCC accuracy and CDNV computed the way the paper's published code does
(lianegalanti/NC, analysis.py): PyTorch, batches of 128, per-class masked sums, the single-pass
variance |E‖x‖² − ‖μ‖²|, NCC through torch.cdist + argmin, and a separate pass over the data
for each quantity. Reads the same .npy folders as `depthprobe measure` and prints JSON.

usage: paper_measures_torch.py TRAIN_DIR TEST_DIR [--threads N] [--batch 128]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def load(d):
    d = Path(d)
    y = torch.from_numpy(np.load(d / "labels.npy").astype(np.int64))
    layers = []
    i = 1
    while (d / f"layer_{i}.npy").exists():
        layers.append(np.load(d / f"layer_{i}.npy", mmap_mode="r"))
        i += 1
    return y, layers


def batches(x, y, bs):
    for s in range(0, len(y), bs):
        # A fresh, writable batch, as the published code's DataLoader hands out.
        yield torch.from_numpy(np.array(x[s : s + bs], dtype=np.float32)), y[s : s + bs]


def means_and_vars(x, y, c, bs):
    """Pass 1 of the published code: per-class sums and squared norms, masked per class."""
    d = x.shape[1]
    sums = torch.zeros(c, d)
    sq = torch.zeros(c)
    n = torch.zeros(c)
    for xb, yb in batches(x, y, bs):
        for k in range(c):
            m = yb == k
            if m.any():
                xk = xb[m]
                sums[k] += xk.sum(0)
                sq[k] += (xk**2).sum()
                n[k] += m.sum()
    mu = sums / n[:, None]
    var = torch.abs(sq / n - (mu**2).sum(1))
    return mu, var


def cdnv(mu, var):
    c = len(var)
    vals = []
    for i in range(c):
        for j in range(i + 1, c):
            vals.append(((var[i] + var[j]) / (2 * ((mu[i] - mu[j]) ** 2).sum())).item())
    return float(np.mean(vals))


def ncc_acc(x, y, mu, bs):
    correct = 0
    for xb, yb in batches(x, y, bs):
        correct += (torch.cdist(xb, mu).argmin(1) == yb).sum().item()
    return correct / len(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    ytr, ltr = load(a.train)
    yte, lte = load(a.test)
    c = int(ytr.max()) + 1
    out = []
    with torch.no_grad():
        for i, (xtr, xte) in enumerate(zip(ltr, lte)):
            mu, var = means_and_vars(xtr, ytr, c, a.batch)
            mu_te, var_te = means_and_vars(xte, yte, c, a.batch)
            out.append({
                "layer": i + 1,
                "ncc_train_acc": ncc_acc(xtr, ytr, mu, a.batch),
                "ncc_test_acc": ncc_acc(xte, yte, mu, a.batch),
                "cdnv_train": cdnv(mu, var),
                "cdnv_test": cdnv(mu_te, var_te),
            })
    print(json.dumps({"layers": out, "wall_s": time.time() - t0}))


if __name__ == "__main__":
    main()
