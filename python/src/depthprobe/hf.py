"""depthprobe inside the Hugging Face ``Trainer``: a ``TrainerCallback`` that probes every layer
every k epochs on the trainer's own data, sends every per-layer measure and the effective depths
to whatever ``report_to`` names (through ``Trainer.log``), and keeps a run folder that
``depthprobe.read_run`` and ``depthprobe report`` read (docs/python.md, "Hugging Face Trainer")."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

try:
    from transformers import TrainerCallback
except ImportError as e:  # the package installs without it
    raise ImportError("depthprobe.hf needs Hugging Face transformers: pip install transformers accelerate") from e

from . import DepthprobeError
from ._callbacks import flat_metrics
from .torch import _probe, all_gather


class Pairs:
    """A loader of dict batches (``{"pixel_values": ..., "labels": ...}``, a tokenizer's output
    with labels) as ``(inputs, labels)`` pairs for ``depthprobe.torch.probe``; iterable again and
    again, with the loader's length."""

    def __init__(self, loader: Iterable[Any], label_key: str = "labels") -> None:
        self.loader, self.label_key = loader, label_key

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        for b in self.loader:
            if isinstance(b, Mapping):
                if self.label_key not in b:
                    raise DepthprobeError(f"a batch has no {self.label_key!r} key (it has {sorted(b)}): "
                                          "pass label_key= to DepthProbeCallback")
                x = {k: v for k, v in b.items() if k != self.label_key}
                yield x, b[self.label_key]
            else:
                yield b


def _distributed() -> bool:
    try:
        import torch.distributed as dist
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    except ImportError:  # pragma: no cover
        return False


class DepthProbeCallback(TrainerCallback):
    """Probe the model's layers at the end of every ``every_n_epochs``-th epoch and at the end of
    training::

        probe = DepthProbeCallback(every_n_epochs=1, layers="auto", num_classes=10, pool="cls")
        trainer = Trainer(model, args, train_dataset=..., eval_dataset=..., callbacks=[probe])
        probe.attach(trainer)          # the trainer's data and loggers; then trainer.train()

    Args:
        every_n_epochs: probe after epochs k, 2k, ... (and after the last).
        layers, num_classes, pool and every other keyword: as for ``depthprobe.torch.probe``.
        label_key: the key of the labels in dict batches.
        train_dataloader, eval_dataloader: the data to probe on; by default the attached
            trainer's ``get_train_dataloader()`` and ``get_eval_dataloader()``.
        run_dir: the run folder to keep (default: ``<args.output_dir>/depthprobe``).

    The numbers go through ``trainer.log``, so they reach ``state.log_history`` and every
    integration ``report_to`` names (TensorBoard, W&B, MLflow, ...); without ``attach`` they go to
    ``state.log_history`` only. Under data-parallel training every process probes its shard and
    the statistics are merged through ``torch.distributed``; process zero logs and writes.
    """

    def __init__(self, every_n_epochs: int = 1, *, layers: Union[str, Sequence[str]], num_classes: int,
                 pool: str = "flatten", label_key: str = "labels", train_dataloader: Optional[Iterable[Any]] = None,
                 eval_dataloader: Optional[Iterable[Any]] = None, run_dir: Union[str, Path, None] = None,
                 **probe_args: Any) -> None:
        if every_n_epochs < 1:
            raise DepthprobeError(f"every_n_epochs = {every_n_epochs}: probe every k ≥ 1 epochs")
        self.k, self.label_key = every_n_epochs, label_key
        self.probe_args = dict(layers=layers, num_classes=num_classes, pool=pool, **probe_args)
        self.train_loader, self.eval_loader = train_dataloader, eval_dataloader
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.trainer: Any = None
        self.last: Optional[Dict[str, Any]] = None
        self.probed_epochs: List[int] = []

    def attach(self, trainer: Any) -> "DepthProbeCallback":
        """Use ``trainer``'s data and loggers (and add this callback to it if it is not there)."""
        self.trainer = trainer
        if not any(c is self for c in trainer.callback_handler.callbacks):
            trainer.add_callback(self)
        return self

    def _data(self, kwargs: Dict[str, Any]) -> tuple:
        train = self.train_loader
        test = self.eval_loader
        if train is None:
            train = self.trainer.get_train_dataloader() if self.trainer is not None else kwargs.get("train_dataloader")
        if test is None:
            if self.trainer is not None and self.trainer.eval_dataset is not None:
                test = self.trainer.get_eval_dataloader()
            else:
                test = kwargs.get("eval_dataloader")
        if train is None or test is None:
            raise DepthprobeError("DepthProbeCallback needs train and evaluation data: give the Trainer an "
                                  "eval_dataset and call probe.attach(trainer), or pass train_dataloader= and "
                                  "eval_dataloader=")
        return Pairs(train, self.label_key), Pairs(test, self.label_key)

    def _run(self, args: Any, state: Any, model: Any, epoch: int, done: bool, kwargs: Dict[str, Any]) -> None:
        train, test = self._data(kwargs)
        # The trainer's own display: its bars are tqdm's, shown on process zero unless
        # `disable_tqdm`; a `progress=` given to the callback wins.
        probe_args = {k: v for k, v in self.probe_args.items() if k != "progress"}
        shown = state.is_world_process_zero and not getattr(args, "disable_tqdm", False)
        progress = self.probe_args.get("progress", shown)
        res, native = _probe(model, train, test, sync=all_gather if _distributed() else None, progress=progress,
                             **probe_args)
        self.last = res
        self.probed_epochs.append(epoch)
        if state.is_world_process_zero:
            metrics = flat_metrics(res)
            if self.trainer is not None:
                self.trainer.log(metrics)
            else:
                state.log_history.append({**metrics, "epoch": epoch, "step": state.global_step})
            folder = self.run_dir or Path(args.output_dir) / "depthprobe"
            native.append_to_run(str(folder), int(epoch), float(res["wall_s"]), done, None)

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        epoch = int(round(state.epoch or 0))
        self._epoch = epoch
        if epoch % self.k == 0:
            self._run(args, state, model, epoch, False, kwargs)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        # After the last epoch, probed or not: this probe marks the run folder done.
        self._run(args, state, model, getattr(self, "_epoch", int(round(state.epoch or 0))), True, kwargs)
