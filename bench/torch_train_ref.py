#!/usr/bin/env python3
"""PyTorch eager reference (CPU or --device cuda) for bench/train_bench.py: the same MLP-10-512 (1×32×32 input) and
CONV-8-64 (3×32×32) as depthprobe (Linear/Conv → BatchNorm → ReLU blocks, the CONV stem, PyTorch
default init), SGD(lr 0.01, momentum 0.9, weight decay 5e-4), batch 128, a shuffled epoch over
pre-loaded random data with random labels; prints one JSON line like train_throughput."""
import argparse
import json
import time

import torch
from torch import nn


def mlp(depth=10, width=512, din=1024, c=10):
    layers = []
    for i in range(depth):
        layers += [nn.Linear(din if i == 0 else width, width), nn.BatchNorm1d(width), nn.ReLU()]
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, c))


def conv(depth=8, h=64, cin=3, c=10):
    layers = [nn.Conv2d(cin, h, 2, 2), nn.BatchNorm2d(h), nn.Conv2d(h, h, 2, 2), nn.BatchNorm2d(h), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Conv2d(h, h, 3, padding=1), nn.BatchNorm2d(h), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(h * 64, c))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, default=0)
    ap.add_argument("--depth", type=int, default=10, help="MLP depth (the CONV is CONV-8-64)")
    ap.add_argument("--width", type=int, default=512, help="MLP width")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    shape, batches = ((3, 32, 32), 6) if a.model == "conv" else ((1, 32, 32), 40)
    batches = a.batches or batches
    n = 128 * batches
    x = torch.randn(n, *shape)
    y = torch.randint(0, 10, (n,))
    net = (conv() if a.model == "conv" else mlp(a.depth, a.width)).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def epoch():
        perm = torch.randperm(n)
        total = torch.zeros((), device=dev)
        for s in range(0, n, 128):
            # Batches are assembled on the host and moved, as a DataLoader feeds them.
            idx = perm[s:s + 128]
            loss = nn.functional.cross_entropy(net(x[idx].to(dev)), y[idx].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        return total.item()

    epoch()  # warm-up
    rates, cpu_rates = [], []
    for _ in range(a.rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        epoch()
        rates.append(n / (time.perf_counter() - t0))
        cpu_rates.append(n / (time.process_time() - c0))
    print(json.dumps({"model": a.model, "samples_per_s": rates, "cpu_samples_per_s": cpu_rates, "batch": 128}))


if __name__ == "__main__":
    main()
