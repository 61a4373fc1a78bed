#!/bin/bash
# SLURM integration test: start a real single-node cluster (slurmctld + slurmd + munge, from
# the distribution's packages) on localhost, submit a tiny sweep with `depthprobe sweep slurm`,
# wait for the job array and check that every run finished and the sweep aggregates.
# Needs root (it installs packages and starts daemons); ./run-tests runs it, and CI must not
# skip it. The daemons are stopped by the PIDs they wrote, never by name.
#   usage: tests/slurm/cluster-test.sh [path/to/depthprobe]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-$ROOT/target/release/depthprobe}
[ -x "$BIN" ] || { echo "slurm test: $BIN not built" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
  echo "slurm test: needs root to install SLURM/munge and start the daemons" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm test: installing slurm-wlm and munge from the package registry"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

WORK=$(mktemp -d /tmp/depthprobe-slurm.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for f in "$WORK/slurmd.pid" "$WORK/slurmctld.pid" "$WORK/munged.pid"; do
    if [ -s "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
  done
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT

# munge: reuse a working daemon, else start our own with a fresh key.
if ! (munge -n 2>/dev/null | unmunge >/dev/null 2>&1); then
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  chmod 755 /run/munge
  # munged writes its pid file as the munge user, into a folder it owns.
  mkdir -p "$WORK/munge"
  chown munge:munge "$WORK/munge"
  su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=$WORK/munge/munged.pid"
  for _ in $(seq 50); do [ -s "$WORK/munge/munged.pid" ] && break; sleep 0.1; done
  cp "$WORK/munge/munged.pid" "$WORK/munged.pid"
fi
munge -n | unmunge | grep -q "STATUS: *Success" || { echo "slurm test: munge does not work" >&2; exit 1; }

HOST=$(hostname -s 2>/dev/null || cut -d. -f1 /proc/sys/kernel/hostname)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
CPUS=$(nproc)
mkdir -p "$WORK/ctld" "$WORK/d"
export SLURM_CONF=$WORK/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=depthprobe-test
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$WORK/ctld
SlurmdSpoolDir=$WORK/d
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
MpiDefault=none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -q idle && break
  sleep 0.5
done
sinfo -h -o %T | grep -q idle || { echo "slurm test: node never became idle" >&2; cat "$WORK"/*.log >&2; exit 1; }
echo "slurm test: cluster up ($HOST, $CPUS CPUs)"

# A tiny sweep: 2 depths × 2 seeds on the built-in data, a few epochs each.
cat > "$WORK/sweep.toml" <<EOF
name = "slurm-test"
[config.data]
dataset = "synthetic"
[config.model]
width = 32
[config.train]
epochs = 3
milestones = [2]
threads = 1
[config.probe]
every = 1
[axes]
"model.depth" = [2, 3]
"train.seed" = [0, 1]
EOF
SW=$WORK/sweep
"$BIN" sweep plan "$WORK/sweep.toml" --out "$SW"
OUT=$("$BIN" sweep slurm "$SW" --max-parallel 2 --sbatch-arg=--time=10)
echo "$OUT"
JOB=$(echo "$OUT" | sed -n 's/^submitted job \([0-9]*\).*/\1/p')
[ -n "$JOB" ] || { echo "slurm test: no job id in the output above" >&2; exit 1; }
grep -q -- "--array=0,1,2,3%2" "$SW/submit.sbatch" || { echo "slurm test: unexpected array line" >&2; cat "$SW/submit.sbatch" >&2; exit 1; }
for _ in $(seq 600); do
  [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] && break
  sleep 0.5
done
[ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] || { echo "slurm test: job $JOB still queued after 300 s" >&2; squeue >&2; exit 1; }
STATUS=$("$BIN" sweep status "$SW")
echo "$STATUS"
echo "$STATUS" | grep -q "4 runs · 4 done · 0 failed" || {
  echo "slurm test: not every run finished" >&2
  cat "$SW"/logs/* >&2 || true
  exit 1
}
ls "$SW"/logs/slurm-"$JOB"_*.log >/dev/null || { echo "slurm test: no per-task logs" >&2; exit 1; }
"$BIN" report "$SW" >/dev/null
DONE=$(grep -c ",done," "$SW/report/results.csv")
[ "$DONE" = 4 ] || { echo "slurm test: results.csv has $DONE done runs, expected 4" >&2; exit 1; }
# Resubmitting a finished sweep submits nothing.
"$BIN" sweep slurm "$SW" | grep -q "nothing to submit"
echo "slurm test: job $JOB: 4 array tasks done, report aggregated"

wait_job() { # job id: wait until SLURM no longer lists it
  for _ in $(seq 600); do
    [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  echo "slurm test: job $1 still queued after 300 s" >&2; squeue >&2; return 1
}

# --batch 2: each array task trains the two seeds of one depth as one model.
SB=$WORK/sweep-batched
"$BIN" sweep plan "$WORK/sweep.toml" --out "$SB"
OUT=$("$BIN" sweep slurm "$SB" --batch 2 --sbatch-arg=--time=10)
JOB=$(echo "$OUT" | sed -n 's/^submitted job \([0-9]*\).*/\1/p')
echo "$OUT" | grep -q "(2 array tasks)" || { echo "slurm test: expected 2 batched tasks: $OUT" >&2; exit 1; }
wait_job "$JOB"
"$BIN" sweep status "$SB" | grep -q "4 runs · 4 done" || { echo "slurm test: batched runs not done" >&2; cat "$SB"/logs/* >&2; exit 1; }
for s in "$SB"/runs/*/summary.json; do
  grep -q '"size": 2' "$s" || { echo "slurm test: $s was not trained in a group of 2" >&2; exit 1; }
done
echo "slurm test: job $JOB: 4 runs in 2 batched tasks"

# Requeue a running task (as a preemption does): it stops, is requeued, continues from its
# checkpoint, and ends with the bytes of an uninterrupted run.
cat > "$WORK/long.toml" <<EOF
name = "slurm-requeue"
[config.data]
dataset = "synthetic"
[config.model]
width = 64
depth = 4
[config.train]
epochs = 40
milestones = [30]
threads = 1
checkpoint_every = 2
[config.probe]
every = 5
[axes]
"train.seed" = [7]
EOF
SQ=$WORK/sweep-requeue
REF=$WORK/sweep-requeue-ref
"$BIN" sweep plan "$WORK/long.toml" --out "$SQ"
"$BIN" sweep plan "$WORK/long.toml" --out "$REF"
"$BIN" sweep run "$REF" --index 0 --quiet
ID=$(basename "$(ls -d "$REF"/runs/*/ | head -1)")
OUT=$("$BIN" sweep slurm "$SQ" --sbatch-arg=--time=10)
JOB=$(echo "$OUT" | sed -n 's/^submitted job \([0-9]*\).*/\1/p')
for _ in $(seq 600); do
  [ -s "$SQ/runs/$ID/checkpoint.json" ] && break
  sleep 0.1
done
[ -s "$SQ/runs/$ID/checkpoint.json" ] || { echo "slurm test: no checkpoint before the requeue" >&2; cat "$SQ"/logs/* >&2; exit 1; }
scontrol requeue "$JOB"
echo "slurm test: requeued job $JOB after its first checkpoint"
sleep 2
wait_job "$JOB"
"$BIN" sweep status "$SQ" | grep -q "1 runs · 1 done" || { echo "slurm test: the requeued run did not finish" >&2; cat "$SQ"/logs/* >&2; exit 1; }
grep -h "SIGTERM\|SIGUSR1\|resuming from" "$SQ"/logs/slurm-*.log | sed 's/^/  log: /'
grep -q "resuming from" "$SQ"/logs/slurm-*.log || { echo "slurm test: the requeued task did not resume" >&2; cat "$SQ"/logs/* >&2; exit 1; }
cmp "$SQ/runs/$ID/metrics.csv" "$REF/runs/$ID/metrics.csv" || { echo "slurm test: metrics.csv after the requeue differs from an uninterrupted run" >&2; exit 1; }
echo "slurm test: passed (plain, batched, and a task requeued mid-run that resumed to the same bytes)"

