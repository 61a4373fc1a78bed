"""Probe any PyTorch model: forward hooks on named modules, reductions on the model's device.

    import depthprobe.torch
    res = depthprobe.torch.probe(model, train_loader, test_loader,
                                 layers=["layer1", "layer2", "layer3", "layer4", "avgpool"],
                                 num_classes=10, pool="avg")
    res["effective_depth"], res["layers"][0]["ncc_train_acc"], res["layer_names"]

Each requested module's output is the embedding of one layer. Per batch, only per-class
statistics are computed on the model's device, in float64 (class counts, means and squared
deviations, NCC decisions against the train means, the within-class scatter projected on the
between-class subspace, and a Gram matrix for small layers): O(C·D + D²) per layer, never the
embeddings, reach the host. The Rust engine of the CLI turns them into the measures, so the
numbers equal ``depthprobe measure`` on the same embeddings up to summation order.

Data-parallel probing: pass ``sync=depthprobe.torch.all_gather`` (torch.distributed) or any
function that takes this worker's statistics and returns every worker's; each worker feeds its
shard and all get the result of one probe over all the data (docs/python.md).

Definitions of every measure: ``docs/method.md`` in the repository.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as e:  # the rest of the package works without PyTorch
    raise ImportError("depthprobe.torch probes PyTorch models and needs PyTorch: pip install torch") from e

from . import DEFAULT_EPS, DEFAULT_LINEAR_MAX_DIM, DEFAULT_LINEAR_RIDGE, DEFAULT_RANK_MAX_DIM, DepthprobeError
from ._native import NativeProbe

__all__ = ["probe", "auto_layers", "pool_output", "all_gather", "ProbeEvery", "weight_spectra"]

_POOLS = ("flatten", "avg", "cls", "mean")

Stats = Dict[str, Any]


class _Stop(Exception):
    """Raised from the last needed hook: the rest of the forward pass is not computed."""


def _first_tensor(out: Any, where: str) -> torch.Tensor:
    """The embedding in a module's output: the tensor itself, or the first tensor of a tuple,
    list, dict (Hugging Face's ModelOutput is one) or dataclass."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        items: Iterable[Any] = out.values()
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        items = (getattr(out, f.name) for f in dataclasses.fields(out))
    elif isinstance(out, (tuple, list)):
        items = out
    else:
        raise DepthprobeError(f"{where}: output of type {type(out).__name__} holds no tensor")
    for v in items:
        if v is None:
            continue
        try:
            return _first_tensor(v, where)
        except DepthprobeError:
            continue
    raise DepthprobeError(f"{where}: output of type {type(out).__name__} holds no tensor")


def pool_output(t: torch.Tensor, pool: str, module: Optional[nn.Module] = None) -> torch.Tensor:
    """A module's output as [N, D]. ``flatten``: every feature (the paper's choice). ``avg``:
    the mean over spatial axes ([N, C, *spatial] from a convolution or pooling layer) or over
    tokens ([N, T, D] otherwise). ``cls``: the first token. ``mean``: the mean over tokens."""
    if pool not in _POOLS:
        raise DepthprobeError(f"pool = {pool!r}: choose one of {', '.join(_POOLS)}")
    if t.dim() < 2:
        raise DepthprobeError(f"an embedding needs a batch axis and features; got shape {tuple(t.shape)}")
    if t.dim() == 2 or pool == "flatten":
        return t.reshape(t.shape[0], -1)
    channels_first = t.dim() >= 4 or isinstance(module, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.BatchNorm1d))
    if pool == "avg":
        return t.mean(dim=tuple(range(2, t.dim()))) if channels_first else t.mean(dim=1)
    if t.dim() != 3 or channels_first:
        raise DepthprobeError(f"pool = {pool!r} takes token outputs [N, T, D]; got shape {tuple(t.shape)}")
    return t[:, 0] if pool == "cls" else t.mean(dim=1)


_BLOCK_PARENTS = (nn.Sequential, nn.ModuleList)


