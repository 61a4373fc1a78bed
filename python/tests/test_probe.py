"""The Python package against the CLI, and its streaming, memory and error behaviour."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import depthprobe
from depthprobe import DepthprobeError, LayerProbe

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DEPTHPROBE_BIN", ROOT / "target" / "release" / "depthprobe"))


def make(seed, n, dims=(5, 12, 20), c=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)
    centres = [np.random.default_rng(100 + i).standard_normal((c, d)) * s for i, (d, s) in enumerate(zip(dims, (0.3, 1.0, 3.0)))]
    xs = [(centres[i][y] + rng.standard_normal((n, d)) + 2.0).astype(np.float32) for i, d in enumerate(dims)]
    return xs, y


def probe_arrays(train, test, batch=None, **kw):
    (xtr, ytr), (xte, yte) = train, test
    p = LayerProbe(num_classes=4, layers=len(xtr), **kw)
    for _ in p.passes():
        for xs, y, upd in ((xtr, ytr, p.update_train), (xte, yte, p.update_test)):
            b = batch or len(y)
            for s in range(0, len(y), b):
                for layer, x in enumerate(xs, start=1):
                    upd(layer, x[s:s + b], y[s:s + b])
    return p.result()


def numeric_items(layer):
    return {k: v for k, v in layer.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def assert_close(a, b, rel):
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        assert x == y or abs(x - y) <= rel * abs(y), f"{k}: {x} vs {y}"


def test_equals_cli_measure(tmp_path):
    train, test = make(1, 700), make(2, 300)
    for name, (xs, y) in (("train", train), ("test", test)):
        d = tmp_path / name
        d.mkdir()
        np.save(d / "labels.npy", y)
        for i, x in enumerate(xs, start=1):
            np.save(d / f"layer_{i}.npy", x)
    subprocess.run([BIN, "measure", "--train", tmp_path / "train", "--test", tmp_path / "test", "--out", tmp_path / "out", "--rank-max-dim", "64"], check=True, capture_output=True)
    cli = json.loads((tmp_path / "out" / "summary.json").read_text())
    ours = probe_arrays(train, test, rank_max_dim=64)
    assert ours["effective_depth"] == cli["effective_depth"]
    assert len(ours["layers"]) == 3
    for a, b in zip(ours["layers"], cli["layers"]):
        assert_close(numeric_items(a), numeric_items(b), 1e-12)
    # And read_run loads the same folder.
    run = depthprobe.read_run(tmp_path / "out")
    assert run["summary"]["layers"][0]["ncc_train_acc"] == cli["layers"][0]["ncc_train_acc"]
    m = run["metrics"]
    assert list(m.columns) == ["layer", "split", "metric", "value"]
    top = m[(m.layer == 3) & (m.split == "train") & (m.metric == "ncc_acc")]["value"].item()
    assert top == cli["layers"][2]["ncc_train_acc"]
    # The typed reader refuses a malformed summary.json and names it.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text('{"status": "paused", "wall_s": 1}')
    with pytest.raises(depthprobe.DepthprobeError, match="bad/summary.json"):
        depthprobe.read_run(bad)
    assert depthprobe.DEFAULT_EPS == (0.01, 0.05, 0.1) and depthprobe.DEFAULT_RANK_MAX_DIM == 0


def test_many_small_updates_equal_one_big_update():
    train, test = make(3, 1000), make(4, 200)
    one = probe_arrays(train, test)
    many = probe_arrays(train, test, batch=7)
    for a, b in zip(one["layers"], many["layers"]):
        assert_close(numeric_items(a), numeric_items(b), 1e-12)


def rss_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_memory_does_not_grow_with_updates():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 256)).astype(np.float32)
    y = np.arange(16) % 4
    p = LayerProbe(num_classes=4, layers=1)
    it = p.passes()
    next(it)
    for _ in range(500):
        p.update_train(1, x, y)
    before = rss_kib()
    for _ in range(20000):
        p.update_train(1, x, y)
    grown = rss_kib() - before
    assert grown < 2048, f"RSS grew by {grown} KiB over 20,000 updates"


def test_bad_input_raises_documented_errors():
    p = LayerProbe(num_classes=3, layers=2)
    it = p.passes()
    with pytest.raises(DepthprobeError, match="inside `for _ in probe.passes"):
        p.update_train(1, np.zeros((2, 3), np.float32), np.array([0, 1]))
    next(it)
    with pytest.raises(DepthprobeError, match="must be float32 or float64, found int32"):
        p.update_train(1, np.zeros((2, 3), np.int32), np.array([0, 1]))
    with pytest.raises(DepthprobeError, match="x has 2 rows but y has 3 labels"):
        p.update_train(1, np.zeros((2, 3), np.float32), np.array([0, 1, 2]))
    with pytest.raises(DepthprobeError, match="layer 3 does not exist"):
        p.update_train(3, np.zeros((2, 3), np.float32), np.array([0, 1]))
    p.update_train(1, np.zeros((2, 3), np.float32), np.array([0, 1]))
    p.update_train(2, np.zeros((2, 4), np.float32), np.array([0, 1]))
    # The same message as the CLI's for a label out of range and a NaN row.
    with pytest.raises(DepthprobeError, match=r"train label 7 at row 5 is out of range: there are 3 classes"):
        p.update_train(1, np.zeros((4, 3), np.float32), np.array([0, 1, 2, 7]))
    bad = np.zeros((4, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(DepthprobeError, match=r"non-finite value NaN at row 3, column 2"):
        p.update_train(2, bad, np.array([0, 1, 2, 0]))
    with pytest.raises(DepthprobeError, match="dimension 5, earlier batches had 3"):
        p.update_train(1, np.zeros((2, 5), np.float32), np.array([0, 1]))
    with pytest.raises(DepthprobeError, match="labels must be a 1-D integer array"):
        p.update_train(1, np.zeros((2, 3), np.float32), np.array([0.0, 1.0]))
    # Class 2 never appeared in train: the engine refuses to finish pass 0.
    with pytest.raises(DepthprobeError, match="class 2 has no train samples"):
        next(it)


def test_torch_tensors_are_taken_without_copy():
    torch = pytest.importorskip("torch")
    train, test = make(6, 300), make(7, 100)
    as_t = lambda split: ([torch.from_numpy(x) for x in split[0]], torch.from_numpy(split[1]))
    a = probe_arrays(train, test)
    b = probe_arrays(as_t(train), as_t(test))
    for la, lb in zip(a["layers"], b["layers"]):
        assert_close(numeric_items(la), numeric_items(lb), 0.0)
    t = torch.zeros(4, 3)
    assert np.shares_memory(depthprobe._as_matrix(t), t.numpy())
    # [N, C, H, W] activations are flattened per sample.
    assert depthprobe._as_matrix(torch.zeros(2, 3, 4, 5)).shape == (2, 60)


def test_to_frame():
    pd = pytest.importorskip("pandas")
    train, test = make(8, 200), make(9, 80)
    p = LayerProbe(num_classes=4, layers=3)
    for _ in p.passes():
        for layer, x in enumerate(train[0], start=1):
            p.update_train(layer, x, train[1])
        for layer, x in enumerate(test[0], start=1):
            p.update_test(layer, x, test[1])
    df = p.to_frame()
    assert list(df.index) == [1, 2, 3] and "ncc_train_acc" in df.columns


@pytest.mark.parametrize("alpha", [1e-3, 0.05, 1.0])
def test_linear_probe_equals_scikit_learn_ridge_classifier(alpha):
    """Our ridge classifier against scikit-learn's RidgeClassifier (Cholesky solver, intercept
    not penalised) with the same λ = α · tr(centred scatter) / D: same train and test accuracy."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    train, test = make(11, 500), make(12, 200)
    res = probe_arrays(train, test, linear_max_dim=12, linear_ridge=alpha)
    (xtr, ytr), (xte, yte) = train, test
    for layer in (1, 2):
        x = xtr[layer - 1].astype(np.float64)
        xc = x - x.mean(0)
        lam = alpha * np.trace(xc.T @ xc) / x.shape[1]
        sk = sklearn.RidgeClassifier(alpha=lam, solver="cholesky").fit(x, ytr)
        got = res["layers"][layer - 1]
        assert got["linear_train_acc"] == pytest.approx(sk.score(x, ytr), abs=1e-12)
        assert got["linear_test_acc"] == pytest.approx(sk.score(xte[layer - 1].astype(np.float64), yte), abs=1e-12)
    # Layer 3 (dim 20) is beyond linear_max_dim: no linear fields; the depth counts layers 1-2.
    assert "linear_train_acc" not in res["layers"][2]
    accs = [res["layers"][i]["linear_train_acc"] for i in (0, 1)]
    for eps, d in res["linear_effective_depth"].items():
        want = next((i + 1 for i, a in enumerate(accs) if 1 - a <= float(eps)), None)
        assert d == want


