"""depthprobe.torch: probing PyTorch models through hooks, with the reduction on the model's
device. Each architecture is checked against `depthprobe measure` on the same embeddings
dumped by hand (no hooks), to 1e-6 relative; data-parallel probes (threads, and two processes
on torch.distributed's gloo backend) against one probe over all the data."""
import copy
import json
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import depthprobe  # noqa: E402
import depthprobe.torch as dt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DEPTHPROBE_BIN", ROOT / "target" / "release" / "depthprobe"))
C = 10


def cifar_sample():
    """The 500 CIFAR-10 test records of the test data: 400 to train on, 100 to test."""
    raw = np.fromfile(Path(os.environ["DEPTHPROBE_TEST_DATA"]) / "cifar-10-sample" / "test_batch_first500.bin", np.uint8)
    rec = raw.reshape(500, 3073)
    y = torch.from_numpy(rec[:, 0].astype(np.int64))
    x = torch.from_numpy(rec[:, 1:].reshape(500, 3, 32, 32).astype(np.float32) / 255.0)
    x = (x - 0.5) / 0.25
    return (x[:400], y[:400]), (x[400:], y[400:])


def batches(x, y, b=64):
    return [(x[i:i + b], y[i:i + b]) for i in range(0, len(y), b)]


def measure(tmp_path, train_embs, ytr, test_embs, yte, extra=()):
    """`depthprobe measure` on embeddings written by hand."""
    for name, embs, y in (("train", train_embs, ytr), ("test", test_embs, yte)):
        d = tmp_path / name
        d.mkdir()
        np.save(d / "labels.npy", y.numpy().astype(np.int64))
        for i, e in enumerate(embs, start=1):
            np.save(d / f"layer_{i}.npy", e.detach().numpy().astype(np.float32))
    out = tmp_path / "out"
    subprocess.run([BIN, "measure", "--train", tmp_path / "train", "--test", tmp_path / "test", "--out", out,
                    "--num-classes", str(C), *extra], check=True, capture_output=True)
    return json.loads((out / "summary.json").read_text())


def assert_same(ours, cli, rel=1e-6, loose=None):
    """Equal layer by layer: floats within `rel` relative, or within loose[key] for keys named there."""
    assert ours["effective_depth"] == cli["effective_depth"]
    assert len(ours["layers"]) == len(cli["layers"])
    for a, b in zip(ours["layers"], cli["layers"]):
        assert a.keys() == b.keys()
        for k, v in b.items():
            w = a[k]
            tol = (loose or {}).get(k, rel)
            if isinstance(v, float) and isinstance(w, float):
                assert w == v or abs(w - v) <= tol * max(abs(v), 1e-12), f"layer {b['layer']} {k}: {w} vs {v}"
            else:
                assert w == v, f"layer {b['layer']} {k}: {w} vs {v}"


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 64), nn.ReLU(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
                         nn.Linear(64, C))


def test_sequential_mlp_equals_measure_on_hand_dumped_embeddings(tmp_path):
    (xtr, ytr), (xte, yte) = cifar_sample()
    model = mlp()
    model.train()
    res = dt.probe(model, batches(xtr, ytr), batches(xte, yte), layers=["2", "5", "6"], num_classes=C,
                   linear_max_dim=64)
    assert model.training, "the model's mode is restored"
    model.eval()
    with torch.no_grad():
        def embs(x):
            h1 = model[2](model[1](model[0](x)))
            h2 = model[5](model[4](model[3](h1)))
            return [h1, h2, model[6](h2)]
        cli = measure(tmp_path, embs(xtr), ytr, embs(xte), yte, extra=("--linear-max-dim", "64"))
    assert_same(res, cli)
    assert res["linear_effective_depth"] == cli["linear_effective_depth"]
    assert all(0.0 < l["linear_train_acc"] <= 1.0 for l in res["layers"])
    assert res["layer_names"] == ["2", "5", "6"]
    assert dt.auto_layers(model) == ["1", "3", "6"]


