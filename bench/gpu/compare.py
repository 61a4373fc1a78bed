#!/usr/bin/env python3
"""Compare two probes of the same checkpoint (GPU against CPU): every layer's NCC train/test
accuracy within 0.005 and CDNV train/test within 1e-3 relative. Exit 1 on any violation."""
import json
import sys


def main(a, b):
    sa = json.load(open(f"{a}/summary.json"))
    sb = json.load(open(f"{b}/summary.json"))
    worst_ncc, worst_cdnv, bad = 0.0, 0.0, []
    for la, lb in zip(sa["layers"], sb["layers"]):
        for k in ("ncc_train_acc", "ncc_test_acc"):
            d = abs(la[k] - lb[k])
            worst_ncc = max(worst_ncc, d)
            if d > 0.005:
                bad.append(f"layer {la['layer']} {k}: {la[k]} vs {lb[k]}")
        for k in ("cdnv_train", "cdnv_test"):
            x, y = float(la[k]), float(lb[k])
            r = abs(x - y) / max(abs(y), 1e-30)
            worst_cdnv = max(worst_cdnv, r)
            if r > 1e-3:
                bad.append(f"layer {la['layer']} {k}: {x} vs {y} (relative {r:.2e})")
    print(f"{a} vs {b}: {len(sa['layers'])} layers, largest NCC difference {worst_ncc:.4g}, "
          f"largest CDNV relative difference {worst_cdnv:.3g}, effective depth {sa['effective_depth']} vs {sb['effective_depth']}")
    for line in bad:
        print("  FAIL", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