def test_linear_probe_in_the_cli_measure(tmp_path):
    train, test = make(13, 400), make(14, 150)
    for name, (xs, y) in (("train", train), ("test", test)):
        d = tmp_path / name
        d.mkdir()
        np.save(d / "labels.npy", y)
        for i, x in enumerate(xs, start=1):
            np.save(d / f"layer_{i}.npy", x)
    subprocess.run([BIN, "measure", "--train", tmp_path / "train", "--test", tmp_path / "test", "--out", tmp_path / "out",
                    "--linear-max-dim", "32", "--linear-ridge", "0.01"], check=True, capture_output=True)
    cli = json.loads((tmp_path / "out" / "summary.json").read_text())
    ours = probe_arrays(train, test, linear_max_dim=32, linear_ridge=0.01)
    assert cli["linear_effective_depth"] == ours["linear_effective_depth"]
    for a, b in zip(ours["layers"], cli["layers"]):
        assert a["linear_train_acc"] == b["linear_train_acc"] and a["linear_test_acc"] == b["linear_test_acc"]
    metrics = (tmp_path / "out" / "metrics.csv").read_text()
    assert "1,train,linear_acc," in metrics and "linear_effective_depth_0.01" in metrics
    bad = subprocess.run([BIN, "measure", "--train", tmp_path / "train", "--test", tmp_path / "test", "--out",
                          tmp_path / "o2", "--linear-ridge", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--linear-ridge 0: must be > 0" in bad.stderr
