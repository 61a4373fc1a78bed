#!/usr/bin/env bash
# The paper-scale GPU benchmark (bench/gpu/paper_scale.py) on the device machine, with
# bench/out/gpu carried (bench/gpu/prepare.sh builds it here). About 6 minutes on an H200:
#   run(command="bash bench/gpu/paper_scale.sh", carry=["bench/out/gpu"], timeout_s=480)
# The table and every measurement (paper_scale.json) are copied to $OUT. Arguments go to
# paper_scale.py (e.g. --graph off or --precisions default,bf16 to shorten it).
set -uo pipefail
B=bench/out/gpu
OUT=${OUT:-/tmp/depthprobe-gpu}
PY=${PYTHON:-python3}
# shellcheck source=bench/gpu/common.sh
source bench/gpu/common.sh
# First the device-side pieces' correctness (device-assembled augmentation bit-identical to the
# host's, bf16 training): one JSON line, also in $OUT/device_checks.json.
step "device checks" "$B/device_checks" --device cuda >"$OUT/device_checks.json" 2>&1
cat "$OUT/device_checks.json"
# train.graph: captured-and-replayed training against eager (tests/cuda_graph.rs, built here).
step "CUDA graph test" "$B/cuda_graph_test" --test-threads 1 --nocapture >"$OUT/cuda_graph_test.txt" 2>&1
cat "$OUT/cuda_graph_test.txt"
step "paper-scale benchmark" "$PY" bench/gpu/paper_scale.py --bin "$B/train_throughput" --json "$OUT/paper_scale.json" \
    "$@" >"$OUT/paper_scale.txt" 2>&1
cat "$OUT/paper_scale.txt"
exit $status
