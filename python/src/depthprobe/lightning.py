"""depthprobe inside PyTorch Lightning: a callback that probes every layer every k epochs with
the trainer's own data, logs every per-layer measure and the effective depths through the
trainer's loggers, and keeps a run folder that ``depthprobe.read_run`` and ``depthprobe report``
read (docs/python.md, "PyTorch Lightning")."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

try:
    import lightning.pytorch as pl
except ImportError as e:  # the package installs without it
    raise ImportError("depthprobe.lightning needs PyTorch Lightning: pip install lightning") from e

from . import DepthprobeError
from ._callbacks import flat_metrics
from .torch import _probe, all_gather

__all__ = ["DepthProbe", "flat_metrics"]


class _RichTask:
    """A task in Lightning's rich progress display, with the tqdm methods the probe calls."""

    def __init__(self, progress: Any, total: Optional[int]) -> None:
        self.progress, self.task = progress, progress.add_task("depthprobe probe", total=total)

    def update(self, n: int = 1) -> None:
        self.progress.update(self.task, advance=n)

    def set_postfix_str(self, s: str, refresh: bool = False) -> None:
        self.progress.update(self.task, description=f"depthprobe probe ({s})")

    def refresh(self) -> None:
        self.progress.refresh()

    def close(self) -> None:
        self.progress.remove_task(self.task)


def _first_loader(loaders: Any) -> Any:
    """The first of Lightning's validation loaders (one loader, a list or a dict of them)."""
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    if isinstance(loaders, dict):
        return next(iter(loaders.values()), None)
    return loaders


class DepthProbe(pl.Callback):
    """Probe the LightningModule's layers at the end of every ``every_n_epochs``-th training
    epoch and at the end of training::

        trainer = L.Trainer(max_epochs=30, callbacks=[DepthProbe(every_n_epochs=5, layers="auto",
                                                                 num_classes=10, pool="avg")])

    Args:
        every_n_epochs: probe after epochs k, 2k, ... (and after the last).
        layers, num_classes, pool and every other keyword: as for ``depthprobe.torch.probe``.
        train_dataloader, val_dataloader: the data to probe on; by default the trainer's own
            train and (first) validation loaders. The train split is read twice per probe.
        run_dir: the run folder to keep (default: ``<trainer.log_dir or default_root_dir>/depthprobe``).

    Under DDP every rank probes its own shard and the statistics are merged across ranks
    (``torch.distributed``), so every rank holds the probe of all the data; rank zero logs it and
    writes the run folder. ``self.last`` is the latest probe's result (``depthprobe.torch.probe``'s).
    """

    def __init__(self, every_n_epochs: int = 1, *, layers: Union[str, Sequence[str]], num_classes: int,
                 pool: str = "flatten", train_dataloader: Optional[Iterable[Any]] = None,
                 val_dataloader: Optional[Iterable[Any]] = None, run_dir: Union[str, Path, None] = None,
                 **probe_args: Any) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise DepthprobeError(f"every_n_epochs = {every_n_epochs}: probe every k ≥ 1 epochs")
        self.k = every_n_epochs
        self.probe_args = dict(layers=layers, num_classes=num_classes, pool=pool, **probe_args)
        self.train_loader, self.val_loader = train_dataloader, val_dataloader
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.last: Optional[Dict[str, Any]] = None
        self.probed_epochs: List[int] = []

    def _folder(self, trainer: pl.Trainer) -> Path:
        if self.run_dir is None:
            self.run_dir = Path(trainer.log_dir or trainer.default_root_dir) / "depthprobe"
        return self.run_dir

    def _data(self, trainer: pl.Trainer) -> tuple:
        train = self.train_loader if self.train_loader is not None else trainer.train_dataloader
        test = self.val_loader if self.val_loader is not None else _first_loader(trainer.val_dataloaders)
        if train is None or test is None:
            raise DepthprobeError("DepthProbe needs a train and a validation dataloader: give the trainer a "
                                  "val_dataloader, or pass train_dataloader= and val_dataloader= to DepthProbe")
        return train, test

    def _progress(self, trainer: pl.Trainer) -> Any:
        """The trainer's own progress display for the probe's batches: a bar of its tqdm progress
        bar, where the validation bar goes, or a task of its rich one; none without one."""
        pb = trainer.progress_bar_callback
        if pb is None or not trainer.is_global_zero or "progress" in self.probe_args:
            return self.probe_args.get("progress", False)
        from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

        if isinstance(pb, TQDMProgressBar):
            def tqdm_bar(total: Optional[int]) -> Any:
                bar = pb.init_validation_tqdm()
                bar.reset(total=total)
                bar.set_description("depthprobe probe")
                return bar
            return tqdm_bar
        if isinstance(pb, RichProgressBar) and getattr(pb, "progress", None) is not None:
            return lambda total: _RichTask(pb.progress, total)
        return False

    def _run(self, trainer: pl.Trainer, module: pl.LightningModule, epoch: int, done: bool) -> None:
        # Every rank probes (the merge is collective); rank zero logs and writes.
        train, test = self._data(trainer)
        distributed = trainer.world_size > 1
        args = {k: v for k, v in self.probe_args.items() if k != "progress"}
        res, native = _probe(module, train, test, device=module.device, progress=self._progress(trainer),
                             sync=all_gather if distributed else None, **args)
        self.last = res
        self.probed_epochs.append(epoch)
        if trainer.is_global_zero:
            metrics = flat_metrics(res)
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
            # Probing an epoch again replaces its block: the last one is then marked done.
            native.append_to_run(str(self._folder(trainer)), int(epoch), float(res["wall_s"]), done, None)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch = trainer.current_epoch + 1
        if self._epoch % self.k == 0:
            self._run(trainer, pl_module, self._epoch, False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the last epoch, probed or not: this probe marks the run folder done.
        self._run(trainer, pl_module, getattr(self, "_epoch", trainer.current_epoch), True)