def test_torchvision_resnet18_equals_measure(tmp_path):
    tv = pytest.importorskip("torchvision")
    (xtr, ytr), (xte, yte) = cifar_sample()
    torch.manual_seed(1)
    model = tv.models.resnet18(num_classes=C)  # random weights: nothing downloaded
    names = ["layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    res = dt.probe(model, batches(xtr, ytr), batches(xte, yte), layers=names, num_classes=C, pool="avg")
    with torch.no_grad():
        model.eval()

        def embs(x):
            h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
            out = []
            for blk in (model.layer1, model.layer2, model.layer3, model.layer4):
                h = blk(h)
                out.append(h.mean(dim=(2, 3)))
            a = model.avgpool(h)
            out.append(a.mean(dim=(2, 3)))
            out.append(model.fc(torch.flatten(a, 1)))
            return out
        cli = measure(tmp_path, embs(xtr), ytr, embs(xte), yte)
    assert_same(res, cli)
    # "auto" finds every convolution, the blocks and fc, in order.
    auto = dt.auto_layers(model)
    assert auto[0] == "conv1" and auto[-1] == "fc" and "layer1.0" in auto and "layer4.1.conv2" in auto


def test_huggingface_vit_built_from_a_config_equals_measure(tmp_path):
    tf = pytest.importorskip("transformers")
    (xtr, ytr), (xte, yte) = cifar_sample()
    torch.manual_seed(2)
    cfg = tf.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=48, num_hidden_layers=3,
                       num_attention_heads=4, intermediate_size=96, num_labels=C)
    model = tf.ViTForImageClassification(cfg)  # built from a config: no weights downloaded
    # The encoder blocks (transformers ≥ 5 names them vit.layers.N, earlier vit.encoder.layer.N).
    names = [n for n, _ in model.named_modules() if re.fullmatch(r"vit\.(encoder\.layer|layers)\.\d+", n)]
    assert len(names) == 3, names
    res = dt.probe(model, batches(xtr, ytr), batches(xte, yte), layers=names, num_classes=C, pool="cls")
    with torch.no_grad():
        model.eval()

        def embs(x):
            hs = model(pixel_values=x, output_hidden_states=True).hidden_states
            return [h[:, 0] for h in hs[1:]]
        cli = measure(tmp_path, embs(xtr), ytr, embs(xte), yte)
    assert_same(res, cli)


@dataclass
class Out:
    aux: object
    features: torch.Tensor


