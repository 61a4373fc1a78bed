"""Linear CKA between layers from Python: ``depthprobe.torch.probe(cka=True)`` reduces the
minibatch HSIC on the model's device; it must equal the NumPy estimator written from the
formulas (tests/numpy_reference.py) and ``depthprobe measure --cka`` on the same embeddings, and
data-parallel shards merge their sums."""
import copy
import importlib.util
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import depthprobe.torch as dt  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_torch_probe import C, batches, cifar_sample, measure, mlp  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("numpy_reference", ROOT / "tests" / "numpy_reference.py")
numpy_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(numpy_reference)


def embeddings(model, x):
    with torch.no_grad():
        h1 = model[2](model[1](model[0](x)))
        h2 = model[5](model[4](model[3](h1)))
        return [h1, h2, model[6](h2)]


def test_probe_cka_equals_numpy_and_measure(tmp_path):
    (xtr, ytr), (xte, yte) = cifar_sample()
    model = mlp()
    model.eval()
    # Loader batches of 48 rows: CKA's minibatches of 256 cut across them.
    res = dt.probe(model, batches(xtr, ytr, 48), batches(xte, yte, 48), layers=["2", "5", "6"], num_classes=C,
                   cka=True)
    cka = res["cka"]
    assert (cka["batch_rows"], cka["train_batches"], cka["test_batches"]) == (256, 2, 1)
    etr = [e.double().numpy() for e in embeddings(model, xtr)]
    ete = [e.double().numpy() for e in embeddings(model, xte)]
    for split, want in (("train", numpy_reference.minibatch_cka(etr)), ("test", numpy_reference.minibatch_cka(ete))):
        np.testing.assert_allclose(np.array(cka[split]), np.array(want), rtol=0, atol=1e-9, err_msg=split)
    # The per-layer column is CKA with the top layer; the host reduction of `measure` agrees.
    assert [l["cka_top_train"] for l in res["layers"]] == pytest.approx([r[-1] for r in cka["train"]], abs=1e-12)
    cli = measure(tmp_path, embeddings(model, xtr), ytr, embeddings(model, xte), yte, extra=("--cka",))
    for split in ("train", "test"):
        np.testing.assert_allclose(np.array(cka[split]), np.array(cli["cka"][split]), rtol=0, atol=1e-9)
    # Without cka=True there is none.
    plain = dt.probe(model, batches(xtr, ytr, 48), batches(xte, yte, 48), layers=["2", "5", "6"], num_classes=C)
    assert "cka" not in plain and "cka_top_train" not in plain["layers"][0]


def test_data_parallel_shards_add_their_minibatches():
    """Two workers, each with half the batches: each cuts its own minibatches, the merged sums
    are the sums of both workers' minibatches (what one probe of the shards in turn gives)."""
    (xtr, ytr), (xte, yte) = cifar_sample()
    model = mlp()
    model.eval()
    tr, te = batches(xtr, ytr, 40), batches(xte, yte, 40)
    parts = [(tr[0::2], te[0::2]), (tr[1::2], te[1::2])]
    barrier = threading.Barrier(2)
    box, results = {}, [None, None]
    # Each worker its own copy, made here: building models inside the threads would interleave
    # their draws from torch's one global generator.
    replicas = [copy.deepcopy(model) for _ in range(2)]

    def worker(rank):
        def sync(stats):
            box[rank] = stats
            barrier.wait()
            out = [box[0], box[1]]
            barrier.wait()
            return out
        results[rank] = dt.probe(replicas[rank], parts[rank][0], parts[rank][1], layers=["2", "5", "6"],
                                 num_classes=C, cka=True, sync=sync)

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each shard has 200 train rows (one minibatch each) and 50 test rows.
    assert results[0]["cka"] == results[1]["cka"]
    assert (results[0]["cka"]["train_batches"], results[0]["cka"]["test_batches"]) == (2, 2)
    shard_rows = [np.concatenate([x.numpy() for x, _ in parts[r][0]]) for r in range(2)]
    hs = []
    for rows in shard_rows:
        e = [v.double().numpy() for v in embeddings(model, torch.from_numpy(rows))]
        grams = [x @ x.T for x in e]
        hs.append(np.array([[numpy_reference.hsic1(a, b) for b in grams] for a in grams]))
    h = hs[0] + hs[1]
    d = np.sqrt(np.diag(h))
    np.testing.assert_allclose(np.array(results[0]["cka"]["train"]), h / np.outer(d, d), rtol=0, atol=1e-9)


def test_trainer_callbacks_log_the_cka_block_where_defined():
    from depthprobe._callbacks import flat_metrics

    result = {"layers": [{"layer": 1, "dim": 4, "cka_top_train": 0.5}],
              "cka": {"block_train": {"0.01": {"depth": 2, "within": 0.9, "across": None},
                                      "0.1": {"depth": 1, "within": 0.8, "across": 0.4}}}}
    got = flat_metrics(result)
    assert got == {"layer_01/cka_top_train": 0.5, "cka_block/within_eps_0.01": 0.9,
                   "cka_block/within_eps_0.1": 0.8, "cka_block/across_eps_0.1": 0.4}


def test_layer_probe_takes_every_layer_at_once_for_cka():
    """The NumPy push API: ``LayerProbe(cka=True)`` fed with ``update_*_all`` gives the NumPy
    estimator's CKA; feeding one layer at a time is refused with CKA on, naming the way."""
    import depthprobe

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 600)
    a = (rng.normal(size=(600, 6)) + y[:, None]).astype(np.float32)
    b = np.tanh(a @ rng.normal(size=(6, 5))).astype(np.float32)
    p = depthprobe.LayerProbe(num_classes=4, layers=2, cka=True)
    for _ in p.passes():
        for s in range(0, 600, 70):
            p.update_train_all([a[s:s + 70], b[s:s + 70]], y[s:s + 70])
            p.update_test_all([a[s:s + 70], b[s:s + 70]], y[s:s + 70])
    got = p.result()["cka"]
    want = numpy_reference.minibatch_cka([a.astype(np.float64), b.astype(np.float64)])
    np.testing.assert_allclose(np.array(got["train"]), np.array(want), rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.array(got["test"]), np.array(want), rtol=0, atol=1e-9)
    q = depthprobe.LayerProbe(num_classes=4, layers=2, cka=True)
    with pytest.raises(depthprobe.DepthprobeError, match="update_train_all"):
        for _ in q.passes():
            q.update_train(1, a, y)
            q.update_train(2, b, y)
