#!/usr/bin/env bash
# What CKA and weight spectra add to a probe, and that a probe without them costs what it did
# before (docs/performance.md, "CKA and weight spectra"): `depthprobe probe` of an MLP-8-512+BN
# trained one epoch on full MNIST (60,000 train + 10,000 test rows), four sides alternating within
# each round (the first side changes every round):
#   base  the build named by BASE (a folder with depthprobe and depthprobe-engine) on the run
#         without CKA or spectra;
#   new   this build on the same run;
#   cka   this build on a run with probe.cka = true;
#   spec  this build on a run with probe.weight_spectra = true.
#
#   BASE=/path/to/old/build bench/probe_cost.sh [--rounds R]
#
# Needs MNIST in $DEPTHPROBE_DATA. Prints one table; raw times go to bench/out/probe_cost.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
rounds=3
[ "${1:-}" = --rounds ] && rounds=$2
: "${BASE:?BASE must name a folder holding the older depthprobe build}"
new=target/release/depthprobe
[ -x "$new" ] || cargo build --release --locked -p depthprobe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for side in plain:"" cka:"--set probe.cka=true" spec:"--set probe.weight_spectra=true"; do
    name=${side%%:*}
    # shellcheck disable=SC2086
    "$new" train configs/quick/mlp-mnist.toml --out "$work/$name" --quiet --set train.epochs=1 \
        --set probe.at_init=false ${side#*:} >/dev/null
done
mkdir -p bench/out
csv=bench/out/probe_cost.csv
echo "round,side,seconds" >"$csv"
sides=(base new cka spec)
for r in $(seq 1 "$rounds"); do
    for i in 0 1 2 3; do
        side=${sides[$(((i + r - 1) % 4))]}
        case $side in
            base) cmd=("$BASE/depthprobe" probe "$work/plain" --out "$work/out-$side") ;;
            new) cmd=("$new" probe "$work/plain" --out "$work/out-$side") ;;
            cka) cmd=("$new" probe "$work/cka" --out "$work/out-$side") ;;
            spec) cmd=("$new" probe "$work/spec" --out "$work/out-$side") ;;
        esac
        rm -rf "$work/out-$side"
        t0=$(date +%s.%N)
        "${cmd[@]}" >/dev/null
        t1=$(date +%s.%N)
        echo "$r,$side,$(echo "$t1 - $t0" | bc)" >>"$csv"
    done
done
cmp -s <(grep -v -e wall_s -e producer "$work/out-base/summary.json") \
    <(grep -v -e wall_s -e producer "$work/out-new/summary.json") &&
    echo "summary.json without CKA or spectra: the same numbers from both builds" ||
    echo "summary.json differs between the builds"
python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {s: statistics.median(float(r["seconds"]) for r in rows if r["side"] == s) for s in ["base", "new", "cka", "spec"]}
print(f"| side | median of {len(rows) // 4} (s) | vs base |")
print("|---|---|---|")
for s, v in med.items():
    print(f"| {s} | {v:.2f} | {v / med['base']:.3f}× |")
PY
