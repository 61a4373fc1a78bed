#!/usr/bin/env bash
# The probe's memory at full scale (issue: performance): CONV-20-400 on CIFAR-10-sized data
# (50,000 train + 10,000 test, 3×32×32; bench/gpu/cifar_sized.py), trained for one epoch on the
# GPU, then the full probe of all 20 layers (25,600 dimensions each) with the host engine
# (probe.reduction = "host": every batch's embeddings come to the host, as on a CPU), so the
# peak RSS is the host engine's. Prints wall time and peak RSS; the claim is < 4 GiB.
# Carry bench/out/gpu (bench/gpu/prepare.sh). Dry run here (small): DEV=cpu PER_CLASS=20 bash bench/gpu/probe_memory.sh
set -uo pipefail
B=bench/out/gpu
DEV=${DEV:-cuda}
PER_CLASS=${PER_CLASS:-5000}
PY=${PYTHON:-python3}
TORCH_LIB=$("$PY" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
W=$(mktemp -d)
"$PY" "$(dirname "$0")/cifar_sized.py" "$W" || exit 1
# ru_maxrss of the waited-for child: the depthprobe process alone.
"$PY" - "$B/depthprobe" "$W" "$DEV" "$PER_CLASS" <<'PYEOF'
import json, resource, subprocess, sys, time
exe, w, dev, k = sys.argv[1:5]
cmd = [exe, "train", "bench/probe_memory.toml", "--set", f"data.train_per_class={k}",
       "--set", f"data.test_per_class={int(k) // 5}", "--set", f'train.device="{dev}"',
       "--set", 'probe.reduction="host"', "--set", "train.lr=0.01", "--data-dir", w, "--out", f"{w}/run", "--quiet"]
t0 = time.time()
r = subprocess.run(cmd)
wall = time.time() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
s = json.load(open(f"{w}/run/summary.json"))
print(f"CONV-20-400, {s['train_samples']:,} train + {s['test_samples']:,} test samples, {dev}, host reduction: "
      f"{wall:.1f} s wall, peak RSS {rss:.2f} GiB, status {s['status']}, exit {r.returncode}")
top = s["layers"][-1]
print(f"  top layer: dim {top.get('dim')}, NCC train {top.get('ncc_train_acc')}, CDNV train {top.get('cdnv_train')}; "
      f"test acc {s.get('test_acc')}")
sys.exit(0 if r.returncode == 0 and s["status"] == "done" and rss < 4 else 1)
PYEOF
