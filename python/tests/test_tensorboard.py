"""`depthprobe train --tensorboard` and `depthprobe export tensorboard`, read back with
TensorBoard's own reader (EventAccumulator): every finite number of metrics.csv is a scalar at
its epoch under its tag, the running loss and accuracy of every epoch are there, and the figures
are PNG images."""
import csv
import math
import os
import subprocess
from pathlib import Path

import pytest

ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DEPTHPROBE_BIN", ROOT / "target" / "release" / "depthprobe"))
CONFIG = """
[data]
dataset = "synthetic"
train_per_class = 60
test_per_class = 30
[model]
arch = "mlp"
depth = 3
width = 32
[train]
epochs = 5
milestones = [4]
threads = 1
[probe]
every = 2
cka = true
weight_spectra = true
"""


def tag(layer, split, metric):
    """The tag of a metrics.csv row (crates/depthprobe/src/tensorboard.rs)."""
    if layer:
        if metric.startswith("weight_"):  # a weight has no split
            return f"layer_{int(layer):02d}/{metric}"
        name = metric[:-4] + f"_{split}_acc" if metric.endswith("_acc") else f"{metric}_{split}"
        return f"layer_{int(layer):02d}/{name}"
    for kind in ("within", "across"):
        if metric.startswith(f"cka_block_{kind}_"):
            return f"cka_block/{kind}_eps_{metric[len(kind) + 11:]}"
    for kind in ("linear_effective_depth", "effective_depth"):
        if metric.startswith(kind + "_"):
            return f"{kind}/eps_{metric[len(kind) + 1:]}"
    return "net/lr" if metric == "lr" else f"net/{split}_{metric}"


def read(logdir):
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
    acc.Reload()
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}
    return scalars, acc


def check_against_metrics(run, scalars):
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    compared = 0
    for r in rows:
        v = float(r["value"]) if r["value"] else math.nan
        t = tag(r["layer"], r["split"], r["metric"])
        if not math.isfinite(v):
            assert int(r["epoch"]) not in scalars.get(t, {}), f"{t}: a NaN was logged"
            continue
        got = scalars[t][int(r["epoch"])]
        assert got == pytest.approx(v, rel=1e-6, abs=1e-30), f"{t} at epoch {r['epoch']}: {got} vs {v}"
        compared += 1
    assert compared > 50, compared
    return rows


def test_train_writes_what_metrics_csv_holds_and_export_writes_it_again(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    run, live, exported = tmp_path / "run", tmp_path / "tb-live", tmp_path / "tb-export"
    subprocess.run([BIN, "train", cfg, "--out", run, "--quiet", "--tensorboard", live], check=True,
                   capture_output=True)
    scalars, acc = read(live)
    check_against_metrics(run, scalars)
    assert "layer_03/ncc_train_acc" in scalars and "layer_01/cdnv_test" in scalars
    # The running accuracy every epoch, the running loss and rate where no probe carries them.
    assert sorted(scalars["net/train_epoch_acc"]) == [1, 2, 3, 4, 5]
    assert sorted(scalars["net/train_epoch_loss"]) == [1, 2, 3, 4, 5]
    assert sorted(scalars["net/lr"]) == [1, 2, 3, 4, 5]
    images = acc.Tags()["images"]
    assert {"figures/layer_profile", "figures/ncc_by_epoch", "figures/cka", "figures/weight_spectra"} <= set(images), images
    assert "layer_02/weight_stable_rank" in scalars and "layer_01/cka_top_test" in scalars
    img = acc.Images("figures/layer_profile")[-1]
    assert img.step == 5 and img.encoded_image_string.startswith(b"\x89PNG") and img.width > 100
    # The export of the finished run: every probe's numbers and the figures again.
    subprocess.run([BIN, "export", "tensorboard", run, "--out", exported], check=True, capture_output=True)
    again, acc2 = read(exported)
    check_against_metrics(run, again)
    assert set(acc2.Tags()["images"]) == set(images)
    # The config's [log] section does the same as --tensorboard.
    from_cfg = tmp_path / "tb-config"
    cfg.write_text(CONFIG + f'[log]\ntensorboard = "{from_cfg}"\n')
    subprocess.run([BIN, "train", cfg, "--out", tmp_path / "run2", "--quiet"], check=True, capture_output=True)
    scalars2, _ = read(from_cfg)
    check_against_metrics(tmp_path / "run2", scalars2)


def test_a_sweep_logs_each_run_into_its_folder_live_and_by_export_and_bad_paths_are_named(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "s"\n' + CONFIG.replace("[data]", "[config.data]").replace("[model]", "[config.model]")
                     .replace("[train]", "[config.train]").replace("[probe]", "[config.probe]")
                     + '[axes]\n"train.seed" = [0, 1]\n')
    d = tmp_path / "sweep"
    subprocess.run([BIN, "sweep", "plan", sweep, "--out", d], check=True, capture_output=True)
    live = tmp_path / "tb-live"
    subprocess.run([BIN, "sweep", "local", d, "-j", "2", "--quiet", "--tensorboard", live], check=True,
                   capture_output=True)
    out = tmp_path / "tb"
    subprocess.run([BIN, "export", "tensorboard", d, "--out", out], check=True, capture_output=True)
    runs = sorted(p.name for p in (d / "runs").iterdir() if p.is_dir())
    # Live from sweep local and exported afterwards: a folder per run, each with its numbers.
    for logdir in (live, out):
        assert sorted(p.name for p in logdir.iterdir()) == runs
        for r in runs:
            scalars, _ = read(logdir / r)
            check_against_metrics(d / "runs" / r, scalars)
    bad = subprocess.run([BIN, "export", "tensorboard", tmp_path / "nowhere", "--out", out], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "nowhere" in bad.stderr and "run folder" in bad.stderr