def auto_layers(model: nn.Module) -> List[str]:
    """Every Linear and convolution, and every block (a module with parameters and children
    that sits in a Sequential or ModuleList), in ``named_modules`` order."""
    parents = {n: m for n, m in model.named_modules()}
    out = []
    for name, m in model.named_modules():
        if not name:
            continue
        parent = parents.get(name.rsplit(".", 1)[0] if "." in name else "")
        is_block = (
            isinstance(parent, _BLOCK_PARENTS)
            and any(True for _ in m.children())
            and any(True for _ in m.parameters())
            and not isinstance(m, _BLOCK_PARENTS)
        )
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) or is_block:
            out.append(name)
    return out


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    return x


def _call(model: nn.Module, x: Any) -> Any:
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


class _Reducer:
    """One pass's statistics on the device, in the layout of ``NativeProbe.plan()`` and
    ``absorb``: the arithmetic of the engine's device reduction (f64, Chan's merge per batch,
    distances in GEMM form, the lowest class on ties)."""

    def __init__(self, plan: Dict[str, Any], device: torch.device) -> None:
        self.plan, self.device = plan, device
        self.splits: Dict[str, Dict[str, Any]] = {}
        self.class_map = {
            s: torch.tensor(plan[s]["class_map"], dtype=torch.long, device=device) for s in ("train", "test")
        }
        self.labels = torch.tensor(plan["train"]["classes"], dtype=torch.long, device=device)

    def _start(self, split: str) -> Dict[str, Any]:
        sp, dev, f64 = self.plan[split], self.device, torch.float64
        c = len(sp["classes"])
        layers = []
        for lp in sp["layers"]:
            d = lp["dim"]
            acc: Dict[str, Any] = {"dim": d}
            if lp["moments"]:
                acc["moments"] = [torch.zeros(c, dtype=f64, device=dev), torch.zeros(c, d, dtype=f64, device=dev),
                                  torch.zeros(c, dtype=f64, device=dev)]
            if lp["gram"]:
                acc["gram"] = torch.zeros(d, d, dtype=f64, device=dev)
            ops = lp["decisions"]
            if ops is not None:
                r = ops["rank"]
                acc["ops"] = (torch.as_tensor(ops["joint"], dtype=f64, device=dev),
                              torch.as_tensor(ops["mean_proj"], dtype=f64, device=dev),
                              torch.as_tensor(ops["mean_sq_norms"], dtype=f64, device=dev), r)
                acc["correct"] = torch.zeros((), dtype=torch.long, device=dev)
                acc["linear_correct"] = torch.zeros((), dtype=torch.long, device=dev)
                if ops["linear_bias"] is not None:  # the last C columns of joint are the ridge weights
                    acc["linear_bias"] = torch.as_tensor(ops["linear_bias"], dtype=f64, device=dev)
                if lp["within"]:
                    acc["within"] = torch.zeros(r, r, dtype=f64, device=dev)
            layers.append(acc)
        if sp.get("cka"):
            nl = len(layers)
            # Rows held since the last CKA minibatch, per layer, and the HSIC sums.
            layers_cka = {"held": [[] for _ in range(nl)], "n": 0, "batches": 0, "rows": 0,
                          "hsic": torch.zeros(nl, nl, dtype=f64, device=dev), "batch_rows": sp["cka_batch_rows"]}
        else:
            layers_cka = None
        return {"layers": layers, "rows": 0, "cka": layers_cka,
                "counted": torch.zeros((), dtype=torch.long, device=dev),
                "agree": torch.zeros((), dtype=torch.long, device=dev),
                "agree_total": torch.zeros((), dtype=torch.long, device=dev)}

    def update(self, split: str, embeddings: List[torch.Tensor], y: torch.Tensor,
               logits: Optional[torch.Tensor] = None) -> None:
        acc = self.splits.get(split) or self.splits.setdefault(split, self._start(split))
        sp = self.plan[split]
        c = len(sp["classes"])
        y = y.to(self.device).long().reshape(-1)
        n = y.shape[0]
        bad = (y < 0) | (y >= sp["num_classes"])
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0])
            raise DepthprobeError(
                f"{split}: label {int(y[row])} at row {acc['rows'] + row} is out of range for "
                f"{sp['num_classes']} classes")
        idx = self.class_map[split][y]
        keep = idx >= 0
        all_kept = bool(keep.all())
        idx = idx.clamp(min=0)
        onehot = torch.nn.functional.one_hot(idx, c).to(torch.float64)
        if not all_kept:
            onehot = onehot * keep.unsqueeze(1)
        acc["rows"] += n
        top = len(acc["layers"]) - 1
        pred_top = None
        cka = acc["cka"]
        for i, (la, e) in enumerate(zip(acc["layers"], embeddings)):
            x = e.to(torch.float64)
            if cka is not None:  # the measured rows, held until a minibatch is whole
                cka["held"][i].append(x if all_kept else x[keep])
            if "moments" in la:
                counts, means, m2 = la["moments"]
                nb = onehot.sum(0)
                mb = (onehot.T @ x) / nb.clamp(min=1).unsqueeze(1)
                diff = x - onehot @ mb
                m2b = onehot.T @ diff.square().sum(1)
                tot = counts + nb
                delta = mb - means
                inv = tot.clamp(min=1).reciprocal()
                means += delta * (nb * inv).unsqueeze(1)
                m2 += m2b + delta.square().sum(1) * counts * nb * inv
                counts.copy_(tot)
            if "gram" in la:
                xm = x if all_kept else x * keep.unsqueeze(1)
                la["gram"] += xm.T @ xm
            if "ops" in la:
                joint, mean_proj, msq, r = la["ops"]
                scores = x @ joint
                dist = x.square().sum(1, keepdim=True) - 2.0 * scores[:, :c] + msq.unsqueeze(0)
                pred = dist.argmin(1)
                la["correct"] += ((pred == idx) & keep).sum()
                if "linear_bias" in la:
                    lin = scores[:, c + r:c + r + c] + la["linear_bias"].unsqueeze(0)
                    la["linear_correct"] += ((lin.argmax(1) == idx) & keep).sum()
                if "within" in la and r > 0:
                    p = scores[:, c:c + r] - onehot @ mean_proj
                    if not all_kept:
                        p = p * keep.unsqueeze(1)
                    la["within"] += p.T @ p
                if i == top:
                    pred_top = pred
        if cka is not None:
            cka["n"] += n if all_kept else int(keep.sum())
            b = cka["batch_rows"]
            while cka["n"] >= b:
                whole = [torch.cat(h) for h in cka["held"]]
                _cka_batch(cka, [x[:b] for x in whole])
                cka["held"] = [[x[b:]] for x in whole]
                cka["n"] -= b
        if pred_top is not None:
            acc["counted"] += keep.sum()
            if logits is not None:  # NC4 only over rows the network's logits were seen for
                net = logits.reshape(n, -1).argmax(1)
                acc["agree"] += ((self.labels[pred_top] == net) & keep).sum()
                acc["agree_total"] += keep.sum()

    def stats(self) -> Stats:
        """This pass's statistics on the host, as ``NativeProbe.absorb`` takes them."""
        out: Stats = {}
        for split in ("train", "test"):
            sp = self.plan[split]
            acc = self.splits.get(split) or self._start(split)
            counted = int(acc["counted"])
            layers = []
            for lp, la in zip(sp["layers"], acc["layers"]):
                host = lambda t: t.detach().cpu().numpy()  # noqa: E731
                m = la.get("moments")
                layers.append({
                    "rows": acc["rows"],
                    "moments": None if m is None else {"counts": host(m[0]), "means": host(m[1]), "m2": host(m[2])},
                    "gram": host(la["gram"]) if "gram" in la else None,
                    "decisions": (int(la["correct"]), counted, int(la["linear_correct"])) if "ops" in la else None,
                    "within": {"sum": host(la["within"]) if "within" in la else np.zeros((0, 0)), "count": counted}
                    if lp["within"] else None,
                })
            cka = acc["cka"]
            if cka is not None and cka["n"] >= sp["cka_min_rows"]:  # the last, shorter minibatch
                _cka_batch(cka, [torch.cat(h) for h in cka["held"]])
                cka["held"], cka["n"] = [[] for _ in cka["held"]], 0
            out[split] = {"layers": layers, "agreement": (int(acc["agree"]), int(acc["agree_total"])) if sp["agreement"] else None,
                          "cka": None if cka is None else {"hsic": cka["hsic"].cpu().numpy(), "batches": cka["batches"],
                                                          "rows": cka["rows"]}}
        return out


