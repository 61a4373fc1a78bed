#!/usr/bin/env python3
"""A whole label-noise run in PyTorch eager, the way a researcher's script does it today: the
baseline for runs per hour (bench/gpu/sweep.sh). The run matches `bench/gpu/sweep.sh`'s config:
MNIST (first N per class of each split, padded to 32×32, normalised), per-sample label corruption
with probability p, MLP-L-H with BatchNorm (PyTorch default init), SGD(lr 0.1, momentum 0.9,
weight decay 5e-4) with one epoch of linear warm-up, batch 128, and a probe every `--every`
epochs of every layer's NCC train / test accuracy and CDNV (per-class masked sums and
torch.cdist, as the published code measures, but all layers from one forward pass: kinder to
PyTorch than the published code's pass per quantity). No figures are drawn. Data stay on the
device. Writes one JSON file per run.

usage: torch_run_ref.py --data MNIST_DIR --out DIR [--device cuda] --run P:SEED [--run P:SEED ...]
Several --run flags train one after another in this process; one per process is how a sweep of
the researcher's script runs.
"""
import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def idx(path):
    raw = gzip.open(path).read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


def split(root, prefix, per_class):
    x, y = idx(root / f"{prefix}-images-idx3-ubyte.gz"), idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)]) if per_class else np.arange(len(y))
    keep.sort()
    x = np.pad(x[keep], ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255.0
    return torch.from_numpy((x - 0.1307) / 0.3081).unsqueeze(1), torch.from_numpy(y[keep])


def mlp(depth, width, din=1024, c=10):
    layers = []
    for i in range(depth):
        layers += [nn.Linear(din if i == 0 else width, width), nn.BatchNorm1d(width), nn.ReLU()]
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, c))


@torch.no_grad()
def probe(net, xtr, ytr, xte, yte, c=10, bs=1000):
    feats = []
    hooks = [m.register_forward_hook(lambda m, i, o: feats.append(o.flatten(1)))
             for m in net if isinstance(m, nn.Linear)][:-1]
    net.eval()

    def each(x):
        for s in range(0, len(x), bs):
            feats.clear()
            out = net(x[s:s + bs])
            yield s, out, list(feats)

    sums, sq, n = None, None, torch.zeros(c, device=xtr.device)
    for s, _, fs in each(xtr):
        yb = ytr[s:s + bs]
        if sums is None:
            sums = [torch.zeros(c, f.shape[1], device=f.device) for f in fs]
            sq = [torch.zeros(c, device=f.device) for f in fs]
        for k in range(c):
            m = yb == k
            n[k] += m.sum()
            for l, f in enumerate(fs):
                sums[l][k] += f[m].sum(0)
                sq[l][k] += (f[m] ** 2).sum()
    mu = [s / n[:, None] for s in sums]
    var = [torch.abs(q / n - (m ** 2).sum(1)) for q, m in zip(sq, mu)]
    iu = torch.triu_indices(c, c, 1)
    cdnv = [((v[iu[0]] + v[iu[1]]) / (2 * torch.cdist(m, m)[iu[0], iu[1]] ** 2)).mean().item() for v, m in zip(var, mu)]
    acc = {}
    for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        correct, right = torch.zeros(len(mu), device=x.device), torch.zeros((), device=x.device)
        for s, out, fs in each(x):
            yb = y[s:s + bs]
            right += (out.argmax(1) == yb).sum()
            for l, f in enumerate(fs):
                correct[l] += (torch.cdist(f, mu[l]).argmin(1) == yb).sum()
        acc[name] = ((correct / len(y)).tolist(), (right / len(y)).item())
    for h in hooks:
        h.remove()
    net.train()
    return {"ncc_train_acc": acc["train"][0], "ncc_test_acc": acc["test"][0], "cdnv_train": cdnv,
            "train_acc": acc["train"][1], "test_acc": acc["test"][1]}


def run(a, p, seed, dev):
    t0 = time.perf_counter()
    root = Path(a.data)
    xtr, ytr = split(root, "train", a.train_per_class)
    xte, yte = split(root, "t10k", a.test_per_class)
    rng = np.random.default_rng(seed + 1000)
    flip = rng.random(len(ytr)) < p
    y = ytr.numpy().copy()
    y[flip] = rng.integers(0, 10, flip.sum())
    ytr = torch.from_numpy(y)
    xtr, ytr, xte, yte = (t.to(dev) for t in (xtr, ytr, xte, yte))
    torch.manual_seed(seed)
    net = mlp(a.depth, a.width).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    n, bs = len(ytr), 128
    iters = (n + bs - 1) // bs
    probes = []
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(n, device=dev)
        for it, s in enumerate(range(0, n, bs)):
            if epoch == 1:  # linear warm-up over the first epoch
                for g in opt.param_groups:
                    g["lr"] = 0.1 * (it + 1) / iters
            i = perm[s:s + bs]
            if len(i) < 2:
                continue
            loss = nn.functional.cross_entropy(net(xtr[i]), ytr[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % a.every == 0 or epoch == a.epochs:
            probes.append({"epoch": epoch, **probe(net, xtr, ytr, xte, yte)})
    out = Path(a.out) / f"p{p}-seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"p": p, "seed": seed, "probes": probes,
                                                  "wall_s": time.perf_counter() - t0}))
    return probes[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run", action="append", required=True, help="P:SEED")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--train-per-class", type=int, default=500)
    ap.add_argument("--test-per-class", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    for r in a.run:
        p, seed = r.split(":")
        last = run(a, float(p), int(seed), dev)
        print(json.dumps({"run": r, "top_ncc_train_acc": last["ncc_train_acc"][-1], "test_acc": last["test_acc"]}))


if __name__ == "__main__":
    main()
