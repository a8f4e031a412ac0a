#!/usr/bin/env python3
"""Checks torch_dgd.nb_nll (the PyTorch side's NB likelihood) against scipy.stats.nbinom on a
grid of counts k, means m and dispersions r, in float64 and float32 — the same kind of grid
crates/perturbgen/tests/model.rs checks pgen-train's fused NB op on (against statrs), so both
sides compute the same function. Prints one JSON line; exits 1 on a mismatch."""
import json
import math
import os
import sys

import numpy as np
import torch
from scipy.stats import nbinom

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_dgd import nb_nll  # noqa: E402

KS = [0, 1, 2, 5, 17, 100, 1000, 30000]
MS = [1e-3, 0.1, 1.0, 7.5, 100.0, 2000.0]
RS = [1.05, 2.0, 10.0, 1000.0]


def main():
    worst = {}
    # float32: lgamma(k + r) − lgamma(k + 1) cancels at large k (~7e-4 relative at k = 30,000);
    # pgen-train's op does its arithmetic in f64 for that reason.
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        w = (0.0, None)
        for r in RS:
            theta = torch.tensor([math.log(r - 1.0)], dtype=dtype)  # r = exp θ + 1
            for m in MS:
                # M = 2m with logit 0 (sigmoid 1/2), as in the Rust test grid.
                scale = torch.tensor([2.0 * m] * len(KS), dtype=dtype)
                logits = torch.zeros(len(KS), 1, dtype=dtype)
                x = torch.tensor(KS, dtype=dtype).unsqueeze(1)
                ours = nb_nll(x, logits, scale, theta).double().numpy()
                ref = -nbinom.logpmf(KS, r, r / (r + m))
                rel = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-6)
                i = int(rel.argmax())
                if rel[i] > w[0]:
                    w = (float(rel[i]), {"k": KS[i], "m": m, "r": r, "torch": float(ours[i]), "scipy": float(ref[i])})
        worst[str(dtype).replace("torch.", "")] = {"max_rel_err": w[0], "tolerance": tol, "at": w[1], "ok": w[0] < tol}
    print(json.dumps(worst))
    return 0 if all(v["ok"] for v in worst.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
