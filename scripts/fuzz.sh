#!/usr/bin/env bash
# Fuzz one input parser with libFuzzer (cargo-fuzz):
#   scripts/fuzz.sh TARGET [SECONDS]     TARGET: idx | cifar | npy | safetensors | config
# Default 600 s. Needs cargo-fuzz (`cargo install cargo-fuzz`) and the nightly toolchain
# (`rustup toolchain install nightly`). The corpus grows in fuzz/corpus/TARGET (git-ignored),
# seeded from fuzz/seeds/TARGET; a crash or hang lands in fuzz/artifacts/TARGET: copy it to
# fuzz/regressions/TARGET/ so the test suite (crates/formats/tests/fuzz_corpus.rs and
# crates/config/tests/fuzz_corpus.rs) replays it for good. The parsers live in crates without
# LibTorch, so fuzzing needs no torch install.
set -euo pipefail
target=${1:?usage: scripts/fuzz.sh idx|cifar|npy|safetensors|config [SECONDS]}
secs=${2:-600}
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
mkdir -p "corpus/$target"
exec cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1