def _cka_batch(cka: Dict[str, Any], xs: List[torch.Tensor]) -> None:
    """One CKA minibatch: every layer's Gram matrix with a zero diagonal, then every pair's
    unbiased HSIC₁ (Song et al. 2012), added to the sums."""
    n = xs[0].shape[0]
    grams = []
    for x in xs:
        g = x @ x.T
        g.fill_diagonal_(0.0)
        grams.append(g.reshape(1, -1))
    g = torch.cat(grams)
    rows = g.reshape(len(xs), n, n).sum(2)
    tot = rows.sum(1, keepdim=True)
    h = (g @ g.T + (tot @ tot.T) / ((n - 1) * (n - 2)) - (rows @ rows.T) * (2.0 / (n - 2))) / (n * (n - 3))
    cka["hsic"] += h
    cka["batches"] += 1
    cka["rows"] += n


def all_gather(stats: Stats, group: Any = None) -> List[Stats]:
    """Every worker's statistics, through ``torch.distributed.all_gather_object`` (any backend;
    the statistics are small). For ``sync=`` of :func:`probe` and ``LayerProbe.passes``."""
    import torch.distributed as dist

    parts: List[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(parts, stats, group=group)
    return parts


def _progress_bar(progress: Any, train: Iterable[Any], test: Iterable[Any]) -> Any:
    """A bar over both passes of ``train`` and ``test`` (its total when both have a length):
    ``progress(total)`` when ``progress`` is a function that makes one (a trainer's own display:
    an object with tqdm's ``update``, ``set_postfix_str``, ``refresh`` and ``close``), a tqdm bar
    when it is True, or None: not asked for, or tqdm not installed (a probe never needs it)."""
    if not progress:
        return None
    try:
        total: Optional[int] = 2 * (len(train) + len(test))  # type: ignore[arg-type]
    except TypeError:
        total = None
    if callable(progress):
        return progress(total)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="depthprobe probe", unit="batch", leave=False)


