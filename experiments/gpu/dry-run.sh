#!/usr/bin/env bash
# Try every GPU recipe end to end on the CPU, tiny and short: plan it with overrides (device cpu,
# 2 epochs, 10 images per class, width 8 where width is not an axis), run it, write its report.
# What it checks: the recipes parse and plan the runs they say, every run trains and probes, and
# the report (with the Fig. 1 comparison) renders. Not what the numbers will be. Measured
# 2026-11-28 on 2 cores: 11 s for fig1-cifar10 (12 runs) and 49 s for width-cifar10 (8 runs).
#   experiments/gpu/dry-run.sh DATA [OUT]      (DATA holds cifar-10-batches-bin/)
set -euo pipefail
data=${1:?usage: experiments/gpu/dry-run.sh DATA [OUT]}
out=${2:-runs/sweeps/gpu-dry-run}
here=$(cd "$(dirname "$0")" && pwd)
dp=${DEPTHPROBE:-$here/../../depthprobe}
rm -rf "$out"
mkdir -p "$out"
small=(--set train.device=cpu --set train.epochs=2 --set data.train_per_class=10 --set data.test_per_class=10 --set probe.every=1)
for recipe in fig1-cifar10 width-cifar10; do
    sets=("${small[@]}")
    [ "$recipe" = fig1-cifar10 ] && sets+=(--set model.width=8)
    echo "== $recipe: $("$dp" sweep plan "$here/$recipe.toml" --dry-run | tail -1)"
    "$dp" sweep plan "$here/$recipe.toml" --out "$out/$recipe" "${sets[@]}"
    start=$(date +%s)
    "$dp" sweep local "$out/$recipe" -j 2 --batch 2 --data-dir "$data" --quiet
    "$dp" report "$out/$recipe" >/dev/null
    echo "== $recipe: trained and reported in $(( $(date +%s) - start )) s; report in $out/$recipe/report/"
done
