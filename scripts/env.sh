# Sourced by ./depthprobe and ./run-tests: make sure the pinned LibTorch is here (a project-local
# virtualenv with the PyPI wheel torch==2.11.0, installed once), and export what the build needs.
# tch 0.24 is built for LibTorch 2.11: the two versions move together.
DEPTHPROBE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPTHPROBE_TORCH_VERSION=2.11.0
DEPTHPROBE_VENV="${DEPTHPROBE_VENV:-$DEPTHPROBE_ROOT/.venv}"

if ! "$DEPTHPROBE_VENV/bin/python" - <<PY 2>/dev/null
import sys, torch, numpy
sys.exit(0 if torch.__version__.split("+")[0] == "$DEPTHPROBE_TORCH_VERSION" else 1)
PY
then
    echo "depthprobe: one-time setup: installing torch==$DEPTHPROBE_TORCH_VERSION and numpy into $DEPTHPROBE_VENV (a few GB) ..." >&2
    python3 -m venv "$DEPTHPROBE_VENV" >&2
    "$DEPTHPROBE_VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$DEPTHPROBE_TORCH_VERSION" numpy >&2
fi

export LIBTORCH_USE_PYTORCH=1
export PATH="$DEPTHPROBE_VENV/bin:$PATH"
export DEPTHPROBE_PYTHON="$DEPTHPROBE_VENV/bin/python"
DEPTHPROBE_TORCH_LIB="$("$DEPTHPROBE_PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export DEPTHPROBE_TORCH_LIB
