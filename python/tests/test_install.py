"""The package installs with `pip install ./python` into a fresh environment without PyTorch,
Lightning, transformers or TensorBoard (and so without a GPU): the measures work, and
depthprobe.torch, depthprobe.lightning and depthprobe.hf say what they need."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pip_install_without_torch(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = venv / "bin" / "python"
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", ROOT / "python"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    code = """
import numpy as np, depthprobe
rng = np.random.default_rng(0)
y = np.arange(60) % 3
x = (rng.standard_normal((60, 5)) + 6 * np.eye(5)[y]).astype(np.float32)
p = depthprobe.LayerProbe(3, 1, linear_max_dim=8)
for _ in p.passes():
    p.update_train(1, x, y)
    p.update_test(1, x, y)
r = p.result()["layers"][0]
assert r["ncc_train_acc"] == 1.0 and r["linear_train_acc"] == 1.0, r
try:
    import torch
    raise SystemExit("torch is installed in the fresh environment")
except ImportError:
    pass
try:
    import depthprobe.torch
    raise SystemExit("depthprobe.torch imported without torch")
except ImportError as e:
    assert "needs PyTorch: pip install torch" in str(e), e
# The trainer callbacks say what they need too.
for mod, needs in (("lightning", "pip install lightning"), ("hf", "pip install transformers")):
    try:
        __import__("depthprobe." + mod)
        raise SystemExit(f"depthprobe.{mod} imported without its library")
    except ImportError as e:
        assert needs in str(e), e
print("ok")
"""
    r = subprocess.run([py, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
