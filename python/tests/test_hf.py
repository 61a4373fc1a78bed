"""depthprobe.hf.DepthProbeCallback in a Hugging Face Trainer on the CPU: a small ViT built from
its config (no weights downloaded) on the CIFAR-10 records of the test data, batches as dicts and
outputs as ModelOutputs; the numbers reach trainer.state.log_history and TensorBoard's files
(report_to), equal depthprobe.torch.probe of the trained model, and the run folder is kept."""
import os
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

import depthprobe  # noqa: E402
import depthprobe.torch as dt  # noqa: E402
from depthprobe.hf import DepthProbeCallback, Pairs  # noqa: E402

C = 10


def cifar_dicts():
    raw = np.fromfile(Path(os.environ["DEPTHPROBE_TEST_DATA"]) / "cifar-10-sample" / "test_batch_first500.bin", np.uint8)
    rec = raw.reshape(500, 3073)
    x = torch.from_numpy(rec[:, 1:].reshape(500, 3, 32, 32).astype(np.float32) / 255.0)
    x = (x - 0.5) / 0.25
    items = [{"pixel_values": x[i], "labels": int(rec[i, 0])} for i in range(500)]
    return items[:384], items[384:480]


def test_trainer_callback_reaches_log_history_and_tensorboard_and_equals_a_probe(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))  # transformers 5's way
    torch.manual_seed(0)
    cfg = tf.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=48, num_hidden_layers=3,
                       num_attention_heads=4, intermediate_size=96, num_labels=C)
    model = tf.ViTForImageClassification(cfg)
    names = [n for n, _ in model.named_modules() if re.fullmatch(r"vit\.(encoder\.layer|layers)\.\d+", n)]
    train, val = cifar_dicts()
    args = tf.TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=32,
                                per_device_eval_batch_size=32, learning_rate=1e-3, use_cpu=True, save_strategy="no",
                                report_to=["tensorboard"], seed=0, disable_tqdm=True)
    probe = DepthProbeCallback(every_n_epochs=1, layers=names, num_classes=C, pool="cls")
    trainer = tf.Trainer(model=model, args=args, train_dataset=train, eval_dataset=val, callbacks=[probe])
    probe.attach(trainer)
    trainer.train()
    # Two epochs and the end: three probes, each a log_history entry with every key.
    logged = [h for h in trainer.state.log_history if "layer_03/ncc_train_acc" in h]
    assert len(logged) == 3, trainer.state.log_history
    assert "effective_depth/eps_0.1" in logged[-1] or all(d is None for d in probe.last["effective_depth"].values())
    # The last equals depthprobe.torch.probe of the trained model on the trainer's own loaders.
    whole = dt.probe(model, Pairs(trainer.get_train_dataloader()), Pairs(trainer.get_eval_dataloader()), layers=names,
                     num_classes=C, pool="cls")
    assert whole["train_samples"] == 384 and whole["test_samples"] == 96
    for a, b in zip(probe.last["layers"], whole["layers"]):
        for k in ("ncc_train_acc", "ncc_test_acc", "cdnv_train", "cdnv_test", "nc1"):
            assert a[k] == pytest.approx(b[k], rel=1e-6), k
    for k in ("layer_01/cdnv_train", "layer_03/ncc_test_acc"):
        layer, key = int(k[6:8]), k[9:]
        assert logged[-1][k] == pytest.approx(probe.last["layers"][layer - 1][key], rel=1e-9)
    # report_to = tensorboard: HF's TensorBoard callback files them under train/.
    acc = ea.EventAccumulator(str(tmp_path / "tb"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/layer_03/ncc_train_acc" in tags, tags
    assert acc.Scalars("train/layer_03/ncc_train_acc")[-1].value == pytest.approx(logged[-1]["layer_03/ncc_train_acc"],
                                                                                  rel=1e-6)
    # The run folder, done, with a block per probed epoch.
    run = depthprobe.read_run(tmp_path / "out" / "depthprobe")
    assert run["summary"]["status"] == "done"
    assert sorted(set(run["metrics"]["epoch"])) == [1, 2]


def test_dict_batches_without_the_label_key_are_refused_by_name():
    with pytest.raises(depthprobe.DepthprobeError, match="'labels'"):
        list(Pairs([{"pixel_values": torch.zeros(2, 3)}]))


def test_the_probe_shows_in_the_trainers_tqdm_display(tmp_path, capfd):
    torch.manual_seed(0)
    cfg = tf.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=48, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=96, num_labels=C)
    model = tf.ViTForImageClassification(cfg)
    names = [n for n, _ in model.named_modules() if re.fullmatch(r"vit\.(encoder\.layer|layers)\.\d+", n)]
    train, val = cifar_dicts()
    args = tf.TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=32,
                                per_device_eval_batch_size=32, use_cpu=True, save_strategy="no", report_to=[],
                                disable_tqdm=False)
    trainer = tf.Trainer(model=model, args=args, train_dataset=train, eval_dataset=val)
    DepthProbeCallback(layers=names, num_classes=C, pool="cls").attach(trainer)
    trainer.train()
    err = capfd.readouterr().err
    # 12 train + 3 evaluation batches, twice per probe.
    assert "depthprobe probe" in err and "30/30" in err, err[-2000:]


