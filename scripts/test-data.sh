#!/usr/bin/env bash
# Builds the test data folder the tests read, from the data sets' public mirrors (or
# DEPTHPROBE_MIRROR), when no DEPTHPROBE_TEST_DATA is given: run-tests calls it.
#
#   scripts/test-data.sh DIR      (DEPTHPROBE_BIN: the depthprobe binary; default target/release/depthprobe)
#
# DIR gets mnist/ and fashion-mnist/ (the official IDX .gz files), cifar-10-batches-bin/ (the
# whole CIFAR-10 binary version) and cifar-10-sample/test_batch_first500.bin (the first 500
# records of CIFAR-10's test batch, cut from it: what the tests read of CIFAR-10). Every file is checked:
# the downloads against their published MD5s by `depthprobe data download`, the sample against
# the SHA-256 below. What is already there and verified is not fetched again.
set -euo pipefail
dir=${1:?usage: scripts/test-data.sh DIR}
bin=${DEPTHPROBE_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/depthprobe}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# The sample's bytes: the first 500 records (500 × 3,073 bytes) of the official test_batch.bin
# (MD5 803d5f7f4d78ea53de84dbe85f74fb6d).
sample_sum=ba456e78b292ef2a6e366d304e587255370906951905b2e06af8e9f54f412f62
sample_ok() { [ -f "$1" ] && [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$sample_sum" ]; }

echo "test data in $dir: MNIST (11.6 MB), Fashion-MNIST (30.9 MB) and CIFAR-10 (170.1 MB, 184 MB unpacked), each fetched once" >&2
"$bin" data download mnist fashion-mnist cifar10 --root "$dir"

sample="$dir/cifar-10-sample/test_batch_first500.bin"
if sample_ok "$sample"; then
    echo "cifar-10-sample: already in $sample, SHA-256 verified" >&2
    exit 0
fi
mkdir -p "$dir/cifar-10-sample"
head -c $((500 * 3073)) "$dir/cifar-10-batches-bin/test_batch.bin" > "$sample.tmp"
if ! sample_ok "$sample.tmp"; then
    echo "cifar-10-sample: the records cut from $dir/cifar-10-batches-bin/test_batch.bin have SHA-256" \
        "$(sha256sum < "$sample.tmp" | cut -d' ' -f1), not $sample_sum" >&2
    rm -f "$sample.tmp"
    exit 1
fi
mv "$sample.tmp" "$sample"
echo "cifar-10-sample: the first 500 test records cut, SHA-256 verified; $sample" >&2
