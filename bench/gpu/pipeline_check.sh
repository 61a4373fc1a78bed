#!/usr/bin/env bash
# The one-pipeline check on a GPU machine (pipeline issue), about 6 minutes on an H100/H200. Runs
# from the repository root with bench/out/gpu carried (bench/gpu/prepare.sh builds it here; with
# BASELINE=DIR it also carries another build's train_throughput and sweep_throughput, e.g. of the
# commit before the change, for the K = 1 comparison):
#  1. portable numerics on this machine's CPU: the golden tiny runs' metrics.csv digests
#     (tests/golden/metrics.sha256) and the README's demo table, as on the development machine;
#  2. K = 1 on the GPU: MLP-6-512 and CONV-6-64 train 3 epochs on MNIST (inputs resident on the
#     GPU), the same checkpoint probed on the GPU (device reduction) and on the CPU (host) agree;
#  3. batched groups on the GPU: 4 CONV-4-32, ResNet-18 and VGG-11 runs (seeds × corruption) as
#     one model (grouped convolutions) against one by one, equal at init and, after training,
#     within twice the GPU's run-to-run noise; a ResNet-18 checkpoint probed on GPU and CPU;
#  4. the K = 1 training step against the baseline build and PyTorch eager (bench/train_bench.py),
#     and K = 32 batched MLPs against the baseline build.
# Dry run without a GPU: DEV=cpu QUICK=1 bash bench/gpu/pipeline_check.sh
set -uo pipefail
B=bench/out/gpu
DEV=${DEV:-cuda}
QUICK=${QUICK:-0}
OUT=${OUT:-/tmp/depthprobe-gpu}
W=$(mktemp -d)
PY=${PYTHON:-python3}
# shellcheck source=bench/gpu/common.sh
source bench/gpu/common.sh
dp() { "$B/depthprobe" "$@"; }

echo "== 1. portable numerics on this CPU"
golden() {
  local ok=0
  # The three tiny runs of crates/depthprobe/tests/golden.rs, written out.
  local portable='[train]
numerics = "portable"
epochs = 3
milestones = [2]
warmup_epochs = 1'
  printf '[data]\ndataset = "synthetic"\n[model]\ndepth = 3\nwidth = 16\n%s\n[probe]\nevery = 1\n' "$portable" > "$W/g1.toml"
  dp train "$W/g1.toml" --out "$W/g1" --quiet >/dev/null || return 1
  printf 'name = "mlp-mnist-batched"\n[config.data]\ndataset = "mnist"\ntrain_per_class = 12\ntest_per_class = 6\n[config.model]\ndepth = 3\nwidth = 16\nembedding = "post_activation"\n[config.train]\nnumerics = "portable"\nepochs = 3\nmilestones = [2]\nwarmup_epochs = 1\nbatch_size = 32\n[config.probe]\nevery = 3\n[axes]\n"train.seed" = [0, 1, 2]\n"corruption.p" = [0.25]\n' > "$W/g3.toml"
  dp sweep plan "$W/g3.toml" --out "$W/g3" >/dev/null && dp sweep run "$W/g3" --index 0,1,2 --quiet --data-dir "$B/data" || return 1
  local got1 got3
  got1=$(sha256sum < "$W/g1/metrics.csv" | cut -d' ' -f1)
  got3=$("$PY" -c "import json,hashlib,sys; d='$W/g3'; p=json.load(open(d+'/plan.json')); h=hashlib.sha256(); [h.update(open(f'{d}/runs/{r[\"id\"]}/metrics.csv','rb').read()) for r in p['runs']]; print(h.hexdigest())")
  for pair in "mlp-synthetic $got1" "mlp-mnist-batched $got3"; do
    if grep -qx "$pair" tests/golden/metrics.sha256; then echo "golden $pair: same"; else echo "golden $pair: DIFFERS from tests/golden/metrics.sha256"; ok=1; fi
  done
  dp demo --quiet --out "$W/demo" | sed '/^wrote /d' > "$W/demo.txt"
  "$PY" - "$W/demo.txt" <<'PY' || ok=1
import sys
table = open(sys.argv[1]).read().splitlines()
block = next(b for b in open("README.md").read().split("```\n") if b.startswith("layer    dim")).splitlines()
print("demo table: same as README" if table == block else "demo table: DIFFERS from README\n" + "\n".join(table))
sys.exit(0 if table == block else 1)
PY
  return $ok
}
step "portable numerics" golden

echo "== 2. K = 1 on $DEV: train, then probe the checkpoint on $DEV and on cpu"
sub=""; [ "$QUICK" = 1 ] && sub="--set data.train_per_class=100 --set data.test_per_class=50"
for m in mlp conv; do
  # shellcheck disable=SC2086
  step "train $m" /usr/bin/time -f "train $m: %e s wall, %M KiB peak RSS" "$B/depthprobe" train bench/gpu/$m-mnist.toml \
      --out "$W/$m" --data-dir "$B/data" --device "$DEV" --force --quiet $sub
  step "probe $m on $DEV" /usr/bin/time -f "probe $m on $DEV: %e s" "$B/depthprobe" probe "$W/$m" --device "$DEV" --out "$W/$m-dev" --data-dir "$B/data" >/dev/null
  step "probe $m on cpu" /usr/bin/time -f "probe $m on cpu: %e s" "$B/depthprobe" probe "$W/$m" --device cpu --out "$W/$m-cpu" --data-dir "$B/data" >/dev/null
  step "compare $m" "$PY" bench/gpu/compare.py "$W/$m-dev" "$W/$m-cpu"
  cp "$W/$m-dev/summary.json" "$OUT/$m-dev.summary.json" 2>/dev/null
