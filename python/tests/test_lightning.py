"""depthprobe.lightning.DepthProbe in a Lightning Trainer on the CPU: a small ConvNet on the
CIFAR-10 records of the test data, logged through TensorBoardLogger and CSVLogger; the callback's
probe equals depthprobe.torch.probe of the trained model on the same data; under 2-process DDP
(gloo) the merged probe equals a one-process probe of all the data."""
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")
ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import depthprobe  # noqa: E402
import depthprobe.torch as dt  # noqa: E402
from depthprobe.lightning import DepthProbe, flat_metrics  # noqa: E402

C = 10
LAYERS = ["features.2", "features.5", "head.1", "head.3"]


def cifar_sample():
    """The 500 CIFAR-10 test records of the test data: 400 to train on, 100 to validate."""
    raw = np.fromfile(Path(os.environ["DEPTHPROBE_TEST_DATA"]) / "cifar-10-sample" / "test_batch_first500.bin", np.uint8)
    rec = raw.reshape(500, 3073)
    y = torch.from_numpy(rec[:, 0].astype(np.int64))
    x = torch.from_numpy(rec[:, 1:].reshape(500, 3, 32, 32).astype(np.float32) / 255.0)
    x = (x - 0.5) / 0.25
    return TensorDataset(x[:400], y[:400]), TensorDataset(x[400:], y[400:])


class SmallConv(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, C))

    def forward(self, x):
        return self.head(self.features(x))

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def loaders(shuffle=True):
    tr, va = cifar_sample()
    return DataLoader(tr, batch_size=32, shuffle=shuffle), DataLoader(va, batch_size=32)


def assert_same(ours, whole, rel):
    assert ours["effective_depth"] == whole["effective_depth"]
    for a, b in zip(ours["layers"], whole["layers"]):
        for k, v in b.items():
            w = a[k]
            if isinstance(v, float) and isinstance(w, float):
                tol = 1e-6 if k == "effective_rank" else rel
                assert w == v or abs(w - v) <= tol * max(abs(v), 1e-12), f"layer {b['layer']} {k}: {w} vs {v}"


def test_callback_logs_every_measure_and_keeps_a_run_folder(tmp_path):
    torch.set_num_threads(1)
    model = SmallConv()
    tr, va = loaders()
    tb = L.loggers.TensorBoardLogger(tmp_path, name="tb")
    cv = L.loggers.CSVLogger(tmp_path, name="csv")
    probe = DepthProbe(every_n_epochs=1, layers=LAYERS, num_classes=C, pool="flatten", run_dir=tmp_path / "run")
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=[tb, cv], callbacks=[probe],
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(model, tr, va)
    # The callback's last probe is depthprobe.torch.probe of the trained model on the same data.
    whole = dt.probe(model, tr, va, layers=LAYERS, num_classes=C)
    assert_same(probe.last, whole, rel=1e-9)
    want = flat_metrics(probe.last)
    assert "layer_04/ncc_train_acc" in want and "layer_01/cdnv_test" in want
    # CSVLogger: the same numbers, in the row of the last step that has them.
    rows = list(csv.DictReader(open(Path(cv.log_dir) / "metrics.csv")))
    last = [r for r in rows if r.get("layer_04/ncc_train_acc")][-1]
    for k, v in want.items():
        assert float(last[k]) == pytest.approx(v, rel=1e-6), k
    # TensorBoardLogger: every key, at every probe (two epochs, and the end again).
    acc = ea.EventAccumulator(tb.log_dir, size_guidance={ea.SCALARS: 0})
    acc.Reload()
    for k, v in want.items():
        got = acc.Scalars(k)
        assert len(got) == 3 and got[-1].value == pytest.approx(v, rel=1e-6), k
    # The run folder: one block per probed epoch, done, read back by read_run.
    run = depthprobe.read_run(tmp_path / "run")
    assert run["summary"]["status"] == "done" and run["summary"]["probe_epoch"] == 2
    assert sorted(set(run["metrics"]["epoch"])) == [1, 2]


