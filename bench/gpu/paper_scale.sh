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
# A probe of 60,000 + 10,000 MNIST images against one training epoch of the same network (the
# issue's "probe at training speed"): one epoch, probes at initialisation and after it; the
# phases line gives both (probe time is for the two probes). MLP-10-512 keeps its train
# embeddings for pass 2 under the default probe.cache_mib; CONV-8-400 runs without and with.
probe_vs_epoch() { # name, config, --set arguments...
  local name=$1 cfg=$2; shift 2
  DEPTHPROBE_PHASES=1 "$B/depthprobe" train "$cfg" --device "${DEV:-cuda}" --data-dir "$B/data" --set train.epochs=1 \
    --set probe.every=1 "$@" --out "$(mktemp -d)/run" --quiet 2>&1 | grep '^phases' | sed "s/^/$name: /"
}
{
  probe_vs_epoch "MLP-10-512" configs/paper/mlp-mnist.toml --set model.depth=10 --set model.width=512
  probe_vs_epoch "MLP-10-512 graph" configs/paper/mlp-mnist.toml --set model.depth=10 --set model.width=512 \
    --set 'train.graph="on"'
  probe_vs_epoch "CONV-8-400" configs/paper/conv-mnist.toml --set model.depth=8 --set model.width=400
  # Its train embeddings (49 GB) kept for pass 2, which the default 2 GiB does not allow.
  probe_vs_epoch "CONV-8-400 cache" configs/paper/conv-mnist.toml --set model.depth=8 --set model.width=400 \
    --set probe.cache_mib=60000
} >"$OUT/probe_vs_epoch.txt" 2>&1
cat "$OUT/probe_vs_epoch.txt"
step "paper-scale benchmark" "$PY" bench/gpu/paper_scale.py --bin "$B/train_throughput" --json "$OUT/paper_scale.json" \
    "$@" >"$OUT/paper_scale.txt" 2>&1
cat "$OUT/paper_scale.txt"
exit $status
