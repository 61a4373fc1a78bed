#!/usr/bin/env bash
# Build what the GPU checks carry to the device machine (which has CUDA and PyTorch 2.11 but no
# Rust toolchain and no network): stripped release binaries and the MNIST files, in
# bench/out/gpu (git-ignored, ~40 MiB). BASELINE=DIR adds another build's train_throughput and
# sweep_throughput (DIR/release/examples, e.g. a worktree of an earlier commit built with
# CARGO_TARGET_DIR) as bench/out/gpu/baseline, for bench/gpu/pipeline_check.sh. Then, with the
# device tool:
#   run(command="bash bench/gpu/check.sh", carry=["bench/out/gpu"], timeout_s=420)
#   run(command="bash bench/gpu/paper_scale.sh", carry=["bench/out/gpu"], timeout_s=480)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
cd "$DEPTHPROBE_ROOT"
cargo build --release --locked -p depthprobe --bins --example train_throughput --example sweep_throughput \
    --example device_checks
out=bench/out/gpu
rm -rf "$out" && mkdir -p "$out/data/mnist"
strip -o "$out/depthprobe" target/release/depthprobe
strip -o "$out/depthprobe-engine" target/release/depthprobe-engine
strip -o "$out/train_throughput" target/release/examples/train_throughput
strip -o "$out/sweep_throughput" target/release/examples/sweep_throughput
strip -o "$out/device_checks" target/release/examples/device_checks
# The CUDA graph test (tests/cuda_graph.rs): graph-replayed training against eager on the GPU.
test_bin=$(cargo test --release --locked -p depthprobe --test cuda_graph --no-run --message-format=json 2>/dev/null |
  "$DEPTHPROBE_PYTHON" -c 'import json, sys; print(next(m["executable"] for m in map(json.loads, sys.stdin)
      if m.get("executable") and m["target"]["name"] == "cuda_graph"))')
strip -o "$out/cuda_graph_test" "$test_bin"
cp "${DEPTHPROBE_DATA:?set DEPTHPROBE_DATA to the folder with mnist/}"/mnist/*.gz "$out/data/mnist/"
if [ -n "${BASELINE:-}" ]; then
  mkdir -p "$out/baseline"
  strip -o "$out/baseline/train_throughput" "$BASELINE/release/examples/train_throughput"
  strip -o "$out/baseline/sweep_throughput" "$BASELINE/release/examples/sweep_throughput"
fi
du -sh "$out"
