"""depthprobe: layer-by-layer measures of class structure for any PyTorch, JAX or NumPy model.

The numbers come from the same Rust engine as the ``depthprobe`` command line, so they equal
``depthprobe measure`` on the same arrays. NCC decisions need the final train class means, so
data is fed in two passes, always the same way::

    probe = depthprobe.LayerProbe(num_classes=10, layers=4)
    for _ in probe.passes():
        for x, y in train_batches:          # every train batch, each pass
            for layer, emb in enumerate(embeddings_of(x), start=1):
                probe.update_train(layer, emb, y)
        for x, y in test_batches:           # every test batch, each pass
            for layer, emb in enumerate(embeddings_of(x), start=1):
                probe.update_test(layer, emb, y)
    print(probe.result()["effective_depth"])

The two passes are the same two-pass probe the CLI runs (one Rust implementation). Definitions
and conventions of every measure are in ``docs/method.md`` in the repository; result fields in
``docs/result-files.md``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from . import _native
from ._native import DepthprobeError, NativeProbe

__all__ = ["LayerProbe", "DepthprobeError", "read_run", "read_sweep", "weight_spectrum", "DEFAULT_EPS",
           "DEFAULT_RANK_MAX_DIM",
           "DEFAULT_LINEAR_MAX_DIM", "DEFAULT_LINEAR_RIDGE"]
# depthprobe.torch (probing PyTorch models through hooks) is imported on demand: it needs torch.

#: The defaults of the CLI and the configs (one source: the Rust measures crate).
DEFAULT_EPS = tuple(_native.DEFAULT_EPS)
DEFAULT_RANK_MAX_DIM = int(_native.DEFAULT_RANK_MAX_DIM)
DEFAULT_LINEAR_MAX_DIM = int(_native.DEFAULT_LINEAR_MAX_DIM)
DEFAULT_LINEAR_RIDGE = float(_native.DEFAULT_LINEAR_RIDGE)


def weight_spectrum(w: Any, class_means: Any = None) -> Dict[str, Any]:
    """A layer weight's spectrum (docs/method.md, "Weight spectra"): ``singular_values``
    (nonincreasing), ``numerical_rank`` (σᵢ > 1e-3·σ_max), ``stable_rank`` (‖W‖²_F/‖W‖²₂),
    ``effective_rank`` (entropy), and with ``class_means`` (C × in: the class means of the layer's
    input) ``class_mean_alignment``, the mean cosine of the principal angles between W's top-C
    right singular subspace and the span of the centred class means. ``w`` is out × in; reshape a
    convolution's weight to out × in·k·k (``depthprobe.torch.weight_spectra`` does)."""
    w = np.ascontiguousarray(np.asarray(w, dtype=np.float32))
    if w.ndim != 2:
        raise DepthprobeError(f"w has shape {w.shape}: give a 2-D out × in matrix (reshape a convolution's weight)")
    m = None if class_means is None else np.ascontiguousarray(np.asarray(class_means, dtype=np.float64))
    if m is not None and m.ndim != 2:
        raise DepthprobeError(f"class_means has shape {m.shape}: give C × in")
    return json.loads(_native.weight_spectrum(w, m))


def _as_matrix(x: Any, what: str = "x") -> np.ndarray:
    """A NumPy array or CPU tensor as a C-contiguous float32 [N, D] array (no copy when it
    already is one; float64 is converted, as the engine measures float32 embeddings)."""
    if hasattr(x, "detach") and hasattr(x, "device"):  # torch.Tensor
        if getattr(x.device, "type", "cpu") != "cpu":
            raise DepthprobeError(f"{what} is on {x.device}; move it to the CPU first (x.cpu())")
        x = x.detach().numpy()  # shares memory with the tensor
    a = np.asarray(x)  # JAX arrays and anything with __array__ / the buffer protocol
    if a.dtype not in (np.float32, np.float64):
        raise DepthprobeError(f"{what} must be float32 or float64, found {a.dtype}")
    if a.ndim < 2:
        raise DepthprobeError(f"{what} must have shape [N, D] (or [N, ...]), found a {a.ndim}-D array")
    a = a.reshape(a.shape[0], -1)
    return np.ascontiguousarray(a, dtype=np.float32)


