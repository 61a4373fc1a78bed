"""What the trainer callbacks share (no trainer library imported here)."""
from __future__ import annotations

import math
from typing import Any, Dict


def flat_metrics(result: Dict[str, Any]) -> Dict[str, float]:
    """A probe's numbers as flat keys: ``layer_03/ncc_train_acc`` for every number of every layer
    (summary.json's names), ``effective_depth/eps_0.01`` where a layer is separable, and with
    CKA ``cka_block/within_eps_0.01`` and ``cka_block/across_eps_0.01`` where defined."""
    out: Dict[str, float] = {}
    for layer in result["layers"]:
        i = int(layer["layer"])
        for k, v in layer.items():
            if k in ("layer", "dim") or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if math.isfinite(float(v)):
                out[f"layer_{i:02d}/{k}"] = float(v)
    for kind in ("effective_depth", "linear_effective_depth"):
        for eps, d in (result.get(kind) or {}).items():
            if d is not None:
                out[f"{kind}/eps_{eps}"] = float(d)
    for eps, block in ((result.get("cka") or {}).get("block_train") or {}).items():
        for k in ("within", "across"):
            if block.get(k) is not None:
                out[f"cka_block/{k}_eps_{eps}"] = float(block[k])
    return out