def probe(model: nn.Module, train: Iterable[Any], test: Iterable[Any], *,
          layers: Union[str, Sequence[str]], num_classes: int, pool: str = "flatten",
          device: Union[str, torch.device, None] = None, eps: Sequence[float] = DEFAULT_EPS,
          classes: Optional[Sequence[int]] = None, rank_max_dim: int = DEFAULT_RANK_MAX_DIM,
          linear_max_dim: int = DEFAULT_LINEAR_MAX_DIM, linear_ridge: float = DEFAULT_LINEAR_RIDGE,
          logits: bool = False, sync: Optional[Callable[[Stats], List[Stats]]] = None,
          progress: Any = False, cka: bool = False) -> Dict[str, Any]:
    """Per-layer measures of ``model`` on ``train`` and ``test`` (iterables of ``(x, y)`` batches
    that can be iterated twice, e.g. DataLoaders; ``x`` a tensor, tuple or dict of inputs).

    Args:
        layers: module names as in ``model.named_modules()``, in the order of the layers; the
            module's output is the embedding. ``"auto"``: every Linear, convolution and block
            (:func:`auto_layers`).
        num_classes: labels run over ``0..num_classes-1``.
        pool: ``flatten``, ``avg``, ``cls`` or ``mean`` (:func:`pool_output`).
        device: where the model runs and the statistics are reduced (default: the device of
            the model's first parameter).
        eps, classes, rank_max_dim, linear_max_dim, linear_ridge: as for ``LayerProbe`` (the
            linear probe, off by default, adds ``linear_train_acc`` / ``linear_test_acc``).
        logits: run each forward pass to the end and take the model's output as logits, for NC4
            (otherwise the forward pass stops after the last requested layer and NC4 is absent).
        sync: data-parallel workers: a function that takes this worker's statistics and returns
            every worker's (``all_gather``); each worker then gets the probe of all the data.
        progress: show a progress bar over the two passes' batches (train and test) on stderr,
            with tqdm when it is installed (without tqdm nothing is shown); or a function of the
            total that returns a tqdm-like bar, to draw in a display of your own.
        cka: linear CKA between every pair of layers, on train and test (the unbiased minibatch
            estimator over minibatches of 256 rows, computed on ``device``; docs/method.md,
            "Layer similarity (CKA)"): ``cka`` in the result, and ``cka_top_train`` /
            ``cka_top_test`` per layer.

    Returns the fields of ``summary.json`` (``layers``, ``effective_depth``, ...), plus
    ``layer_names``: the module of each layer, in order. The model's train/eval mode is restored.
    """
    return _probe(model, train, test, layers=layers, num_classes=num_classes, pool=pool, device=device, eps=eps,
                  classes=classes, rank_max_dim=rank_max_dim, linear_max_dim=linear_max_dim,
                  linear_ridge=linear_ridge, logits=logits, sync=sync, progress=progress, cka=cka)[0]


