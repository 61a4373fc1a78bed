#!/usr/bin/env bash
# A screenshot of TensorBoard's time series for LOGDIR, filtered to TAG_REGEX, taken with headless
# Chromium (the browser the report tests use), as in docs/python.md:
#   python/examples/tensorboard_screenshot.sh runs/lightning-resnet18 ncc_train_acc out.png
set -euo pipefail
logdir=$1 filter=$2 out=$3
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tb="${DEPTHPROBE_VENV:-$root/.venv}/bin/tensorboard"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$tb" --logdir "$logdir" --port "$port" --host 127.0.0.1 > /dev/null 2>&1 &
server=$!
trap 'kill $server 2> /dev/null' EXIT
# Until the server has read the event files (it loads them after it starts answering).
for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$port/data/plugin/scalars/tags" 2> /dev/null | grep -q "$filter" && break
    sleep 0.5
done
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1000 \
    --virtual-time-budget=60000 --screenshot="$out" \
    "http://127.0.0.1:$port/?darkMode=false&forceSVG=true&tagFilter=$filter#timeseries" 2> /dev/null
echo "wrote $out"
