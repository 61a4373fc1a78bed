#!/usr/bin/env bash
# Sweep runs per hour on a GPU (issue: performance), about 3 minutes on an H200. A label-noise
# sweep as the paper runs it: MLP-10-100+BN on MNIST (5,000 train / 2,000 test), 10 epochs,
# a probe every 5, corruption p ∈ {0, 0.1, 0.2, 0.3} × 8 seeds = 32 runs.
#  - batched: all 32 runs with `sweep local --batch 32` (one process, one batched model), with
#    the wall time of each phase (DEPTHPROBE_PHASES);
#  - one at a time: 8 of the same runs (2 per p), each `sweep run` in its own process, as a
#    sweep without batching runs them;
#  - PyTorch: the same 8 (p, seed) runs with bench/torch_run_ref.py, the researcher's way: one
#    process per run, and (TORCH_LOOP=1, default) all 8 in one process;
# prints runs per hour for each, and compares the 8 runs between depthprobe's two ways. Batched GEMMs round
# differently, and early training at lr 0.1 amplifies rounding (one network trained alone with 1
# and with 2 CPU threads already differs by several points of eval accuracy after 2 epochs;
# docs/performance.md), so runs are compared in the mean over the 8: top-layer NCC train
# accuracy and network test accuracy within 0.05 (a check for gross errors), effective depths
# reported side by side.
# Carry bench/out/gpu (bench/gpu/prepare.sh). Dry run here: DEV=cpu EPOCHS=2 bash bench/gpu/sweep.sh
# Batched only, 128 runs in one model: SEEDS=32 BATCH=128 SINGLE=0 bash bench/gpu/sweep.sh
# Training steps as replayed CUDA graphs (train.graph, docs/method.md): GRAPH=on bash bench/gpu/sweep.sh
set -uo pipefail
B=bench/out/gpu
DEV=${DEV:-cuda}
EPOCHS=${EPOCHS:-10}
SEEDS=${SEEDS:-8}      # runs = 4 × SEEDS
BATCH=${BATCH:-32}     # networks per batched model
SINGLE=${SINGLE:-1}    # 0: time the batched sweep only
GRAPH=${GRAPH:-off}    # train.graph of every run
[ "$SINGLE" = 1 ] && [ "$SEEDS" != 8 ] && { echo "the one-at-a-time comparison picks runs of the 8-seed plan: SEEDS=8, or SINGLE=0"; exit 2; }
OUT=${OUT:-/tmp/depthprobe-gpu}
PY=${PYTHON:-python3}
TORCH_LIB=$("$PY" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
W=$(mktemp -d)
mkdir -p "$OUT"
cat > "$W/noise.toml" <<TOML
name = "noise-gpu"
[config.data]
dataset = "mnist"
train_per_class = 500
test_per_class = 200
[config.model]
arch = "mlp"
depth = 10
width = 100
[config.train]
epochs = $EPOCHS
milestones = []
device = "$DEV"
threads = 2
graph = "$GRAPH"
[config.corruption]
mode = "per_sample"
[config.probe]
every = 5
at_init = false
[axes]
"corruption.p" = [0.0, 0.1, 0.2, 0.3]
"train.seed" = [$(seq -s, 0 $((SEEDS - 1)))]
TOML
for d in batched single; do "$B/depthprobe" sweep plan "$W/noise.toml" --out "$W/$d" >/dev/null || exit 1; done
status=0
t0=$(date +%s.%N)
DEPTHPROBE_PHASES=1 "$B/depthprobe" sweep local "$W/batched" --batch "$BATCH" --data-dir "$B/data" --quiet | tail -1 || status=1
t1=$(date +%s.%N)
grep -h "^phases" "$W"/batched/logs/*.log | sort -u
if [ "$SINGLE" = 0 ]; then
  "$PY" -c "import sys; t0, t1 = map(float, sys.argv[1:3]); n = 4 * int(sys.argv[3]); print(f'batched (K = {sys.argv[4]}): {n} runs in {t1 - t0:.1f} s = {n / (t1 - t0) * 3600:,.0f} runs/hour')" "$t0" "$t1" "$SEEDS" "$BATCH"
  exit $status
fi
for i in 0 4 9 13 18 22 27 31; do
  DEPTHPROBE_PHASES=1 "$B/depthprobe" sweep run "$W/single" --index $i --data-dir "$B/data" --quiet 2>>"$W/single.err" || status=1
done
t2=$(date +%s.%N)
grep -v "^phases" "$W/single.err"
grep -h "^phases" "$W/single.err" | head -2
# The same 8 (p, seed) runs in PyTorch, one process each, then (TORCH_LOOP=1) in one process.
TREF=$(dirname "$0")/../torch_run_ref.py
RUNS=$("$PY" -c "import json, sys; r = json.load(open(sys.argv[1]))['runs']; print(' '.join(f\"{dict(r[i]['values'])['corruption.p']}:{dict(r[i]['values'])['train.seed']}\" for i in (0, 4, 9, 13, 18, 22, 27, 31)))" "$W/single/plan.json")
for r in $RUNS; do
  "$PY" "$TREF" --data "$B/data/mnist" --out "$W/torch" --device "$DEV" --epochs "$EPOCHS" --run "$r" >/dev/null || status=1
done
t3=$(date +%s.%N)
if [ "${TORCH_LOOP:-1}" = 1 ]; then
  "$PY" "$TREF" --data "$B/data/mnist" --out "$W/torch-loop" --device "$DEV" --epochs "$EPOCHS" $(printf -- "--run %s " $RUNS) >/dev/null || status=1
fi
t4=$(date +%s.%N)
"$PY" - "$W" "$t0" "$t1" "$t2" "$BATCH" "$t3" "$t4" <<'PYEOF' || status=1
import json, sys
from pathlib import Path
w, t0, t1, t2 = Path(sys.argv[1]), *map(float, sys.argv[2:5])
t3, t4 = map(float, sys.argv[6:8])
plan = json.load(open(w / "batched" / "plan.json"))
ids = [r["id"] for r in plan["runs"]]
single = [i for i in (0, 4, 9, 13, 18, 22, 27, 31)]
rb, rs = len(ids) / (t1 - t0) * 3600, len(single) / (t2 - t1) * 3600
print(f"batched (K = {sys.argv[5]}, one process per group): {len(ids)} runs in {t1 - t0:.1f} s = {rb:,.0f} runs/hour")
print(f"one at a time (a process each): {len(single)} runs in {t2 - t1:.1f} s = {rs:,.0f} runs/hour")
print(f"runs per hour, batched / one at a time: {rb / rs:.1f}x")
rt = len(single) / (t3 - t2) * 3600
print(f"PyTorch eager, a process per run: {len(single)} runs in {t3 - t2:.1f} s = {rt:,.0f} runs/hour; batched / PyTorch: {rb / rt:.1f}x")
if t4 - t3 > 1:
    rl = len(single) / (t4 - t3) * 3600
    print(f"PyTorch eager, all 8 in one process: {len(single)} runs in {t4 - t3:.1f} s = {rl:,.0f} runs/hour; batched / PyTorch: {rb / rl:.1f}x")
tr = [json.load(open(f))["probes"][-1] for f in sorted((w / "torch").glob("*/result.json"))]
if tr:
    print(f"PyTorch mean over {len(tr)} runs: top NCC train {sum(t['ncc_train_acc'][-1] for t in tr) / len(tr):.4f}, "
          f"test acc {sum(t['test_acc'] for t in tr) / len(tr):.4f} (its own init and corruption draws)")
bad = []
rows = []
for i in single:
    a = json.load(open(w / "batched" / "runs" / ids[i] / "summary.json"))
    b = json.load(open(w / "single" / "runs" / ids[i] / "summary.json"))
    if a["status"] != "done" or b["status"] != "done":
        bad.append(f"{ids[i]}: status {a['status']} / {b['status']}")
        continue
    rows.append((a["layers"][-1]["ncc_train_acc"], b["layers"][-1]["ncc_train_acc"], a["test_acc"], b["test_acc"]))
    print(f"  {ids[i]}: eff. depth (eps 0.01/0.05/0.1) {list(a['effective_depth'].values())} batched, "
          f"{list(b['effective_depth'].values())} alone; top NCC train {rows[-1][0]:.4f} / {rows[-1][1]:.4f}; "
          f"test acc {rows[-1][2]:.4f} / {rows[-1][3]:.4f}")
if rows:
    mean = lambda j: sum(r[j] for r in rows) / len(rows)
    print(f"mean over {len(rows)} runs, batched / alone: top NCC train {mean(0):.4f} / {mean(1):.4f}, "
          f"test acc {mean(2):.4f} / {mean(3):.4f}")
    if abs(mean(0) - mean(1)) > 0.05 or abs(mean(2) - mean(3)) > 0.05:
        bad.append("means differ by more than 0.05")
for line in bad:
    print("  FAIL", line)
sys.exit(1 if bad else 0)
PYEOF
cp -r "$W/batched/runs/$(ls "$W/batched/runs" | head -1)" "$OUT/batched-example-run" 2>/dev/null
echo "sweep check status: $status"
exit $status
