#!/usr/bin/env bash
# Fuzz one input parser with libFuzzer (cargo-fuzz):
#   scripts/fuzz.sh TARGET [SECONDS]     TARGET: idx | cifar | npy | safetensors | config
# Default 600 s. Needs cargo-fuzz (`cargo install cargo-fuzz`) and the nightly toolchain
# (`rustup toolchain install nightly`). The corpus grows in fuzz/corpus/TARGET (git-ignored),
# seeded from fuzz/seeds/TARGET; a crash or hang lands in fuzz/artifacts/TARGET: copy it to
# fuzz/regressions/TARGET/ so the test suite (tests/fuzz_corpus.rs) replays it for good.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
target=${1:?usage: scripts/fuzz.sh idx|cifar|npy|safetensors|config [SECONDS]}
secs=${2:-600}
cd "$DEPTHPROBE_ROOT/fuzz"
mkdir -p "corpus/$target"
# The targets link LibTorch (through the depthprobe crate): find it at run time.
export LD_LIBRARY_PATH="$DEPTHPROBE_TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1
