#!/usr/bin/env bash
# GPU check (issue: performance), under 5 minutes on an H100/H200. Runs from the repository root
# on the device machine with bench/out/gpu carried (bench/gpu/prepare.sh builds it here):
#  1. trains MLP-6-512 and CONV-6-64 for 3 epochs on real MNIST on the GPU, probes the same final
#     checkpoint on the GPU and on the CPU, and checks they agree (NCC accuracy within 0.005,
#     CDNV within 1e-3 relative);
#  2. times depthprobe's training step against PyTorch CUDA eager on the same workloads and
#     prints the ratios.
# The binary uses the machine's own PyTorch 2.11 libraries through LD_LIBRARY_PATH.
set -euo pipefail
B=bench/out/gpu
OUT=${OUT:-/tmp/depthprobe-gpu}
PY=${PYTHON:-python3}
TORCH_LIB=$("$PY" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$B/depthprobe" --version
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
mkdir -p "$OUT"
status=0
for m in mlp conv; do
  echo "== $m: train 3 epochs on cuda"
  /usr/bin/time -f "%e s wall, %M KiB peak RSS" "$B/depthprobe" train bench/gpu/$m-mnist.toml --out "$OUT/$m" \
      --data-dir "$B/data" --device cuda --force --quiet | tail -2
  "$B/depthprobe" probe "$OUT/$m" --device cuda --out "$OUT/$m-gpu" --data-dir "$B/data" >/dev/null
  /usr/bin/time -f "cpu probe: %e s" "$B/depthprobe" probe "$OUT/$m" --device cpu --out "$OUT/$m-cpu" --data-dir "$B/data" >/dev/null
  "$PY" bench/gpu/compare.py "$OUT/$m-gpu" "$OUT/$m-cpu" || status=1
done
echo "== training step, depthprobe vs PyTorch CUDA eager (median samples/s)"
"$PY" bench/train_bench.py --device cuda --repeats 3 --batches 200 --bin "$B/train_throughput"
exit $status