def _probe(model: nn.Module, train: Iterable[Any], test: Iterable[Any], *,
          layers: Union[str, Sequence[str]], num_classes: int, pool: str = "flatten",
          device: Union[str, torch.device, None] = None, eps: Sequence[float] = DEFAULT_EPS,
          classes: Optional[Sequence[int]] = None, rank_max_dim: int = DEFAULT_RANK_MAX_DIM,
          linear_max_dim: int = DEFAULT_LINEAR_MAX_DIM, linear_ridge: float = DEFAULT_LINEAR_RIDGE,
          logits: bool = False, sync: Optional[Callable[[Stats], List[Stats]]] = None,
          progress: Any = False, cka: bool = False) -> Any:
    """The work of :func:`probe`; also returns the native probe (its result object)."""
    names = auto_layers(model) if isinstance(layers, str) and layers == "auto" else list(layers)
    if isinstance(layers, str) and layers != "auto":
        raise DepthprobeError(f"layers = {layers!r}: give a list of module names or \"auto\"")
    if not names:
        raise DepthprobeError("no layers to probe")
    if pool not in _POOLS:
        raise DepthprobeError(f"pool = {pool!r}: choose one of {', '.join(_POOLS)}")
    modules = dict(model.named_modules())
    for n in names:
        if n not in modules:
            near = difflib.get_close_matches(n, [m for m in modules if m], n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise DepthprobeError(f"layer {n!r} is not a module of the model{hint} (see model.named_modules())")
    if len(set(names)) != len(names):
        raise DepthprobeError(f"a module is listed twice in layers: {names}")
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)

    captured: Dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if name in captured:  # a module called twice in one forward: its first output
                return
            captured[name] = pool_output(_first_tensor(output, name), pool, module)
            if not logits and len(captured) == len(names):
                raise _Stop()
        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in names]
    bar = _progress_bar(progress, train, test)
    was_training = model.training
    native: Optional[NativeProbe] = None
    t0 = time.perf_counter()
    try:
        model.eval()
        with torch.no_grad():
            seen0 = {"train": 0, "test": 0}
            for p in (0, 1):
                reducer: Optional[_Reducer] = None if native is None else _Reducer(native.plan(), device)
                for split, data in (("train", train), ("test", test)):
                    batches = 0
                    for batch in data:
                        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                            raise DepthprobeError(f"{split}: each batch must be an (x, y) pair")
                        x, y = batch
                        captured.clear()
                        out = None
                        try:
                            out = _call(model, _to(x, device))
                        except _Stop:
                            pass
                        missing = [n for n in names if n not in captured]
                        if missing:
                            raise DepthprobeError(f"modules {missing} did not run in the forward pass")
                        embs = [captured[n] for n in names]
                        lg = _first_tensor(out, "model output") if logits and out is not None else None
                        batches += 1
                        if bar is not None:
                            bar.set_postfix_str(f"pass {p + 1}/2, {split}", refresh=False)
                            bar.update(1)
                        if native is None:
                            dims = [int(e.shape[1]) for e in embs]
                            native = NativeProbe(int(num_classes), dims, [float(e) for e in eps],
                                                 None if classes is None else [int(c) for c in classes],
                                                 int(rank_max_dim), int(linear_max_dim), float(linear_ridge),
                                                 bool(cka))
                            reducer = _Reducer(native.plan(), device)
                        reducer.update(split, embs, y, lg)
                    if p == 0:
                        seen0[split] = batches
                    elif batches != seen0[split]:
                        raise DepthprobeError(
                            f"{split}: {seen0[split]} batches in the first pass, {batches} in the second; "
                            "pass something that iterates the same way twice (a DataLoader or a list), "
                            "not a generator")
                if native is None:
                    raise DepthprobeError("train gave no batch")
                stats = reducer.stats()
                if sync is not None:
                    stats = native.merge_stats(sync(stats))
                native.absorb(stats)
                if p == 0:
                    native.next_pass()
            result = json.loads(native.finish_json())
    finally:
        if bar is not None:
            bar.refresh()  # the final count, which tqdm's rate limit may have skipped
            bar.close()
        for h in handles:
            h.remove()
        model.train(was_training)
    result["layer_names"] = names
    result["wall_s"] = time.perf_counter() - t0
    return result, native


