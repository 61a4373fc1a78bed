"""The sweep report's tables read back by independent readers: results.parquet (our own
Parquet writer) through pyarrow must equal results.csv through pandas, column for column."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DEPTHPROBE_BIN", ROOT / "target" / "release" / "depthprobe"))

SWEEP = """
name = "pq"
[config.data]
dataset = "synthetic"
train_per_class = 60
test_per_class = 20
[config.model]
width = 16
[config.train]
epochs = 2
milestones = [1]
threads = 1
[config.probe]
every = 1
[axes]
"model.depth" = [1, 2]
"corruption.p" = [0.0, 0.25]
"""


def test_parquet_equals_csv(tmp_path):
    sweep = tmp_path / "pq.toml"
    sweep.write_text(SWEEP)
    d = tmp_path / "sweep"
    for args in (["sweep", "plan", sweep, "--out", d], ["sweep", "local", d, "-j", "2", "--quiet"], ["report", d]):
        subprocess.run([BIN, *args], check=True, capture_output=True)
    table = pq.read_table(d / "report" / "results.parquet")
    got = table.to_pandas()
    strings = [c for c in got.columns if got[c].dtype == object or str(got[c].dtype).startswith("str")]
    csv = pd.read_csv(d / "report" / "results.csv", dtype={c: str for c in strings}, keep_default_na=False, na_values={c: [""] for c in got.columns if c not in strings})
    assert list(got.columns) == list(csv.columns)
    assert len(got) == 4 and (got["status"] == "done").all()
    assert str(table.schema.field("depth").type) == "int64"
    assert str(table.schema.field("test_acc").type) == "double"
    assert str(table.schema.field("id").type) == "string"
    for c in got.columns:
        if got[c].dtype.kind == "f":
            np.testing.assert_array_equal(got[c].to_numpy(), csv[c].to_numpy(dtype=float), err_msg=c)
        elif got[c].dtype.kind == "i":
            assert (got[c].to_numpy() == csv[c].to_numpy()).all(), c
        else:
            assert got[c].tolist() == csv[c].tolist(), c
    assert sorted(got["corruption_p"].unique().tolist()) == [0.0, 0.25]
    layers = pq.read_table(d / "report" / "layers.parquet").to_pandas()
    layers_csv = pd.read_csv(d / "report" / "layers.csv", dtype={"id": str})
    assert len(layers) == 2 * (1 + 2) and list(layers.columns) == list(layers_csv.columns)
    assert layers["id"].tolist() == layers_csv["id"].tolist()
    for c in ("layer", "ncc_train_acc", "ncc_test_acc", "cdnv_train", "cdnv_test"):
        np.testing.assert_array_equal(layers[c].to_numpy(), layers_csv[c].to_numpy(), err_msg=c)


def test_read_sweep(tmp_path):
    import depthprobe

    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP)
    d = tmp_path / "sweep"
    subprocess.run([BIN, "sweep", "plan", sweep, "--out", d], check=True, capture_output=True)
    try:
        depthprobe.read_sweep(d)
        raise AssertionError("expected an error before the report exists")
    except depthprobe.DepthprobeError as e:
        assert "depthprobe report" in str(e)
    subprocess.run([BIN, "sweep", "local", d, "-j", "2", "--quiet"], check=True, capture_output=True)
    subprocess.run([BIN, "report", d], check=True, capture_output=True)
    s = depthprobe.read_sweep(d)
    assert len(s["plan"]["runs"]) == 4
    assert len(s["results"]) == 4 and set(s["results"]["depth"]) == {1, 2}
    assert len(s["layers"]) == 2 * (1 + 2)
