# Sourced by ./depthprobe and ./run-tests: make sure the pinned LibTorch is here (a project-local
# virtualenv with the PyPI wheel torch==2.11.0, installed once), and export what the build needs.
# tch 0.24 is built for LibTorch 2.11: the two versions move together.
DEPTHPROBE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPTHPROBE_TORCH_VERSION=2.11.0
# CUDA's compiler-runtime headers (crt/), which the wheel's CUDA 13 runtime headers include but
# do not ship: with them the engine is built with CUDA graph support (train.graph).
DEPTHPROBE_CUDA_CRT_VERSION=13.0.88
DEPTHPROBE_VENV="${DEPTHPROBE_VENV:-$DEPTHPROBE_ROOT/.venv}"

# Where the wheel's LibTorch is, found without importing torch (that takes seconds): prints
# nothing unless torch==$DEPTHPROBE_TORCH_VERSION and numpy are installed.
torch_lib() {
    "$DEPTHPROBE_VENV/bin/python" - <<PY 2>/dev/null
import importlib.metadata as md, importlib.util, os
assert md.version("torch").split("+")[0] == "$DEPTHPROBE_TORCH_VERSION" and importlib.util.find_spec("numpy")
print(os.path.join(importlib.util.find_spec("torch").submodule_search_locations[0], "lib"))
PY
}
DEPTHPROBE_TORCH_LIB="$(torch_lib || true)"
if [ -z "$DEPTHPROBE_TORCH_LIB" ]; then
    echo "depthprobe: one-time setup: installing torch==$DEPTHPROBE_TORCH_VERSION and numpy into $DEPTHPROBE_VENV (a few GB) ..." >&2
    python3 -m venv "$DEPTHPROBE_VENV" >&2
    "$DEPTHPROBE_VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$DEPTHPROBE_TORCH_VERSION" numpy >&2
    DEPTHPROBE_TORCH_LIB="$(torch_lib)"
fi

# Tried once: a failed install leaves a marker instead of retrying on every command.
if [ ! -e "$DEPTHPROBE_TORCH_LIB/../../nvidia/cu13/include/crt/host_config.h" ] && [ ! -e "$DEPTHPROBE_VENV/.no-cuda-crt" ]; then
    echo "depthprobe: one-time setup: installing nvidia-cuda-crt==$DEPTHPROBE_CUDA_CRT_VERSION (CUDA headers for CUDA graphs) ..." >&2
    if ! "$DEPTHPROBE_VENV/bin/pip" install --quiet --disable-pip-version-check "nvidia-cuda-crt==$DEPTHPROBE_CUDA_CRT_VERSION" >&2; then
        echo "depthprobe: could not install nvidia-cuda-crt; building without CUDA graph support (delete $DEPTHPROBE_VENV/.no-cuda-crt to try again)" >&2
        touch "$DEPTHPROBE_VENV/.no-cuda-crt"
    fi
fi

export LIBTORCH_USE_PYTORCH=1
export PATH="$DEPTHPROBE_VENV/bin:$PATH"
export DEPTHPROBE_PYTHON="$DEPTHPROBE_VENV/bin/python"
export DEPTHPROBE_TORCH_LIB
