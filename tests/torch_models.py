#!/usr/bin/env python3
"""depthprobe's architectures written as plain PyTorch modules with the same parameter names
(torchvision style), to check that a depthprobe checkpoint loads into them and gives the same
logits. Run by the Rust test suite (crates/depthprobe/tests/architectures.rs):

usage: torch_models.py ARCH CHECKPOINT INPUT.npy LOGITS.npy EMBEDDINGS.npy [--top-layers N]
                       [--top-kind res|fc] [--classes C] [--depth L] [--width H]

Loads CHECKPOINT's `model.*` tensors into the module (strict: only BatchNorm's
num_batches_tracked may be missing), runs INPUT in eval mode, and compares the logits and the
last embedding with depthprobe's (relative 1e-4). Prints one JSON line; exits 1 on a mismatch.
"""
import argparse
import json
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn


class TopLayer(nn.Module):
    """The early paper versions' residual top layer: relu(x + fc2(relu(fc1(x))))."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(128, 50)
        self.fc2 = nn.Linear(50, 128)

    def forward(self, x):
        return torch.relu(x + self.fc2(torch.relu(self.fc1(x))))


def top_layers(n, kind):
    return nn.ModuleList([TopLayer() if kind == "res" else nn.Linear(128, 128) for _ in range(n)])


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.residual_function(x) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, cin, classes, n_top, kind):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(cin, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        c = 64
        for i, (cout, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)]):
            setattr(self, f"conv{i + 2}_x", nn.Sequential(BasicBlock(c, cout, stride), BasicBlock(cout, cout, 1)))
            c = cout
        self.fc = nn.Linear(512, 128)
        self.top_layers = top_layers(n_top, kind)
        self.top_linear = nn.Linear(128, classes)

    def forward(self, x):
        h = self.conv1(x)
        for i in range(2, 6):
            h = getattr(self, f"conv{i}_x")(h)
        h = self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))
        emb = h
        for t in self.top_layers:
            h = t(torch.relu(h))
            emb = h
        return self.top_linear(torch.relu(h)), emb


VGG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class Vgg(nn.Module):
    def __init__(self, depth, cin, side, classes, n_top, kind):
        super().__init__()
        layers, c = [], cin
        for v in VGG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        flat = 512 * (side // 32) ** 2
        self.bottom_layers = nn.Sequential(
            nn.Linear(flat, 4096), nn.ReLU(), nn.BatchNorm1d(4096), nn.Linear(4096, 4096), nn.ReLU(), nn.BatchNorm1d(4096)
        )
        self.fc = nn.Linear(4096, 128)
        self.top_layers = top_layers(n_top, kind)
        self.top_linear = nn.Linear(128, classes)

    def forward(self, x):
        h = self.fc(self.bottom_layers(torch.flatten(self.features(x), 1)))
        emb = h
        for t in self.top_layers:
            h = t(torch.relu(h))
            emb = h
        return self.top_linear(torch.relu(h)), emb


def main():
    ap = argparse.ArgumentParser()
    for a in ("arch", "checkpoint", "input", "logits", "embedding"):
        ap.add_argument(a)
    ap.add_argument("--top-layers", type=int, default=2)
    ap.add_argument("--top-kind", default="res")
    ap.add_argument("--classes", type=int, default=10)
    a = ap.parse_args()
    x = torch.from_numpy(np.load(a.input))
    cin, side = x.shape[1], x.shape[2]
    if a.arch == "resnet18":
        net = ResNet18(cin, a.classes, a.top_layers, a.top_kind)
    else:
        net = Vgg(int(a.arch[3:]), cin, side, a.classes, a.top_layers, a.top_kind)
    state = {k[len("model."):]: v for k, v in load_file(a.checkpoint).items() if k.startswith("model.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    bad_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    net.eval()
    with torch.no_grad():
        logits, emb = net(x)
    want, want_emb = np.load(a.logits), np.load(a.embedding)
    rel = lambda got, w: float(np.abs(got - w).max() / max(np.abs(w).max(), 1e-12))
    out = {
        "missing": bad_missing,
        "unexpected": unexpected,
        "logits_rel": rel(logits.numpy(), want),
        "embedding_rel": rel(emb.numpy(), want_emb),
        "params": sum(p.numel() for p in net.parameters()),
    }
    print(json.dumps(out))
    ok = not bad_missing and not unexpected and out["logits_rel"] < 1e-4 and out["embedding_rel"] < 1e-4
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
