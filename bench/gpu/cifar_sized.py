#!/usr/bin/env python3
"""CIFAR-10-sized data in the official binary layout, for the probe-memory check on a machine
that cannot hold the real set (the device tool carries 64 MiB; CIFAR-10 is 163 MB): 50,000 train
and 10,000 test records of a label byte and 3×32×32 pixels, five data_batch files and a
test_batch. Each class is a random mean image plus pixel noise, so a network can learn it.
Memory and time of a probe do not depend on the pixel values.

usage: cifar_sized.py DEST   (writes DEST/cifar-10-batches-bin/)
"""
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1]) / "cifar-10-batches-bin"
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
means = rng.integers(40, 216, (10, 3072))
for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    y = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), 1_000))  # balanced, as CIFAR-10
    x = np.clip(means[y] + rng.normal(0, 40, (10_000, 3072)), 0, 255).astype(np.uint8)
    (out / f"{name}.bin").write_bytes(np.concatenate([y[:, None], x], 1).tobytes())
print(f"wrote {out}: 50,000 train + 10,000 test records")
