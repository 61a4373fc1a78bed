#!/usr/bin/env bash
# Every report page a reader opens, checked in a real headless browser (check_reports.py):
# docs/results/*, and reports written now by the binary under test: a depth sweep's (every
# figure kind of a sweep with a depth axis, the checks' tables, CKA heatmaps and weight-rank
# figures) and one run folder's.
# Installs Chromium and its WebDriver from the distribution's packages (needs root, as the SLURM
# test) and selenium from PyPI into the project's virtualenv.
#   tests/browser/browser-test.sh target/release/depthprobe
set -euo pipefail
dp=$(realpath "${1:?usage: browser-test.sh DEPTHPROBE_BINARY}")
cd "$(dirname "$0")/../.."
py=${DEPTHPROBE_PYTHON:-.venv/bin/python}
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    echo "browser test: installing chromium and chromium-driver ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null
fi
"$py" -c "import selenium" 2>/dev/null || "$py" -m pip install -q --disable-pip-version-check "selenium==4.51.0"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/depth.toml" <<'TOML'
name = "browser-depth"
[config.data]
dataset = "synthetic"
train_per_class = 60
test_per_class = 30
[config.model]
width = 24
[config.train]
epochs = 4
milestones = [3]
threads = 1
[config.probe]
every = 1
linear_max_dim = 64
cka = true
weight_spectra = true
[axes]
"model.depth" = [2, 3, 4]
"train.seed" = [0, 1, 2]
TOML
"$dp" sweep plan "$tmp/depth.toml" --out "$tmp/sweep" >/dev/null
"$dp" sweep local "$tmp/sweep" --batch 3 --quiet >/dev/null
"$dp" report "$tmp/sweep" >/dev/null
run=$(ls -d "$tmp"/sweep/runs/*/ | head -1)
"$dp" report "$run" >/dev/null
# The figure kinds CKA and weight spectra add must be among those checked.
for f in "$tmp/sweep/report/cka_by_layer.png" "$tmp/sweep/report/weight_rank_by_layer.png" \
    "$run/report/cka.png" "$run/report/weight_spectra.png"; do
    [ -s "$f" ] || { echo "browser test: $f was not drawn" >&2; exit 1; }
done
"$py" tests/browser/check_reports.py --self-test docs/results/*/ "$tmp/sweep/report" "$run/report"
echo "browser test: passed"
