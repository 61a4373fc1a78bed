#!/usr/bin/env bash
# Run every quick recipe (plan, run 2 at a time, report) and copy each report into
# docs/results/<name>/. Each recipe finishes in under 30 minutes on 2 CPU cores.
#   experiments/quick/run-all.sh DATA      (DATA: a folder with mnist/ and fashion-mnist/)
# DEPTHPROBE_BIN picks the binary (default: the ./depthprobe launcher, which rebuilds when a
# source changed); the reports record the build that trained and reported (its commit).
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:?usage: experiments/quick/run-all.sh DATA (a folder with mnist/ and fashion-mnist/)}
dp=${DEPTHPROBE_BIN:-./depthprobe}
for f in experiments/quick/*.toml; do
  name=$(basename "$f" .toml)
  dir=runs/sweeps/$name
  start=$(date +%s)
  "$dp" sweep plan "$f" --out "$dir"
  "$dp" sweep local "$dir" -j 2 --data-dir "$data" --quiet
  echo "$name: $(( $(date +%s) - start )) s wall"
  if grep -q '^\[bound\]' "$f"; then "$dp" bound "$dir"; fi
  "$dp" report "$dir"
  rm -rf "docs/results/$name" && mkdir -p "docs/results/$name"
  cp "$dir"/report/* "docs/results/$name/"
done