def test_bad_arguments_are_refused():
    with pytest.raises(depthprobe.DepthprobeError, match="every_n_epochs"):
        DepthProbe(every_n_epochs=0, layers=LAYERS, num_classes=C)


def test_ddp_two_processes_merge_to_one_probe_of_all_the_data(tmp_path):
    torch.set_num_threads(1)
    model = SmallConv()
    tr, va = loaders()
    probe = DepthProbe(every_n_epochs=1, layers=LAYERS, num_classes=C, run_dir=tmp_path / "run")
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        callbacks=[probe], enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    trainer.fit(model, tr, va)
    # Rank zero's run folder holds the merged probe of the trained weights, which ddp_spawn
    # brings back to this process: one process probing all 400 + 100 images gives the same.
    merged = json.loads((tmp_path / "run" / "summary.json").read_text())
    whole = dt.probe(model, loaders(shuffle=False)[0], va, layers=LAYERS, num_classes=C)
    assert merged["train_samples"] == 400 and merged["test_samples"] == 100
    assert_same(merged, whole, rel=1e-9)


def test_wandb_offline_and_mlflow_file_store_receive_the_same_keys(tmp_path, monkeypatch):
    """W&B in offline mode (its run file, read with wandb's reader) and MLflow with a local file
    store (its client) get every key of the last probe with its value."""
    pytest.importorskip("wandb")
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    torch.set_num_threads(1)
    model = SmallConv()
    tr, va = loaders()
    wb = L.loggers.WandbLogger(project="depthprobe-test", save_dir=str(tmp_path), offline=True)
    ml = L.loggers.MLFlowLogger(experiment_name="depthprobe-test", tracking_uri=f"file:{tmp_path / 'mlruns'}")
    probe = DepthProbe(every_n_epochs=1, layers=LAYERS, num_classes=C, run_dir=tmp_path / "run")
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=[wb, ml], callbacks=[probe],
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(model, tr, va)
    want = flat_metrics(probe.last)
    client = mlflow.tracking.MlflowClient(tracking_uri=f"file:{tmp_path / 'mlruns'}")
    for k, v in want.items():
        hist = client.get_metric_history(ml.run_id, k)
        assert hist and hist[-1].value == pytest.approx(v, rel=1e-6), k
    wb.experiment.finish()
    # The offline run's record file, read with wandb's own reader: its history rows, latest last.
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    (path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    ds = datastore.DataStore()
    ds.open_for_scan(str(path))
    latest = {}
    while (data := ds.scan_data()) is not None:
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(data)
        if rec.WhichOneof("record_type") == "history":
            for item in rec.history.item:
                latest[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    for k, v in want.items():
        assert latest[k] == pytest.approx(v, rel=1e-6), k


def test_the_probe_shows_in_the_trainers_own_progress_bar(tmp_path, capfd):
    torch.set_num_threads(1)
    tr, va = loaders()
    probe = DepthProbe(every_n_epochs=1, layers=LAYERS, num_classes=C, run_dir=tmp_path / "run")
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                        callbacks=[probe, L.callbacks.TQDMProgressBar()], enable_model_summary=False,
                        enable_checkpointing=False)
    trainer.fit(SmallConv(), tr, va)
    out = capfd.readouterr().out
    # Lightning's tqdm bar (on stdout), where its validation bar goes: 13 + 4 batches, twice.
    assert "depthprobe probe" in out and "34/34" in out, out[-2000:]
    # With the rich display (Lightning's default when rich is installed), a task in its Progress:
    # counted to its total, then removed.
    from rich.progress import Progress

    from depthprobe.lightning import _RichTask

    progress = Progress()
    task = _RichTask(progress, 34)
    for _ in range(34):
        task.update(1)
    assert progress.tasks[0].completed == 34 and progress.tasks[0].total == 34
    task.close()
    assert progress.tasks == []
