#!/usr/bin/env bash
# Training beside other work on the same CPUs (docs/performance.md, "Sharing the CPU"): the quick
# MNIST config cut to 2 epochs, against the same MLP-8-512+BN in a PyTorch eager loop with 2 threads
# (bench/torch_run_ref.py: the same data, SGD, batch, warm-up and a probe of every layer at the
# end), beside nothing, a `nice -n 10` busy loop, one ordinary busy process, and two. The sides
# alternate within each condition (the first side changes every round); every time is one
# process's wall time.
#
#   bench/contention.sh [--rounds R] [--rounds-shared S] [--conditions none,nice,busy1,busy2]
#                       [--sides new,old,passive,torch]
#
# Sides: new = depthprobe as it runs (train.threads = 0: the CPUs it may use, giving way to
# another process while it trains), old = the same binary with the thread count fixed at the CPUs
# it may use (train.threads = 2 on a 2-CPU machine: what train.threads = 0 did before), passive =
# old with DEPTHPROBE_OMP_WAIT=passive (threads sleep at once when they wait), torch = PyTorch
# eager. R rounds beside nothing and the nice loop, S beside busy processes (default 1: a
# spinning run there takes minutes).
# Needs the release binary (./depthprobe builds it) and MNIST in $DEPTHPROBE_DATA (or the default
# data folder: `depthprobe data download mnist`). Prints one table; raw times go to bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
rounds=3
rounds_shared=1
conditions=none,nice,busy1,busy2
sides=new,old,passive,torch
epochs=2
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --rounds-shared) rounds_shared=$2; shift 2 ;;
        --conditions) conditions=$2; shift 2 ;;
        --sides) sides=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
bin=target/release/depthprobe
[ -x "$bin" ] || { echo "build first: ./depthprobe --help" >&2; exit 2; }
data=${DEPTHPROBE_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/depthprobe}
[ -f "$data/mnist/train-images-idx3-ubyte.gz" ] || { echo "no MNIST in $data: depthprobe data download mnist" >&2; exit 2; }
out=bench/out/contention
mkdir -p "$out"
raw="$out/times-$(date -u +%Y%m%dT%H%M%SZ).csv"
echo "condition,side,round,wall_s" > "$raw"
tmp=$(mktemp -d)
hogs=()
stop_hogs() { for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done; hogs=(); }
trap 'stop_hogs; rm -rf "$tmp"' EXIT

start_hogs() {
    case $1 in
        none) ;;
        nice) nice -n 10 sh -c 'while :; do :; done' & hogs+=($!) ;;
        busy1) sh -c 'while :; do :; done' & hogs+=($!) ;;
        busy2) for _ in 1 2; do sh -c 'while :; do :; done' & hogs+=($!); done ;;
        *) echo "unknown condition $1" >&2; exit 2 ;;
    esac
    sleep 1
}

run_side() {
    local side=$1
    case $side in
        new | old | passive)
            local env=() sets=()
            [ "$side" != new ] && sets=(--set "train.threads=$(nproc)")
            [ "$side" = passive ] && env=(DEPTHPROBE_OMP_WAIT=passive)
            env "${env[@]}" "$bin" train configs/quick/mlp-mnist.toml --set train.epochs="$epochs" \
                --set 'train.milestones=[]' "${sets[@]}" --data-dir "$data" --out "$tmp/$side" --force \
                --quiet > /dev/null
            ;;
        torch)
            "$DEPTHPROBE_PYTHON" bench/torch_run_ref.py --data "$data/mnist" --out "$tmp/torch" --run 0:0 \
                --epochs "$epochs" --every "$epochs" --depth 8 --width 512 --train-per-class 0 \
                --test-per-class 0 --threads 2 > /dev/null
            ;;
    esac
}

cpu_of() {
    "$DEPTHPROBE_PYTHON" - "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["cpu"]
a = c.get("adaptive")
extra = f"; adaptive: {a['changes']} changes, {a['fewer_s']:.1f} of {a['timed_s']:.1f} s timed on {a['fewer']}" if a else ""
print(f"{c['threads']} threads ({c['threads_from']}); waits: {c['omp_wait']}{extra}")
PY
}
cpu_log="${raw%.csv}-cpu.txt"

IFS=, read -ra conds <<< "$conditions"
IFS=, read -ra sidelist <<< "$sides"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) · $(nproc) CPUs usable · $rounds rounds" >&2
for c in "${conds[@]}"; do
    start_hogs "$c"
    n_rounds=$rounds
    case $c in busy*) n_rounds=$rounds_shared ;; esac
    for r in $(seq 1 "$n_rounds"); do
        # Rotate the order each round, so no side always runs first.
        n=${#sidelist[@]}
        for i in $(seq 0 $((n - 1))); do
            side=${sidelist[$(((i + r) % n))]}
            t0=$(date +%s.%N)
            run_side "$side"
            t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
            echo "$c,$side,$r,$t" >> "$raw"
            printf '%-6s %-7s round %d: %6.1f s\n' "$c" "$side" "$r" "$t" >&2
            if [ "$side" != torch ]; then
                echo "$c $side round $r: $(cpu_of "$tmp/$side/summary.json")" >> "$cpu_log"
            fi
        done
    done
    stop_hogs
done

# How each side used the CPU, as depthprobe recorded it and as PyTorch runs by default.
cat "$cpu_log"
echo "torch: 2 threads (torch.set_num_threads(2)); waits: $(printenv OMP_WAIT_POLICY || echo "LibTorch's default (spin, then sleep)")"
echo "raw times: $raw"
"$DEPTHPROBE_PYTHON" - "$raw" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
conds = list(dict.fromkeys(r["condition"] for r in rows))
sides = list(dict.fromkeys(r["side"] for r in rows))
med = {(c, s): statistics.median(float(r["wall_s"]) for r in rows if r["condition"] == c and r["side"] == s)
       for c in conds for s in sides if any(r["condition"] == c and r["side"] == s for r in rows)}
each = {(c, s): ", ".join(f"{float(r['wall_s']):.1f}" for r in rows if r["condition"] == c and r["side"] == s)
        for c in conds for s in sides}
names = {"new": "depthprobe", "old": "depthprobe, threads fixed (before)", "passive": "fixed, passive waits",
         "torch": "PyTorch eager"}
print("\n| beside it | " + " | ".join(names.get(s, s) for s in sides) + (" | depthprobe vs PyTorch |" if {"new", "torch"} <= set(sides) else " |"))
print("|---" * (len(sides) + 1 + ({"new", "torch"} <= set(sides))) + "|")
for c in conds:
    cells = []
    for s in sides:
        if (c, s) not in med:
            cells.append("")
            continue
        alone = med.get(("none", s))
        rel = f" ({med[(c, s)] / alone:.1f}× alone)" if alone and c != "none" else ""
        cells.append(f"{med[(c, s)]:.1f} s{rel} [{each[(c, s)]}]")
    line = f"| {c} | " + " | ".join(cells)
    if {"new", "torch"} <= set(sides) and (c, "new") in med and (c, "torch") in med:
        line += f" | {med[(c, 'torch')] / med[(c, 'new')]:.2f}×"
    print(line + " |")
PY
