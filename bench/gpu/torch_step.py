#!/usr/bin/env python3
"""PyTorch's training step of one network, each way a user could run it, timed in one process:
eager, a hand-made CUDA graph of the whole step (forward, loss, backward, SGD step; BatchNorm in
training mode), and torch.compile(mode="reduce-overhead"), at each precision asked for. The
networks are bench/torch_train_ref.py's (the same as depthprobe's), SGD(lr 0.01, momentum 0.9,
weight decay 5e-4), batch 128, random inputs and labels kept on the device (the strongest setup:
no host-side batch assembly). For bench/gpu/paper_scale.py.

    torch_step.py --model mlp|conv --depth L --width H [--device cuda] [--steps 100]
                  [--precisions fp32,default,tf32,bf16] [--modes eager,graph,compile]

Precisions: fp32 (no TF32 anywhere), default (PyTorch's own: cuDNN convolutions in TF32,
matrix products in fp32), tf32 (TF32 in both), bf16 (autocast to bfloat16, fp32 master weights;
ConvNets in channels-last). Prints one JSON line: {"results": [{precision, mode, ms_per_step,
setup_s}, …]}, ms_per_step the median over 5 timed chunks; a mode that cannot run here (a CUDA
graph on a CPU) is reported with its reason instead.
"""
import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from torch_train_ref import conv, mlp  # noqa: E402


def set_precision(p, dev):
    tf32_mm, tf32_conv = {"fp32": (False, False), "default": (False, True), "tf32": (True, True), "bf16": (True, True)}[p]
    torch.backends.cuda.matmul.allow_tf32 = tf32_mm
    torch.backends.cudnn.allow_tf32 = tf32_conv
    if p == "bf16":
        return lambda: torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def build(a, dev, channels_last):
    torch.manual_seed(0)
    net = (conv(a.depth, a.width) if a.model == "conv" else mlp(a.depth, a.width)).to(dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return net, opt


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(dev, steps, one_step):
    """Median ms per step over 5 chunks of steps/5 steps."""
    chunk = max(1, steps // 5)
    per = []
    for _ in range(5):
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(chunk):
            one_step()
        sync(dev)
        per.append((time.perf_counter() - t0) * 1000 / chunk)
    return statistics.median(per)


def run(a, dev, precision, mode, x, y):
    autocast = set_precision(precision, dev)
    cl = precision == "bf16" and a.model == "conv"
    net, opt = build(a, dev, cl)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    n = x.shape[0]
    gen = torch.Generator(device=dev).manual_seed(1)

    def batch():
        idx = torch.randint(0, n, (128,), device=dev, generator=gen)
        return x[idx], y[idx]

    t0 = time.perf_counter()
    if mode in ("eager", "compile"):
        model = net
        if mode == "compile":
            # reduce-overhead is compile + CUDA graphs; on a CPU (dry run) the default mode.
            model = torch.compile(net, mode="reduce-overhead" if dev.type == "cuda" else "default")

        def step():
            xb, yb = batch()
            with autocast():
                loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(a.warmup):
            step()
    else:  # a hand-made CUDA graph of the whole step
        if dev.type != "cuda":
            return {"precision": precision, "mode": mode, "ms_per_step": None, "why": "CUDA graphs need a GPU"}
        sx, sy = batch()
        sx, sy = sx.clone(), sy.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm-up steps before capture, on a side stream
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                with autocast():
                    loss = nn.functional.cross_entropy(net(sx), sy)
                loss.backward()
                opt.step()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(g):
            with autocast():
                static_loss = nn.functional.cross_entropy(net(sx), sy)
            static_loss.backward()
            opt.step()

        def step():
            xb, yb = batch()
            sx.copy_(xb)
            sy.copy_(yb)
            g.replay()

        for _ in range(a.warmup):
            step()
    sync(dev)
    setup = time.perf_counter() - t0
    ms = timed(dev, a.steps, step)
    return {"precision": precision, "mode": mode, "ms_per_step": ms, "setup_s": setup}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp", choices=["mlp", "conv"])
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--samples", type=int, default=128 * 64, help="random samples on the device")
    ap.add_argument("--precisions", default="fp32,default,bf16")
    ap.add_argument("--modes", default="eager,graph,compile")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    shape = (3, 32, 32) if a.model == "conv" else (1, 32, 32)
    torch.manual_seed(0)
    x = torch.randn(a.samples, *shape, device=dev)
    y = torch.randint(0, 10, (a.samples,), device=dev)
    out = []
    for p in a.precisions.split(","):
        for m in a.modes.split(","):
            try:
                out.append(run(a, dev, p, m, x, y))
            except Exception as e:  # a mode that fails here is reported, not fatal
                out.append({"precision": p, "mode": m, "ms_per_step": None, "why": f"{type(e).__name__}: {e}"[:300]})
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    print(json.dumps({"model": a.model, "depth": a.depth, "width": a.width, "results": out}))


if __name__ == "__main__":
    main()