class Odd(nn.Module):
    """Modules whose outputs are a tuple, a dict and a dataclass, then one that must not run."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3072, 16)
        self.b = nn.Linear(16, 16)
        self.c = nn.Linear(16, 16)
        self.after = nn.Linear(16, C)
        self.calls_after = 0

    def forward(self, x):
        ta = (self.a(x.flatten(1)), "tag")
        tb = {"hidden": self.b(ta[0]), "n": 3}
        tc = Out(aux=None, features=self.c(tb["hidden"]))
        self.calls_after += 1
        return self.after(tc.features)


class Wrap(nn.Module):
    def __init__(self, inner, kind):
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x):
        y = self.inner(x)
        return {"tuple": (y, None), "dict": {"skip": None, "out": y}, "data": Out(aux=None, features=y)}[self.kind]


class OddModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.t = Wrap(nn.Linear(3072, 16), "tuple")
        self.d = Wrap(nn.Linear(16, 16), "dict")
        self.o = Wrap(nn.Linear(16, 16), "data")
        self.after = nn.Linear(16, C)
        self.after_ran = 0

    def forward(self, x):
        h = self.t(x.flatten(1))[0]
        h = self.d(h)["out"]
        h = self.o(h).features
        self.after_ran += 1
        return self.after(h)


def test_tuple_dict_and_dataclass_outputs_and_the_forward_stops_after_the_last_layer(tmp_path):
    (xtr, ytr), (xte, yte) = cifar_sample()
    torch.manual_seed(3)
    model = OddModel()
    res = dt.probe(model, batches(xtr, ytr), batches(xte, yte), layers=["t", "d", "o"], num_classes=C)
    assert model.after_ran == 0, "the module after the last requested layer never ran"
    with torch.no_grad():
        def embs(x):
            h1 = model.t.inner(x.flatten(1))
            h2 = model.d.inner(h1)
            return [h1, h2, model.o.inner(h2)]
        cli = measure(tmp_path, embs(xtr), ytr, embs(xte), yte)
    assert_same(res, cli)
    # With logits=True the whole forward runs and NC4 is measured against the model's output.
    res = dt.probe(model, batches(xtr, ytr), batches(xte, yte), layers=["t", "d", "o"], num_classes=C, logits=True)
    assert model.after_ran > 0
    top = res["layers"][-1]
    assert top["nc4_agreement_train"] is not None and 0.0 <= top["nc4_agreement_train"] <= 1.0


def test_bad_calls_are_refused_clearly():
    (xtr, ytr), (xte, yte) = cifar_sample()
    model = mlp()
    tr, te = batches(xtr, ytr), batches(xte, yte)
    with pytest.raises(depthprobe.DepthprobeError, match="'layer9' is not a module"):
        dt.probe(model, tr, te, layers=["layer9"], num_classes=C)
    with pytest.raises(depthprobe.DepthprobeError, match="pool = 'max'"):
        dt.probe(model, tr, te, layers=["2"], num_classes=C, pool="max")
    with pytest.raises(depthprobe.DepthprobeError, match="not a generator"):
        dt.probe(model, (b for b in tr), te, layers=["2"], num_classes=C)
    bad = [(xtr[:8], torch.full((8,), 12))]
    with pytest.raises(depthprobe.DepthprobeError, match="label 12 at row 0 is out of range for 10 classes"):
        dt.probe(model, bad, te, layers=["2"], num_classes=C)
    with pytest.raises(depthprobe.DepthprobeError, match="cls"):
        dt.probe(model, tr, te, layers=["2"], num_classes=C, pool="cls") if False else dt.pool_output(torch.zeros(2, 3, 4, 4), "cls")


def test_class_subsets_match_measure(tmp_path):
    (xtr, ytr), (xte, yte) = cifar_sample()
    model = mlp()
    res = dt.probe(model, batches(xtr, ytr), batches(xte, yte), layers=["2", "5"], num_classes=C, classes=[1, 3, 7])
    model.eval()
    with torch.no_grad():
        def embs(x):
            h1 = model[2](model[1](model[0](x)))
            return [h1, model[5](model[4](model[3](h1)))]
        cli = measure(tmp_path, embs(xtr), ytr, embs(xte), yte, extra=("--classes", "1,3,7"))
    assert_same(res, cli)


def shards(data, k):
    return [data[i::k] for i in range(k)]


@pytest.mark.parametrize("k", [2, 4])
def test_data_parallel_shards_merge_to_one_probe(k):
    """k workers (threads here), each with its shard, through passes(sync=...) and
    probe(sync=...): every worker's result equals one probe over all the data."""
    (xtr, ytr), (xte, yte) = cifar_sample()
    model = mlp()
    model.eval()
    tr, te = batches(xtr, ytr, 32), batches(xte, yte, 32)
    whole = dt.probe(model, tr, te, layers=["2", "5", "6"], num_classes=C, rank_max_dim=64)

    barrier = threading.Barrier(k)
    box = {}

    def gather(rank):
        def sync(stats):
            box[rank] = stats
            barrier.wait()
            parts = [box[i] for i in range(k)]
            barrier.wait()
            return parts
        return sync

    results = [None] * k
    errors = []
    replicas = [copy.deepcopy(model) for _ in range(k)]  # each worker its own, as on k devices

    def worker(rank):
        try:
            results[rank] = dt.probe(replicas[rank], shards(tr, k)[rank], shards(te, k)[rank], layers=["2", "5", "6"],
                                     num_classes=C, rank_max_dim=64, sync=gather(rank))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # The effective rank comes from √λ of the Gram's eigenvalues, so eigenvalues at the Gram's
    # rounding (about 1e-16·λ_max, of either sign) become singular values near 1e-8·σ_max and move
    # it by about 1e-8 when the summation order changes (3.8e-9 measured on an AMD EPYC): it is
    # compared at 1e-6, everything else at 1e-9.
    for r in results:
        assert_same(r, whole, rel=1e-9, loose={"effective_rank": 1e-6})

    # The same with the NumPy LayerProbe: take, merge, absorb by hand (pickled in between).
    import pickle

    def feed(p, trs, tes):
        with torch.no_grad():
            for x, y in trs:
                h1 = model[2](model[1](model[0](x)))
                p.update_train(1, h1, y)
                p.update_train(2, model[5](model[4](model[3](h1))), y)
            for x, y in tes:
                h1 = model[2](model[1](model[0](x)))
                p.update_test(1, h1, y)
                p.update_test(2, model[5](model[4](model[3](h1))), y)

    one = depthprobe.LayerProbe(C, 2)
    for _ in one.passes():
        feed(one, tr, te)
    probes = [depthprobe.LayerProbe(C, 2) for _ in range(k)]
    box.clear()
    barrier2 = threading.Barrier(k)

    def sync_np(rank):
        def sync(stats):
            box[rank] = pickle.loads(pickle.dumps(stats))
            barrier2.wait()
            parts = [box[i] for i in range(k)]
            barrier2.wait()
            return parts
        return sync

    def np_worker(rank):
        for _ in probes[rank].passes(sync=sync_np(rank)):
            feed(probes[rank], shards(tr, k)[rank], shards(te, k)[rank])

    threads = [threading.Thread(target=np_worker, args=(r,)) for r in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in probes:
        assert_same(p.result(), one.result(), rel=1e-9)


DIST_WORKER = r"""
import json, sys, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[5])
from test_torch_probe import cifar_sample, batches, shards, mlp
import depthprobe.torch as dt
rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
(xtr, ytr), (xte, yte) = cifar_sample()
model = mlp()
tr, te = batches(xtr, ytr, 32), batches(xte, yte, 32)
res = dt.probe(model, shards(tr, world)[rank], shards(te, world)[rank], layers=["2", "5", "6"], num_classes=10,
               sync=dt.all_gather)
json.dump(res, open(out, "w"))
dist.destroy_process_group()
"""


def run_workers(tmp_path, world):
    script = tmp_path / "worker.py"
    script.write_text(DIST_WORKER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # One thread each, so every process computes the same f32 embeddings.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outs = [tmp_path / f"w{world}-r{r}.json" for r in range(world)]
    procs = [subprocess.Popen([sys.executable, script, str(r), str(world), str(port), outs[r], Path(__file__).parent],
                              env=env, stderr=subprocess.PIPE) for r in range(world)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    return [json.loads(o.read_text()) for o in outs]


def test_torch_distributed_gloo_two_processes(tmp_path):
    """Two processes on the gloo backend, each with half the batches, against one process with
    all of them (same thread count, so the same embeddings)."""
    (whole,) = run_workers(tmp_path, 1)
    for r in run_workers(tmp_path, 2):
        assert_same(r, whole, rel=1e-9)


def test_probe_every_appends_to_a_run_folder_read_run_reads(tmp_path):
    (xtr, ytr), (xte, yte) = cifar_sample()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    run = tmp_path / "my-run"
    every = dt.ProbeEvery(run, model, batches(xtr, ytr), batches(xte, yte), k=2, layers="auto", num_classes=C)
    for epoch in range(1, 6):
        model.train()
        for x, y in batches(xtr, ytr):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        every(epoch)
    every(4)  # a rerun of epoch 4 replaces its block and drops the later ones
    with pytest.raises(depthprobe.DepthprobeError, match="unknown network metric"):
        every.finish(5, top5=0.9)
    last = every.finish(5, train_acc=0.75, test_acc=0.5, train_loss=0.9)
    got = depthprobe.read_run(run)
    s = got["summary"]
    assert s["status"] == "done" and s["probe_epoch"] == 5
    assert (s["train_acc"], s["test_acc"], s["train_loss"], s["test_loss"]) == (0.75, 0.5, 0.9, None)
    assert s["layers"][0]["ncc_train_acc"] == last["layers"][0]["ncc_train_acc"]
    m = got["metrics"]
    assert sorted(set(m.epoch)) == [2, 4, 5]
    acc = m[m.layer.isna() & (m.metric == "acc")]
    assert list(zip(acc.epoch, acc.split, acc.value)) == [(5, "train", 0.75), (5, "test", 0.5)]
    assert set(m.layer.dropna().astype(int)) == {1, 2, 3}
    # `depthprobe report` reads the folder too.
    subprocess.run([BIN, "report", run], check=True, capture_output=True)
    assert (run / "report" / "index.html").exists() and (run / "report" / "layer_profile.png").exists()
    # NCC train accuracy of the top layer improves as the network trains.
    top = m[(m.layer == 3) & (m.split == "train") & (m.metric == "ncc_acc")].set_index("epoch")["value"]
    assert top[5] >= top[2]


def test_progress_shows_every_batch_of_both_passes_and_changes_nothing(capsys, monkeypatch):
    (xtr, ytr), (xte, yte) = cifar_sample()
    model = mlp()
    args = dict(layers=["2", "5"], num_classes=C)
    quiet = dt.probe(model, batches(xtr, ytr), batches(xte, yte), **args)
    assert capsys.readouterr().err == ""
    shown = dt.probe(model, batches(xtr, ytr), batches(xte, yte), progress=True, **args)
    err = capsys.readouterr().err
    # 400 / 64 → 7 train batches and 100 / 64 → 2 test ones, twice: 18, all counted.
    assert "depthprobe probe" in err and "18/18" in err, err
    shown.pop("wall_s"), quiet.pop("wall_s")
    assert shown == quiet
    # Without tqdm the bar is silently left out.
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    dt.probe(model, batches(xtr, ytr), batches(xte, yte), progress=True, **args)
    assert capsys.readouterr().err == ""