done

echo "== 3. batched groups on $DEV, against a second one-by-one run (the GPU's run-to-run noise)"
group() { # name, per_class, epochs, lr, model lines, batch
  printf 'name = "%s"\n[config.data]\ndataset = "mnist"\ntrain_per_class = %s\ntest_per_class = 100\n[config.model]\n%s\n[config.train]\nepochs = %s\nlr = %s\nmilestones = []\ndevice = "%s"\n[config.probe]\nevery = 1\nat_init = true\n[axes]\n"train.seed" = [0, 1]\n"corruption.p" = [0.0, 0.2]\n' \
    "$1" "$2" "$5" "$3" "$4" "$DEV" > "$W/$1.toml"
  local d
  for d in one one2 many; do dp sweep plan "$W/$1.toml" --out "$W/$1-$d" >/dev/null || return 1; done
  local t0=$SECONDS
  dp sweep local "$W/$1-one" --quiet --data-dir "$B/data" >/dev/null || return 1
  local t1=$SECONDS
  dp sweep local "$W/$1-many" --batch "$6" --quiet --data-dir "$B/data" >/dev/null || return 1
  echo "$1: one by one $((t1 - t0)) s, batched by $6 $((SECONDS - t1)) s"
  dp sweep local "$W/$1-one2" --quiet --data-dir "$B/data" >/dev/null || return 1
  "$PY" - "$W/$1-one" "$W/$1-one2" "$W/$1-many" "$DEV" <<'PY'
import csv, json, sys
one, one2, many, dev = sys.argv[1:]
plan = json.load(open(f"{one}/plan.json"))
def ncc(d, rid):
    rows = [r for r in csv.DictReader(open(f"{d}/runs/{rid}/metrics.csv")) if r["split"] == "train" and r["metric"] == "ncc_acc"]
    return {(int(r["epoch"]), r["layer"]): float(r["value"]) for r in rows}
init = noise = batched = 0.0
for r in plan["runs"]:
    b = json.load(open(f"{many}/runs/{r['id']}/summary.json"))
    assert b["status"] == "done" and b["batch"]["size"] >= 2, b.get("batch")
    a, a2, m = ncc(one, r["id"]), ncc(one2, r["id"]), ncc(many, r["id"])
    last = max(e for e, _ in a)
    init = max([init] + [abs(a[k] - m[k]) for k in a if k[0] == 0])
    noise = max([noise] + [abs(a[k] - a2[k]) for k in a if k[0] == last])
    batched = max([batched] + [abs(a[k] - m[k]) for k in a if k[0] == last])
# Same initial networks: equal at epoch 0 up to the GPU's reductions. After training, GPU kernels
# are not deterministic and training amplifies the difference, so batched networks are judged
# against two one-by-one runs of the same networks; a broken model shows as a gap of tens of percent.
print(f"largest NCC train difference at init {init:.4f}; after training: batched vs one by one {batched:.4f}, one by one twice {noise:.4f}")
# On a CPU two runs repeat exactly (noise 0) while batched ones still differ by rounding that
# training amplifies (the test suite checks them after one step); there only init is judged.
sys.exit(0 if init <= 0.002 and (dev == "cpu" or batched <= 2 * noise + 0.02) else 1)
PY
}
per=1000; [ "$QUICK" = 1 ] && per=40
step "CONV group" group conv $per 3 0.1 'arch = "conv"
depth = 4
width = 32' 4
# lr 0.01: at lr 0.1, 2,000 samples and a few epochs, ResNet-18 barely learns and VGG-11 diverges,
# in PyTorch too, and chaotic training makes any two runs differ by tens of percent.
per=200; [ "$QUICK" = 1 ] && per=10
step "ResNet-18 group" group resnet $per 3 0.01 'arch = "resnet18"' 4
step "VGG-11 group" group vgg $per 3 0.01 'arch = "vgg11"' 4
resnet_run=$(ls -d "$W"/resnet-many/runs/*/ 2>/dev/null | head -1)
if [ -n "$resnet_run" ]; then
  step "probe ResNet-18 on $DEV" dp probe "$resnet_run" --device "$DEV" --out "$W/rn-dev" --data-dir "$B/data" >/dev/null
  step "probe ResNet-18 on cpu" dp probe "$resnet_run" --device cpu --out "$W/rn-cpu" --data-dir "$B/data" >/dev/null
  step "compare ResNet-18" "$PY" bench/gpu/compare.py "$W/rn-dev" "$W/rn-cpu"
fi

[ "${BENCH:-1}" = 0 ] && { echo "check status: $status"; exit $status; }
echo "== 4. K = 1 training step: this build, the baseline build, PyTorch $DEV eager"
base=""; [ -x "$B/baseline/train_throughput" ] && base="--baseline-bin $B/baseline/train_throughput"
# shellcheck disable=SC2086
step "train bench" "$PY" bench/train_bench.py --device "$DEV" --repeats 2 --batches 150 --bin "$B/train_throughput" $base
if [ -x "$B/baseline/sweep_throughput" ]; then
  echo "== K = 32 MLP-10-100 batched: this build vs the baseline build (network-steps/s)"
  for i in 1 2; do
    for b in "$B/sweep_throughput" "$B/baseline/sweep_throughput"; do
      echo "$b: $("$b" --k 32 --batches 50 --rounds 2 --device "$DEV")"
    done
  done
fi
echo "check status: $status"
exit $status
