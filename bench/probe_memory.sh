#!/usr/bin/env bash
# Peak memory of training + probing CONV-20-400 on CIFAR-10 at growing sample counts: the probe
# keeps O(L·C·D) state, so peak RSS must not grow with N.
#   bench/probe_memory.sh CIFAR_ROOT [PER_CLASS ...]     (default 50 100; CIFAR_ROOT holds
#   cifar-10-batches-bin/, the official binary version)
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: bench/probe_memory.sh CIFAR_ROOT [PER_CLASS ...]}
shift
for n in "${@:-50 100}"; do
  for k in $n; do
    out=bench/out/probe-memory-$k
    /usr/bin/time -f "per class $k: %e s wall, %M KiB peak RSS" ./depthprobe train bench/probe_memory.toml \
      --set data.train_per_class=$k --set data.test_per_class=$(( k / 5 )) --out "$out" --data-dir "$root" --force --quiet \
      > /dev/null
  done
done
