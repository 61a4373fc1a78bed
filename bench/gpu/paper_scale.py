#!/usr/bin/env python3
"""Paper-scale training speed on one GPU, in one table: depthprobe's training step against
PyTorch eager and against PyTorch's best single-process option (a hand-made CUDA graph of the
whole step, or torch.compile(mode="reduce-overhead"), whichever is faster), same precision on
both sides, batch 128, on MLP-10-512+BN, CONV-8-64, CONV-8-400 and CONV-20-400. Both sides run in
the same run on the same machine, alternating workload by workload, `--rounds` times; each cell
is the median over rounds. Then the issue's targets, met or not, and the projected training time
of the whole Fig. 1 set (CONV-L-400 on CIFAR-10, L ∈ {3, 5, 8, 12, 16, 20}, 2 seeds, 500 epochs of
391 steps) from the measured step times: depthprobe against PyTorch eager in fp32.

On the GPU machine (bench/gpu/paper_scale.sh, with bench/out/gpu carried):
    python3 bench/gpu/paper_scale.py --bin bench/out/gpu/train_throughput
Dry run on a CPU (every workload, one step per measurement; CUDA graphs reported as not
possible there, torch.compile on the MLP only; about 4 minutes on 2 cores):
    .venv/bin/python bench/gpu/paper_scale.py --device cpu --steps 1 --warmup 1 --rounds 1 \\
        --compile mlp-10-512

Both sides run each precision the same way: fp32 (no TF32), default (PyTorch's and LibTorch's own:
cuDNN convolutions in TF32, matrix products in fp32; on a CPU plain fp32), tf32, bf16 (autocast;
PyTorch's and depthprobe's ConvNets also channels-last).
"""
import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
HERE = Path(__file__).resolve().parent
STEPS_PER_EPOCH = math.ceil(50_000 / 128)  # CIFAR-10 train set, batch 128
FIG1_DEPTHS = [3, 5, 8, 12, 16, 20]


def parse_workload(w):
    kind, depth, width = w.split("-")
    return {"name": f"{kind.upper()}-{depth}-{width}" + ("+BN" if kind == "mlp" else ""), "model": kind,
            "depth": int(depth), "width": int(width), "key": w}