def weight_spectra(model: nn.Module, layers: Union[str, Sequence[str]] = "auto",
                   class_means: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """The weight spectrum of each named module (``depthprobe.weight_spectrum``): a Linear's
    weight as out × in, a convolution's reshaped to out × in·k·k (a grouped one per group, the
    groups' blocks side by side as rows). ``layers="auto"``: every Linear and convolution.
    ``class_means``: module name → the class means of that module's input (C × in, or C × in·k·k
    for a convolution: its input patches' means), for the alignment."""
    from . import weight_spectrum

    modules = dict(model.named_modules())
    if isinstance(layers, str):
        if layers != "auto":
            raise DepthprobeError(f"layers = {layers!r}: give a list of module names or \"auto\"")
        names = [n for n, m in modules.items() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    else:
        names = list(layers)
    out: Dict[str, Dict[str, Any]] = {}
    for n in names:
        m = modules.get(n)
        w = getattr(m, "weight", None) if m is not None else None
        if not isinstance(w, torch.Tensor) or w.dim() < 2:
            raise DepthprobeError(f"layer {n!r} has no weight matrix (a Linear or a convolution is needed)")
        mat = w.detach().to("cpu", torch.float32).reshape(w.shape[0], -1).numpy()
        out[n] = weight_spectrum(mat, None if class_means is None else class_means.get(n))
    return out


class ProbeEvery:
    """Probe during your own training loop and keep the results in a run folder that
    ``depthprobe.read_run`` reads (summary.json holds the latest probe, metrics.csv one block
    per probed epoch, as the CLI writes them)::

        every = depthprobe.torch.ProbeEvery("runs/my-resnet", model, train_eval, test_eval,
                                            layers="auto", num_classes=10, k=5)
        for epoch in range(1, epochs + 1):
            train_one_epoch(...)
            every(epoch)            # probes at epochs 5, 10, ... and at ``every.finish(epoch)``

    Probing again at an epoch already in metrics.csv replaces that block (a rerun after a crash).
    """

    def __init__(self, run_dir: Union[str, Path], model: nn.Module, train: Iterable[Any], test: Iterable[Any],
                 *, k: int = 1, **probe_args: Any) -> None:
        if k < 1:
            raise DepthprobeError(f"k = {k}: probe every k ≥ 1 epochs")
        self.run_dir, self.model, self.train, self.test, self.k = Path(run_dir), model, train, test, k
        self.probe_args = probe_args
        self.last: Optional[Dict[str, Any]] = None

    def __call__(self, epoch: int, **network: float) -> Optional[Dict[str, Any]]:
        """Probe when ``epoch`` is a multiple of k. ``network`` optionally records the
        network's own ``train_acc``, ``test_acc``, ``train_loss``, ``test_loss`` beside the
        probe (the figures draw its accuracy dashed), as a CLI training run does."""
        return self._probe(epoch, False, network) if epoch % self.k == 0 else None

    def finish(self, epoch: int, **network: float) -> Dict[str, Any]:
        """Probe at the last epoch and mark the run done."""
        return self._probe(epoch, True, network)

    def _probe(self, epoch: int, done: bool, network: Dict[str, float]) -> Dict[str, Any]:
        keys = ("train_acc", "test_acc", "train_loss", "test_loss")
        unknown = set(network) - set(keys)
        if unknown:
            raise DepthprobeError(f"unknown network metric(s) {sorted(unknown)}: give any of {', '.join(keys)}")
        net = tuple(float(network.get(k, float("nan"))) for k in keys) if network else None
        res, native = _probe(self.model, self.train, self.test, **self.probe_args)
        native.append_to_run(str(self.run_dir), int(epoch), float(res["wall_s"]), done, net)
        self.last = res
        return res
