# Sourced by the GPU check scripts: the machine's PyTorch libraries on LD_LIBRARY_PATH, what the
# machine is, and step() (run a step, report its failure and time, keep going; $status is 1 once a
# step failed). Expects B, OUT and PY set.
TORCH_LIB=$("$PY" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
grep -m1 "model name" /proc/cpuinfo
nproc
"$B/depthprobe" --version
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
mkdir -p "$OUT"
status=0
step() { # name, command...
  local name=$1; shift
  local t0=$SECONDS
  "$@" || { echo "FAILED: $name (exit $?)"; status=1; }
  echo "-- $name: $((SECONDS - t0)) s"
}