def depthprobe_ms(a, wl, precision, graph="off"):
    cmd = [a.bin, "--model", wl["model"], "--depth", str(wl["depth"]), "--width", str(wl["width"]),
           "--device", a.device, "--batches", str(a.steps), "--rounds", "3", "--threads", str(a.threads),
           "--precision", precision, "--graph", graph]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        # The panic's message, not the backtrace note after it.
        lines = [l for l in p.stderr.splitlines() if l.strip() and not l.startswith(("note:", "stack backtrace"))]
        why = next((l for l in lines if "train.graph" in l or "Error" in l or "error" in l), None)
        return None, (why or p.stderr.strip())[-300:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    if graph != "off" and not out.get("captured"):
        return None, "no graph was captured: " + p.stderr.strip()[-300:]
    return 128 / statistics.median(out["samples_per_s"]) * 1000, None


def torch_ms(a, wl, compile_here):
    modes = "eager,graph" + (",compile" if compile_here else "")
    cmd = [sys.executable, str(HERE / "torch_step.py"), "--model", wl["model"], "--depth", str(wl["depth"]),
           "--width", str(wl["width"]), "--device", a.device, "--steps", str(a.steps),
           "--precisions", a.precisions, "--modes", modes, "--threads", str(a.threads), "--warmup", str(a.warmup)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return [], p.stderr.strip()[-300:]
    return json.loads(p.stdout.strip().splitlines()[-1])["results"], None


def fmt(v):
    return "—" if v is None else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "examples" / "train_throughput"))
    ap.add_argument("--workloads", default="mlp-10-512,conv-8-64,conv-8-400,conv-20-400")
    ap.add_argument("--precisions", default="fp32,default,bf16")
    ap.add_argument("--compile", default="mlp-10-512,conv-8-400",
                    help="workloads also timed with torch.compile (each costs a compilation per round)")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per measurement")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10, help="PyTorch's untimed steps before timing")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads of both sides (0: their default)")
    ap.add_argument("--json", default="", help="also write every measurement here")
    ap.add_argument("--graph", choices=["auto", "on", "off"], default="auto",
                    help="also time depthprobe's step as a replayed CUDA graph (auto: on a GPU)")
    a = ap.parse_args()
    if a.threads == 0:
        a.threads = 2 if a.device == "cpu" else 8
    wls = [parse_workload(w) for w in a.workloads.split(",")]
    compile_set = set(filter(None, a.compile.split(",")))
    precisions = a.precisions.split(",")
    ours = {(w["key"], p): [] for w in wls for p in precisions}
    # depthprobe with train.graph = "on" (GPU only): the captured whole step.
    graphs = a.graph == "on" or (a.graph == "auto" and a.device == "cuda")
    ours_graph = {(w["key"], p): [] for w in wls for p in precisions}
    theirs = {}  # (workload, precision, mode) -> [ms]
    notes = {}
    t_start = time.time()
    for r in range(a.rounds):
        for wl in wls:  # alternating: depthprobe, then PyTorch, workload by workload
            for p in precisions:
                ms, err = depthprobe_ms(a, wl, p)
                if ms is not None:
                    ours[(wl["key"], p)].append(ms)
                elif err:
                    notes[(wl["key"], p, "depthprobe")] = err
                if graphs:
                    ms, err = depthprobe_ms(a, wl, p, "on")
                    if ms is not None:
                        ours_graph[(wl["key"], p)].append(ms)
                    elif err:
                        notes[(wl["key"], p, "depthprobe graph")] = err
            res, err = torch_ms(a, wl, wl["key"] in compile_set)
            if err:
                notes[(wl["key"], "torch")] = err
            for x in res:
                key = (wl["key"], x["precision"], x["mode"])
                if x["ms_per_step"] is not None:
                    theirs.setdefault(key, []).append(x["ms_per_step"])
                else:
                    notes[key] = x.get("why", "")
            print(f"  round {r + 1}, {wl['name']}: done at {time.time() - t_start:.0f} s", file=sys.stderr)

    med = lambda v: statistics.median(v) if v else None  # noqa: E731
    ours_default = "default"
    card = "CPU"
    if a.device == "cuda":
        import torch
        card = torch.cuda.get_device_name(0)
    print(f"# Training step, ms (median of {a.rounds} rounds × 3 for depthprobe / 5 chunks for PyTorch, "
          f"{a.steps} steps each), batch 128, {card}; lower is better")
    print("(depthprobe: the faster of its eager and its graph step, both shown; vs: PyTorch ms / depthprobe ms)")
    print(f"{'workload':15} {'precision':9} {'dp eager':>9} {'dp graph':>9} {'PT eager':>9} {'PT graph':>9} "
          f"{'PT compile':>10} {'PT best':>8} {'vs eager':>9} {'vs best':>8}")
    table = []
    for wl in wls:
        for p in a.precisions.split(","):
            oe, og = med(ours[(wl["key"], p)]), med(ours_graph[(wl["key"], p)])
            o = min((v for v in (oe, og) if v is not None), default=None)
            e, g, c = (med(theirs.get((wl["key"], p, m), [])) for m in ("eager", "graph", "compile"))
            best = min((v for v in (g, c) if v is not None), default=None)
            ve = e / o if o and e else None
            vb = best / o if o and best else None
            table.append({"workload": wl["name"], "precision": p, "depthprobe": o, "dp_eager": oe, "dp_graph": og,
                          "eager": e, "graph": g,
                          "compile": c, "best": best, "vs_eager": ve, "vs_best": vb})
            print(f"{wl['name']:15} {p:9} {fmt(oe):>9} {fmt(og):>9} {fmt(e):>9} {fmt(g):>9} {fmt(c):>10} {fmt(best):>8} "
                  f"{(f'{ve:.2f}x' if ve else '—'):>9} {(f'{vb:.2f}x' if vb else '—'):>8}")
    for k, v in notes.items():
        print(f"note {k}: {v}")

    def row(name, p):
        return next((t for t in table if t["workload"] == name and t["precision"] == p), None)

    print("\n# Targets (issue: paper-scale training on one GPU)")
    checks = []
    m = row("MLP-10-512+BN", ours_default)
    # (what, ours ms, theirs ms, target ratio theirs / ours)
    if m:
        checks += [("MLP-10-512+BN ≥ 4× PyTorch eager", m["depthprobe"], m["eager"], 4.0),
                   ("MLP-10-512+BN ≥ 1.0× PyTorch's best", m["depthprobe"], m["best"], 1.0)]
    for p in a.precisions.split(","):
        c = row("CONV-8-400", p)
        if c:
            checks.append((f"CONV-8-400 ≥ 1.0× PyTorch's best in {p}", c["depthprobe"], c["best"], 1.0))
    c, e = row("CONV-8-400", "bf16"), row("CONV-8-400", "default")
    if c and e:
        checks.append(("CONV-8-400 in bf16 ≥ 2× PyTorch eager at its default precision", c["depthprobe"],
                       e["eager"], 2.0))
    for name, o, t, target in checks:
        v = t / o if o and t else None
        if o is None:
            verdict = "not measured: depthprobe's run failed (see the notes)"
        elif t is None:
            verdict = "not measured: no PyTorch time here (CUDA graphs need a GPU; compile not run)"
        else:
            verdict = "met" if v >= target else "MISSED"
        print(f"{name:66} {('—' if v is None else f'{v:.2f}x'):>7}  {verdict}")

    # Fig. 1 from step times: ms per step ≈ α + β·L through CONV-8-400 and CONV-20-400.
    print("\n# Fig. 1 projected: CONV-L-400, L ∈ {3,5,8,12,16,20} × 2 seeds × 500 epochs × "
          f"{STEPS_PER_EPOCH} steps (training only; probes not counted)")

    def project(t8, t20):
        if t8 is None or t20 is None:
            return None
        beta = (t20 - t8) / 12
        alpha = t8 - 8 * beta
        return sum(alpha + beta * L for L in FIG1_DEPTHS) * 2 * 500 * STEPS_PER_EPOCH / 1000 / 3600

    def proj(p, col):
        r8, r20 = row("CONV-8-400", p), row("CONV-20-400", p)
        return project(r8 and r8[col], r20 and r20[col])

    def proj_best(p):
        best = lambda r: min((v for v in (r["graph"], r["compile"]) if v is not None), default=None) if r else None  # noqa: E731
        return project(best(row("CONV-8-400", p)), best(row("CONV-20-400", p)))

    lines = [(f"depthprobe ({p})", proj(p, "depthprobe")) for p in precisions]
    lines += [("PyTorch eager fp32", proj("fp32", "eager")), ("PyTorch eager default", proj("default", "eager"))]
    lines += [(f"PyTorch best ({p}, graph or compile)", proj_best(p)) for p in precisions]
    for name, h in lines:
        unit = "GPU-hours" if a.device == "cuda" else "hours on this CPU"
        print(f"{name:40} {('—' if h is None else f'{h:,.1f} {unit}'):>24}")
    if a.json:
        Path(a.json).write_text(json.dumps({"card": card, "table": table, "ours": {"/".join(k): v for k, v in ours.items()},
                                            "theirs": {"/".join(k): v for k, v in theirs.items()},
                                            "notes": {"/".join(k): v for k, v in notes.items()}}, indent=1))
    print(f"\n(total {time.time() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