HF_DDP_WORKER = r"""
import json, os, re, sys
import torch, transformers as tf
sys.path.insert(0, sys.argv[2])
from test_hf import cifar_dicts, C
from depthprobe.hf import DepthProbeCallback
out = sys.argv[1]
torch.manual_seed(0)
cfg = tf.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=48, num_hidden_layers=2,
                   num_attention_heads=4, intermediate_size=96, num_labels=C)
model = tf.ViTForImageClassification(cfg)
names = [n for n, _ in model.named_modules() if re.fullmatch(r"vit\.(encoder\.layer|layers)\.\d+", n)]
train, val = cifar_dicts()
args = tf.TrainingArguments(output_dir=out, num_train_epochs=1, per_device_train_batch_size=16,
                            per_device_eval_batch_size=16, use_cpu=True, save_strategy="no", report_to=[],
                            disable_tqdm=True, ddp_backend="gloo", seed=0)
trainer = tf.Trainer(model=model, args=args, train_dataset=train, eval_dataset=val)
DepthProbeCallback(layers=names, num_classes=C, pool="cls").attach(trainer)
trainer.train()
if trainer.is_world_process_zero():
    trainer.save_model(out + "/model")
torch.distributed.barrier()
torch.distributed.destroy_process_group()  # gloo's threads would abort the exit otherwise
"""


def test_two_processes_merge_to_one_probe_of_all_the_data(tmp_path):
    """The Trainer on 2 processes (torchrun, gloo): process zero's run folder holds the probe of
    all 384 + 96 images, equal to one process probing the trained model on all of them."""
    import socket
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(HF_DDP_WORKER)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as sk:  # a free port: torchrun's rendezvous hangs on port 0
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                        str(script), str(out), str(Path(__file__).parent)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    merged = depthprobe.read_run(out / "depthprobe")["summary"]
    assert merged["status"] == "done" and merged["train_samples"] == 384 and merged["test_samples"] == 96
    torch.set_num_threads(1)
    model = tf.ViTForImageClassification.from_pretrained(out / "model")
    names = [n for n, _ in model.named_modules() if re.fullmatch(r"vit\.(encoder\.layer|layers)\.\d+", n)]
    train, val = cifar_dicts()
    collate = tf.default_data_collator
    whole = dt.probe(model, Pairs(torch.utils.data.DataLoader(train, batch_size=16, collate_fn=collate)),
                     Pairs(torch.utils.data.DataLoader(val, batch_size=16, collate_fn=collate)), layers=names,
                     num_classes=C, pool="cls")
    assert merged["effective_depth"] == whole["effective_depth"]
    for a, b in zip(merged["layers"], whole["layers"]):
        for k in ("ncc_train_acc", "ncc_test_acc", "cdnv_train", "cdnv_test", "nc1"):
            assert a[k] == pytest.approx(b[k], rel=1e-5), k
