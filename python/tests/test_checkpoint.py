"""depthprobe checkpoints load into the equivalent PyTorch module (docs/checkpoints.md), and that
module reproduces depthprobe's own test accuracy: a parity check between the two engines."""
import gzip
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DEPTHPROBE_BIN", ROOT / "target" / "release" / "depthprobe"))
DATA = Path(os.environ["DEPTHPROBE_TEST_DATA"])  # set by ./run-tests


class Block(nn.Module):
    def __init__(self, din, h):
        super().__init__()
        self.linear = nn.Linear(din, h)
        self.bn = nn.BatchNorm1d(h)


class MLP(nn.Module):
    """depthprobe's MLP-L-H with its parameter names: layers.i.{linear,bn}, head."""

    def __init__(self, din, h, depth, c):
        super().__init__()
        self.layers = nn.ModuleList([Block(din if i == 0 else h, h) for i in range(depth)])
        self.head = nn.Linear(h, c)

    def forward(self, x):
        x = x.flatten(1)
        for b in self.layers:
            x = torch.relu(b.bn(b.linear(x)))
        return self.head(x)


def mnist_test(per_class):
    raw = lambda f: gzip.open(DATA / "mnist" / f).read()
    xi, yi = raw("t10k-images-idx3-ubyte.gz"), raw("t10k-labels-idx1-ubyte.gz")
    x = np.frombuffer(xi, np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(yi, np.uint8, offset=8).astype(np.int64)
    taken, keep = [0] * 10, []
    for i, l in enumerate(y):  # balanced subset: the first n of each class, in file order
        if taken[l] < per_class:
            taken[l] += 1
            keep.append(i)
    x = np.pad(x[keep], ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255.0
    return torch.from_numpy(((x - np.float32(0.1307)) / np.float32(0.3081))[:, None]), torch.from_numpy(y[keep])


def test_checkpoint_loads_into_pytorch_and_reproduces_test_accuracy(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[data]\ndataset = "mnist"\ntrain_per_class = 100\ntest_per_class = 50\n'
        "[model]\ndepth = 3\nwidth = 64\n[train]\nepochs = 2\nthreads = 1\n[probe]\nevery = 2\n"
    )
    out = tmp_path / "run"
    subprocess.run([BIN, "train", cfg, "--out", out, "--data-dir", DATA, "--quiet"], check=True, capture_output=True)
    ck = json.loads((out / "checkpoint.json").read_text())
    tensors = st.load_file(out / ck["file"])
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    assert any(k.startswith("momentum.") for k in tensors)
    net = MLP(1024, 64, 3, 10)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert unexpected == []
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    net.eval()
    x, y = mnist_test(50)
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).double().mean().item()
    summary = json.loads((out / "summary.json").read_text())
    assert acc == pytest.approx(summary["test_acc"], abs=1e-12), (acc, summary["test_acc"])
    assert 0.5 < acc < 1.0  # a trained, not trivial, network
