#!/usr/bin/env bash
# Run every quick recipe (plan, run 2 at a time, report) and copy each report into
# docs/results/<name>/. Each recipe finishes in under 30 minutes on 2 CPU cores.
#   experiments/quick/run-all.sh DATA      (DATA: a folder with mnist/ and fashion-mnist/)
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:?usage: experiments/quick/run-all.sh DATA (a folder with mnist/ and fashion-mnist/)}
for f in experiments/quick/*.toml; do
  name=$(basename "$f" .toml)
  dir=runs/sweeps/$name
  start=$(date +%s)
  ./depthprobe sweep plan "$f" --out "$dir"
  ./depthprobe sweep local "$dir" -j 2 --data-dir "$data" --quiet
  echo "$name: $(( $(date +%s) - start )) s wall"
  if grep -q '^\[bound\]' "$f"; then ./depthprobe bound "$dir"; fi
  ./depthprobe report "$dir"
  rm -rf "docs/results/$name" && mkdir -p "docs/results/$name"
  cp "$dir"/report/* "docs/results/$name/"
done