def _as_labels(y: Any) -> np.ndarray:
    if hasattr(y, "detach") and hasattr(y, "device"):
        y = y.detach().cpu().numpy()
    a = np.asarray(y)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise DepthprobeError(f"labels must be a 1-D integer array, found shape {a.shape} and dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


class LayerProbe:
    """Streaming per-layer measures of ``layers`` layers (numbered 1..layers).

    Feed data inside ``for _ in probe.passes():`` with :meth:`update_train` and
    :meth:`update_test` (every batch, every pass), then read :meth:`result`.

    Args:
        num_classes: labels run over ``0..num_classes-1``.
        layers: number of layers L.
        eps: ε values for the effective depth.
        classes: measure only these classes (other samples are ignored).
        rank_max_dim: numerical / effective rank for layers of at most this dimension
            (0 = never, the default; they need a D×D Gram matrix).
        linear_max_dim: linear-probe (ridge classifier) accuracy for layers of at most this
            dimension (0 = never, the default): ``linear_train_acc``, ``linear_test_acc`` and
            ``linear_effective_depth`` in the result (docs/method.md, "Linear probe").
        linear_ridge: the ridge's relative regularisation α (λ = α · tr(centred scatter) / D).
        cka: linear CKA between every pair of layers (docs/method.md, "Layer similarity (CKA)"):
            feed every layer of a batch at once with :meth:`update_train_all` /
            :meth:`update_test_all` (CKA pairs the rows of every layer); ``cka`` in the result.
    """

    def __init__(self, num_classes: int, layers: int, eps: Sequence[float] = DEFAULT_EPS,
                 classes: Optional[Sequence[int]] = None, rank_max_dim: int = DEFAULT_RANK_MAX_DIM,
                 linear_max_dim: int = DEFAULT_LINEAR_MAX_DIM, linear_ridge: float = DEFAULT_LINEAR_RIDGE,
                 cka: bool = False) -> None:
        if layers < 1:
            raise DepthprobeError(f"layers = {layers}: need at least one layer")
        self.num_classes = int(num_classes)
        self.layers = int(layers)
        self._eps = [float(e) for e in eps]
        self._classes = None if classes is None else [int(c) for c in classes]
        self._rank_max_dim = int(rank_max_dim)
        self._linear = (int(linear_max_dim), float(linear_ridge))
        self._cka = bool(cka)
        self._native: Optional[NativeProbe] = None
        # Until every layer's dimension is known, the first batches wait here (at most one per layer).
        self._pending: List[tuple] = []
        self._dims: List[Optional[int]] = [None] * self.layers
        self._pass: Optional[int] = None
        self._classifier: Optional[np.ndarray] = None
        self._result: Optional[Dict[str, Any]] = None

    # -- passes ---------------------------------------------------------------------------
    def passes(self, sync: Optional[Callable[[Dict[str, Any]], List[Dict[str, Any]]]] = None) -> Iterator[int]:
        """Yield 0 then 1; feed the same train (and test) batches in each.

        ``sync`` makes data-parallel workers one probe: at the end of each pass it gets this
        worker's statistics (:meth:`take_stats`) and returns every worker's (e.g.
        ``depthprobe.torch.all_gather``); their merge is absorbed, so each worker's result is
        the probe of all the shards together."""
        if self._pass is not None:
            raise DepthprobeError("passes() can run only once per probe")
        for p in (0, 1):
            self._pass = p
            yield p
            self._start()
            if sync is not None:
                self.absorb(self.merge_stats(sync(self.take_stats())))
            if p == 0:
                self._native.next_pass()
        self._pass = 2

    # -- statistics, for data-parallel probes ---------------------------------------------
    def take_stats(self) -> Dict[str, Any]:
        """The statistics fed so far in this pass, taken out of the probe (a dict of NumPy
        arrays: picklable, small: O(C·D + D²) per layer). Merge the workers' with
        :meth:`merge_stats` and give the result to one probe's :meth:`absorb`."""
        self._start()
        return self._native.take_stats()

    def merge_stats(self, parts: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        """One statistics dict from several of the same pass (the shards')."""
        self._start()
        return self._native.merge_stats(list(parts))

    def absorb(self, stats: Dict[str, Any]) -> None:
        """Add statistics of this pass (from :meth:`take_stats` or :meth:`merge_stats`)."""
        self._start()
        self._native.absorb(stats)

    def _start(self) -> None:
        if self._native is not None:
            return
        missing = [i + 1 for i, d in enumerate(self._dims) if d is None]
        if missing:
            raise DepthprobeError(f"layer(s) {missing} received no train data in pass 0")
        self._native = NativeProbe(self.num_classes, list(self._dims), self._eps, self._classes, self._rank_max_dim,
                                   *self._linear, self._cka)
        if self._classifier is not None:
            self._native.set_classifier(self._classifier)
        pending, self._pending = self._pending, []
        for train, layer, x, y in pending:
            self._native.update(train, layer, x, y)

    def _check_pass(self) -> None:
        if self._pass not in (0, 1):
            raise DepthprobeError("feed data inside `for _ in probe.passes():`")

    def _layer_matrix(self, layer: int, x: Any, ya: np.ndarray, where: str = "") -> np.ndarray:
        """``x`` as layer ``layer``'s float32 [N, D] rows, checked against the labels' count and
        the dimension its earlier batches had (the first batch sets it)."""
        xm = _as_matrix(x)
        if xm.shape[0] != ya.shape[0]:
            raise DepthprobeError(f"{where}x has {xm.shape[0]} rows but y has {ya.shape[0]} labels")
        d = self._dims[layer - 1]
        if d is None:
            self._dims[layer - 1] = xm.shape[1]
        elif d != xm.shape[1]:
            raise DepthprobeError(f"layer {layer}: batch has dimension {xm.shape[1]}, earlier batches had {d}")
        return xm

    def _update(self, train: bool, layer: int, x: Any, y: Any) -> None:
        self._check_pass()
        if self._cka:
            raise DepthprobeError("with cka=True, feed every layer of a batch at once (update_train_all, "
                                  "update_test_all): CKA pairs the rows of every layer")
        if not 1 <= layer <= self.layers:
            raise DepthprobeError(f"layer {layer} does not exist: the probe has layers 1..={self.layers}")
        ya = _as_labels(y)
        xm = self._layer_matrix(layer, x, ya)
        if self._native is None and None in self._dims:
            self._pending.append((train, layer, xm.copy(), ya.copy()))
            return
        self._start()
        self._native.update(train, layer, xm, ya)

    def update_train(self, layer: int, x: Any, y: Any) -> None:
        """Feed train embeddings of ``layer`` (1-based): ``x`` [N, D] or [N, ...], ``y`` [N]."""
        self._update(True, layer, x, y)

    def update_test(self, layer: int, x: Any, y: Any) -> None:
        """Feed test embeddings of ``layer`` (1-based)."""
        self._update(False, layer, x, y)

    def _update_all(self, train: bool, xs: Sequence[Any], y: Any) -> None:
        self._check_pass()
        if len(xs) != self.layers:
            raise DepthprobeError(f"{len(xs)} layer batches for a probe of {self.layers} layers")
        ya = _as_labels(y)
        ms = [self._layer_matrix(i + 1, x, ya, f"layer {i + 1}: ") for i, x in enumerate(xs)]
        self._start()
        self._native.update_all(train, ms, ya)

    def update_train_all(self, xs: Sequence[Any], y: Any) -> None:
        """Feed train embeddings of every layer of one batch at once: ``xs[i]`` is layer i+1,
        each [N, D_i] (or [N, ...]), ``y`` [N]. Needed with ``cka=True``."""
        self._update_all(True, xs, y)

    def update_test_all(self, xs: Sequence[Any], y: Any) -> None:
        """Feed test embeddings of every layer of one batch at once."""
        self._update_all(False, xs, y)

    def set_classifier(self, weight: Any) -> None:
        """Top-layer classifier weight [num_classes, D_L], for NC3 (call before feeding)."""
        self._classifier = _as_matrix(weight, "weight")
        if self._native is not None:
            self._native.set_classifier(self._classifier)

    def update_logits(self, x_top: Any, logits: Any, y: Any, train: bool = True) -> None:
        """NC4: the top layer's embeddings with the network's logits. Used in pass 1 only
        (it needs the final train means); calls in pass 0 are ignored."""
        if self._pass == 0:
            return
        self._check_pass()
        self._native.update_agreement(train, _as_matrix(x_top), _as_matrix(logits, "logits"), _as_labels(y))

    # -- results --------------------------------------------------------------------------
    def result(self) -> Dict[str, Any]:
        """The same fields as summary.json: ``layers`` (per-layer dicts), ``effective_depth``
        ({"0.01": k or None, ...}), ``fuzziness_fit``, ``num_classes``, ``classes``, ..."""
        if self._result is None:
            if self._pass != 2:
                raise DepthprobeError("result() is available after both passes")
            self._result = json.loads(self._native.finish_json())
        return self._result

    def to_frame(self):
        """Per-layer results as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.result()["layers"]).set_index("layer")


def _rows_table(rows: List[Dict[str, Any]]):
    try:
        import pandas as pd

        return pd.DataFrame(rows)
    except ImportError:
        return rows


def _csv_table(f: Path):
    try:
        import pandas as pd

        return pd.read_csv(f)
    except ImportError:
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            for k, v in r.items():
                try:
                    r[k] = float(v) if v not in ("", None) else None
                except ValueError:
                    pass
        return rows


def read_run(path: Any) -> Dict[str, Any]:
    """Load a run, probe or measure folder, or a CSV such as a sweep's ``results.csv``.

    A folder gives ``summary`` (summary.json as a dict) and ``metrics`` (metrics.csv with the
    columns epoch, layer, split, metric, value; epoch is absent for ``measure``). Both are read
    through the same typed reader the CLI uses, so a malformed file is refused with the file
    named. Tables are pandas DataFrames when pandas is installed, else lists of dicts."""
    p = Path(path)
    if p.is_file():
        return {"table": _csv_table(p)}
    text = _native.read_summary(str(p))
    if text is None:
        raise DepthprobeError(f"{p}: no summary.json here (not a depthprobe run or measure folder)")
    out: Dict[str, Any] = {"summary": json.loads(text)}
    if (p / "metrics.csv").exists():
        rows = _native.read_metrics(str(p / "metrics.csv"))
        with_epoch = any(r[0] is not None for r in rows)
        keys = (["epoch"] if with_epoch else []) + ["layer", "split", "metric", "value"]
        out["metrics"] = _rows_table([dict(zip(keys, r if with_epoch else r[1:])) for r in rows])
    return out


def read_sweep(path: Any) -> Dict[str, Any]:
    """Load a sweep folder: ``plan`` (plan.json), and after ``depthprobe report DIR`` the
    aggregated tables ``results`` (one row per run), ``layers`` (final per-layer values) and,
    for a bound sweep, ``bound``. Tables are DataFrames when pandas is installed."""
    p = Path(path)
    if not (p / "plan.json").exists():
        raise DepthprobeError(f"{p}: no plan.json here (plan it with `depthprobe sweep plan SWEEP.toml --out {p}`)")
    out: Dict[str, Any] = {"plan": json.loads((p / "plan.json").read_text())}
    rep = p / "report"
    if not (rep / "results.csv").exists():
        raise DepthprobeError(f"{p}: no report/results.csv yet; run `depthprobe report {p}`")
    for name in ("results", "layers", "bound"):
        if (rep / f"{name}.csv").exists():
            out[name] = _csv_table(rep / f"{name}.csv")
    return out
