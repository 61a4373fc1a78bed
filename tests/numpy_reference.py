#!/usr/bin/env python3
"""Independent numpy implementation of depthprobe's layer measures (textbook definitions, all
data in memory, float64, full D×D covariances). Run by the Rust test suite on the same .npy
files as `depthprobe measure`; prints one JSON object.

usage: numpy_reference.py TRAIN_DIR TEST_DIR [--eps 0.01,0.05,0.1]
"""
import json
import sys
from pathlib import Path

import numpy as np


def load(d):
    d = Path(d)
    y = np.load(d / "labels.npy").astype(np.int64)
    layers = []
    i = 1
    while (d / f"layer_{i}.npy").exists():
        layers.append(np.load(d / f"layer_{i}.npy").astype(np.float64).reshape(len(y), -1))
        i += 1
    extra = {}
    for name in ("logits", "classifier_weight"):
        if (d / f"{name}.npy").exists():
            extra[name] = np.load(d / f"{name}.npy").astype(np.float64)
    return y, layers, extra


def moments(x, y, c):
    means = np.stack([x[y == k].mean(axis=0) for k in range(c)])
    var = np.array([((x[y == k] - means[k]) ** 2).sum(axis=1).mean() for k in range(c)])
    return means, var


def cdnv(means, var):
    c = len(var)
    vals = [(var[i] + var[j]) / (2 * ((means[i] - means[j]) ** 2).sum()) for i in range(c) for j in range(i + 1, c)]
    return float(np.mean(vals))


def ncc_pred(x, means):
    d = ((x[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1)  # argmin returns the lowest index on ties


def pinv_trace(sw, sb, max_rank):
    vals, vecs = np.linalg.eigh(sb)
    order = np.argsort(vals)[::-1]
    lmax = vals.max()
    acc = 0.0
    for k in order[:max_rank]:
        if vals[k] <= 1e-10 * lmax:
            break
        v = vecs[:, k]
        acc += v @ sw @ v / vals[k]
    return float(acc)


def layer_measures(xtr, ytr, xte, yte, c, weight=None, logits_tr=None, logits_te=None):
    mtr, vtr = moments(xtr, ytr, c)
    mte, vte = moments(xte, yte, c)
    n = len(ytr)
    g = xtr.mean(axis=0)
    centred_rows = xtr - mtr[ytr]
    sw = centred_rows.T @ centred_rows / n
    cm = mtr - g
    counts = np.bincount(ytr, minlength=c)
    sb = cm.T @ cm / c
    ssb = (cm * (counts / n)[:, None]).T @ cm
    norms = np.linalg.norm(cm, axis=1)
    cos = (cm @ cm.T) / np.outer(norms, norms)
    off = ~np.eye(c, dtype=bool)
    sv = np.linalg.svd(xtr, compute_uv=False)
    tol = sv.max() * max(xtr.shape) * np.finfo(np.float32).eps
    p = sv[sv > 0] / sv[sv > 0].sum()
    out = {
        "ncc_train_acc": float((ncc_pred(xtr, mtr) == ytr).mean()),
        "ncc_test_acc": float((ncc_pred(xte, mtr) == yte).mean()),
        "cdnv_train": cdnv(mtr, vtr),
        "cdnv_test": cdnv(mte, vte),
        "within_class_variance_train": float(vtr.mean()),
        "nc1": pinv_trace(sw, sb, c - 1) / c,
        "fuzziness": pinv_trace(sw, ssb, c - 1),
        "nc2_equinorm": float(norms.std() / norms.mean()),
        "nc2_equiangularity": float(np.abs(cos[off] + 1.0 / (c - 1)).mean()),
        "numerical_rank": int((sv > tol).sum()),
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
    }
    if weight is not None:
        out["nc3_self_duality"] = float(((weight / np.linalg.norm(weight) - cm / np.linalg.norm(cm)) ** 2).sum())
    if logits_tr is not None:
        out["nc4_agreement_train"] = float((ncc_pred(xtr, mtr) == logits_tr.argmax(axis=1)).mean())
    if logits_te is not None:
        out["nc4_agreement_test"] = float((ncc_pred(xte, mtr) == logits_te.argmax(axis=1)).mean())
    return out


def hsic1(k, l):
    """Unbiased HSIC of Song et al. (2012) for Gram matrices K, L (diagonals set to zero):
    [tr(K̃L̃) + 1ᵀK̃1 1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2) 1ᵀK̃L̃1] / (n(n−3))."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ kt @ lt @ one)) / (n * (n - 3))


def minibatch_cka(layers, batch=256):
    """Linear CKA of every pair of layers, Nguyen, Raghu & Kornblith (2021): HSIC₁ of linear
    Gram matrices summed over minibatches of `batch` rows in order (a last one of ≥ 4 rows),
    then CKA = ΣHSIC(K, L) / sqrt(ΣHSIC(K, K) ΣHSIC(L, L))."""
    n, nl = len(layers[0]), len(layers)
    h = np.zeros((nl, nl))
    for s in range(0, n, batch):
        e = min(s + batch, n)
        if e - s < 4:
            continue
        grams = [x[s:e] @ x[s:e].T for x in layers]
        for a in range(nl):
            for b in range(nl):
                h[a, b] += hsic1(grams[a], grams[b])
    d = np.sqrt(np.diag(h))
    return (h / np.outer(d, d)).tolist()


def main():
    args = sys.argv[1:]
    eps = [0.01, 0.05, 0.1]
    if "--eps" in args:
        i = args.index("--eps")
        eps = [float(v) for v in args[i + 1].split(",")]
        del args[i : i + 2]
    ytr, ltr, etr = load(args[0])
    yte, lte, ete = load(args[1])
    c = int(ytr.max()) + 1
    layers = []
    for i, (xtr, xte) in enumerate(zip(ltr, lte)):
        top = i == len(ltr) - 1
        m = layer_measures(
            xtr, ytr, xte, yte, c,
            weight=etr.get("classifier_weight") if top else None,
            logits_tr=etr.get("logits") if top else None,
            logits_te=ete.get("logits") if top else None,
        )
        m["layer"] = i + 1
        layers.append(m)
    errs = [1 - l["ncc_train_acc"] for l in layers]
    depth = {}
    for e in eps:
        hit = [i + 1 for i, err in enumerate(errs) if err <= e]
        depth[repr(e)] = hit[0] if hit else None
    # Equi-separation: fit up to the first layer within 10% of the smallest fuzziness.
    fz = [(l["layer"], l["fuzziness"]) for l in layers if np.isfinite(l["fuzziness"]) and l["fuzziness"] > 0]
    smallest = min(b for _, b in fz)
    end = next(i for i, (_, b) in enumerate(fz) if b <= 1.1 * smallest)
    fz = fz[: end + 1]
    xs = np.array([a for a, _ in fz], dtype=float)
    ys = np.log([b for _, b in fz])
    slope, intercept = np.polyfit(xs, ys, 1)
    r = float(np.corrcoef(xs, ys)[0, 1])
    fit = {"slope": float(slope), "intercept": float(intercept), "pearson_r": r, "r_squared": r * r,
           "first_layer": int(xs[0]), "last_layer": int(xs[-1])}
    print(json.dumps({"layers": layers, "effective_depth": depth, "fuzziness_fit": fit,
                      "cka_train": minibatch_cka(ltr), "cka_test": minibatch_cka(lte)}))


if __name__ == "__main__":
    main()
