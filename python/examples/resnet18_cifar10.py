"""Train a torchvision ResNet-18 on CIFAR-10 in your own PyTorch loop and watch its layers
with depthprobe: NCC accuracy, CDNV and the linear probe of every residual block, every epoch.

    ./depthprobe data download cifar10
    .venv/bin/python python/examples/resnet18_cifar10.py --epochs 3 --train-per-class 200
    ./depthprobe report runs/resnet18-cifar10          # figures and tables of the run folder

The run folder is what `depthprobe.read_run` and `depthprobe report` read (docs/python.md).
Images are the official binary batches (cifar-10-batches-bin/ under the data folder: --data-dir,
else $DEPTHPROBE_DATA, else the folder `depthprobe data download` fills).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

import depthprobe
import depthprobe.torch as dt

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def default_root() -> Path:
    if os.environ.get("DEPTHPROBE_DATA"):
        return Path(os.environ["DEPTHPROBE_DATA"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "depthprobe"


def load_split(root: Path, files, per_class: int, seed: int):
    """The official batches, then the first `per_class` images of each class in a seeded order."""
    d = root / "cifar-10-batches-bin"
    raw = np.concatenate([np.fromfile(d / f, np.uint8).reshape(-1, 3073) for f in files])
    y = raw[:, 0].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    keep = np.concatenate([order[y[order] == c][:per_class] for c in range(10)])
    keep.sort()
    x = torch.from_numpy(raw[keep, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return (x - MEAN) / STD, torch.from_numpy(y[keep])


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop with 4 pixels of padding and horizontal flip, per image."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (n,), generator=g), torch.randint(0, 9, (n,), generator=g)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32] for i in range(n)])
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def batches(x, y, b):
    return [(x[i:i + b], y[i:i + b]) for i in range(0, len(y), b)]


def evaluate(model, data, device):
    """The network's own accuracy and loss in eval mode."""
    model.eval()
    correct, loss, n = 0, 0.0, 0
    with torch.no_grad():
        for x, y in data:
            out = model(x.to(device))
            y = y.to(device)
            correct += int((out.argmax(1) == y).sum())
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            n += len(y)
    return correct / n, loss / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None, help="data folder (default: $DEPTHPROBE_DATA, else the download folder)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs")
    ap.add_argument("--train-per-class", type=int, default=200, help="train images per class (5000 = all)")
    ap.add_argument("--test-per-class", type=int, default=100, help="test images per class (1000 = all)")
    ap.add_argument("--out", type=Path, default=Path("runs/resnet18-cifar10"), help="run folder to write")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subset, the weights and the data order")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    root = a.data_dir or default_root()
    if not (root / "cifar-10-batches-bin" / "test_batch.bin").exists():
        raise SystemExit(f"no CIFAR-10 in {root}: fetch it with `depthprobe data download cifar10 --root {root}`")
    torch.manual_seed(a.seed)
    xtr, ytr = load_split(root, [f"data_batch_{i}.bin" for i in range(1, 6)], a.train_per_class, a.seed)
    xte, yte = load_split(root, ["test_batch.bin"], a.test_per_class, a.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = torchvision.models.resnet18(num_classes=10).to(device)  # random initial weights
    # The paper's SGD, with a short cosine schedule for a few epochs.
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
    # Every residual block (averaged over its spatial positions: pool="avg") and the classifier;
    # the linear probe on layers of at most 512 dimensions (all of them, after pooling).
    layers = [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)] + ["fc"]
    train_eval, test_eval = batches(xtr, ytr, 250), batches(xte, yte, 250)
    every = dt.ProbeEvery(a.out, model, train_eval, test_eval, k=1, layers=layers,
                          num_classes=10, pool="avg", linear_max_dim=512, device=device)
    g = torch.Generator().manual_seed(a.seed)
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(ytr), generator=g)
        loss_sum = 0.0
        for i in range(0, len(ytr), 128):
            idx = perm[i:i + 128]
            x, y = augment(xtr[idx], g).to(device), ytr[idx].to(device)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
        sched.step()
        t1 = time.perf_counter()
        (train_acc, train_loss), (test_acc, test_loss) = evaluate(model, train_eval, device), evaluate(model, test_eval, device)
        net = dict(train_acc=train_acc, test_acc=test_acc, train_loss=train_loss, test_loss=test_loss)
        res = every.finish(epoch, **net) if epoch == a.epochs else every(epoch, **net)
        top = res["layers"][-1]
        print(f"epoch {epoch}: train loss {loss_sum / len(ytr):.3f} ({t1 - t0:.0f}s) · acc train/test "
              f"{train_acc:.3f}/{test_acc:.3f} · probe {res['wall_s']:.0f}s · "
              f"top NCC train/test {top['ncc_train_acc']:.3f}/{top['ncc_test_acc']:.3f} · "
              f"effective depth (ε=0.05) NCC {res['effective_depth']['0.05']}, linear {res['linear_effective_depth']['0.05']}")
    print(f"\n{'layer':>10} {'NCC train':>9} {'NCC test':>9} {'lin train':>9} {'lin test':>9} {'CDNV train':>10}")
    for name, l in zip(res["layer_names"], res["layers"]):
        print(f"{name:>10} {l['ncc_train_acc']:9.4f} {l['ncc_test_acc']:9.4f} {l['linear_train_acc']:9.4f} "
              f"{l['linear_test_acc']:9.4f} {l['cdnv_train']:10.4f}")
    run = depthprobe.read_run(a.out)
    print(f"\n{a.out}: {len(run['metrics'])} metric rows over epochs {sorted(set(run['metrics'].epoch))}")
    exe = os.environ.get("DEPTHPROBE_BIN") or shutil.which("depthprobe")
    if exe:
        subprocess.run([exe, "report", str(a.out)], check=True)
    else:
        print(f"draw its figures with `depthprobe report {a.out}`")


if __name__ == "__main__":
    main()
