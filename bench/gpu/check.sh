#!/usr/bin/env bash
# GPU check (issue: performance), under 5 minutes on an H100/H200. Runs from the repository root
# on the device machine with bench/out/gpu carried (bench/gpu/prepare.sh builds it here):
#  1. trains MLP-6-512 and CONV-6-64 for 3 epochs on real MNIST on the GPU, probes the same final
#     checkpoint on the GPU (reductions on the device) and on the CPU (host engine), checks they
#     agree (NCC accuracy within 0.005, CDNV within 1e-3 relative) and times both probes;
#  2. times depthprobe's training step against PyTorch CUDA eager on the same workloads and
#     prints the ratios;
#  3. times K = 1, 8, 32, 128 MLP-10-H+BN networks trained as one batched model against PyTorch
#     eager training them one at a time (bench/sweep_bench.py).
# The binary uses the machine's own PyTorch 2.11 libraries through LD_LIBRARY_PATH. Every step
# runs even if an earlier one fails; the exit status says whether all passed. Summaries are
# copied to $OUT (the device tool brings that folder back).
# Dry run without a GPU: DEV=cpu BENCH=0 EXTRA="--set data.train_per_class=200" bash bench/gpu/check.sh
set -uo pipefail
B=bench/out/gpu
DEV=${DEV:-cuda}
EXTRA=${EXTRA:-}
OUT=${OUT:-/tmp/depthprobe-gpu}
W=$(mktemp -d)
PY=${PYTHON:-python3}
# shellcheck source=bench/gpu/common.sh
source bench/gpu/common.sh
for m in mlp conv; do
  echo "== $m: train 3 epochs on $DEV"
  # shellcheck disable=SC2086
  step "train $m" /usr/bin/time -f "train: %e s wall, %M KiB peak RSS" "$B/depthprobe" train bench/gpu/$m-mnist.toml \
      --out "$W/$m" --data-dir "$B/data" --device "$DEV" --force --quiet $EXTRA
  step "probe $m on $DEV" /usr/bin/time -f "probe on $DEV (device reductions): %e s wall, %M KiB peak RSS" \
      "$B/depthprobe" probe "$W/$m" --device "$DEV" --out "$W/$m-dev" --data-dir "$B/data" >/dev/null
  step "probe $m on cpu" /usr/bin/time -f "probe on cpu (host engine, $(nproc) threads): %e s wall, %M KiB peak RSS" \
      "$B/depthprobe" probe "$W/$m" --device cpu --out "$W/$m-cpu" --data-dir "$B/data" >/dev/null
  step "compare $m" "$PY" bench/gpu/compare.py "$W/$m-dev" "$W/$m-cpu"
  for r in "$m-dev" "$m-cpu"; do
    [ -f "$W/$r/summary.json" ] && cp "$W/$r/summary.json" "$OUT/$r.summary.json"
  done
  [ -f "$W/$m/summary.json" ] && cp "$W/$m/summary.json" "$OUT/$m-train.summary.json"
done
[ "${BENCH:-1}" = 0 ] && { echo "check status: $status"; exit $status; }
echo "== training step, depthprobe vs PyTorch $DEV eager (median samples/s)"
step "train bench" "$PY" bench/train_bench.py --device "$DEV" --repeats 3 --batches 200 --bin "$B/train_throughput"
echo "== sweep throughput: K networks batched (depthprobe) vs one at a time (PyTorch $DEV eager)"
for w in 100 512; do
  step "sweep bench $w" "$PY" bench/sweep_bench.py --device "$DEV" --width $w --ks 1,8,32,128 --batches 50 --bin "$B/sweep_throughput"
done
echo "check status: $status"
exit $status
