"""A torchvision ResNet-18 trained on CIFAR-10 with PyTorch Lightning, every residual block
probed at the end of every epoch by depthprobe's Lightning callback, and everything watched in
TensorBoard:

    ./depthprobe data download cifar10
    .venv/bin/python python/examples/lightning_resnet18.py --epochs 3 --train-per-class 200
    tensorboard --logdir runs/lightning-resnet18     # layer_01/ncc_train_acc, ..., effective_depth/...
    ./depthprobe report runs/lightning-resnet18/depthprobe

Images are the official binary batches (cifar-10-batches-bin/ under --data-dir, else
$DEPTHPROBE_DATA, else the folder `depthprobe data download` fills); the subset and the
augmentation are those of resnet18_cifar10.py, the same example in a hand-written loop.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision
from torch import nn

try:
    import lightning.pytorch as L
except ImportError:
    print("skipped: lightning is not installed (pip install lightning) — this example needs it")
    sys.exit(0)

sys.path.insert(0, str(Path(__file__).parent))
from resnet18_cifar10 import augment, default_root, load_split  # noqa: E402

from depthprobe.lightning import DepthProbe  # noqa: E402


class ResNet18(L.LightningModule):
    def __init__(self, epochs: int, seed: int) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=10)  # random initial weights
        self.epochs, self.g = epochs, torch.Generator().manual_seed(seed)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        out = self(augment(x, self.g))
        loss = nn.functional.cross_entropy(out, y)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        self.log("train/acc", (out.argmax(1) == y).float().mean(), on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val/acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        # The paper's SGD, with a short cosine schedule for a few epochs.
        opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None, help="data folder (default: $DEPTHPROBE_DATA, else the download folder)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-per-class", type=int, default=200, help="train images per class (5000 = all)")
    ap.add_argument("--test-per-class", type=int, default=100, help="test images per class (1000 = all)")
    ap.add_argument("--out", type=Path, default=Path("runs/lightning-resnet18"), help="TensorBoard log folder")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    root = a.data_dir or default_root()
    if not (root / "cifar-10-batches-bin" / "test_batch.bin").exists():
        raise SystemExit(f"no CIFAR-10 in {root}: fetch it with `depthprobe data download cifar10 --root {root}`")
    L.seed_everything(a.seed)
    xtr, ytr = load_split(root, [f"data_batch_{i}.bin" for i in range(1, 6)], a.train_per_class, a.seed)
    xte, yte = load_split(root, ["test_batch.bin"], a.test_per_class, a.seed)
    ds = torch.utils.data.TensorDataset
    train = torch.utils.data.DataLoader(ds(xtr, ytr), batch_size=128, shuffle=True)
    val = torch.utils.data.DataLoader(ds(xte, yte), batch_size=250)
    # Every residual block, averaged over its spatial positions, and the classifier. The probe
    # reads the un-augmented images: the trainer's train loader holds them (the model augments).
    layers = [f"net.layer{s}.{b}" for s in range(1, 5) for b in range(2)] + ["net.fc"]
    probe = DepthProbe(every_n_epochs=1, layers=layers, num_classes=10, pool="avg", run_dir=a.out / "depthprobe")
    trainer = L.Trainer(max_epochs=a.epochs, logger=L.loggers.TensorBoardLogger(a.out, name="", version=""),
                        callbacks=[probe], enable_checkpointing=False, log_every_n_steps=1)
    trainer.fit(ResNet18(a.epochs, a.seed), train, val)
    print("effective depth:", probe.last["effective_depth"])
    for l, name in zip(probe.last["layers"], probe.last["layer_names"]):
        print(f"{name:>14}  NCC train {l['ncc_train_acc']:.3f}  test {l['ncc_test_acc']:.3f}  CDNV {l['cdnv_train']:.3f}")
    print(f"tensorboard --logdir {a.out}")


if __name__ == "__main__":
    main()
