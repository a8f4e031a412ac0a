"""The Python side of the XGBoost benchmark: the same per-gene fits pgen-xgb does (one-hot cell
type + compound, same column order, same parameters, XGBoost 1.6.2), one `xgboost.train` per
gene. Parallelism as a Python user would get it: XGBoost's own threads (nthread = THREADS)
inside a loop over genes (`--mode loop`), or a process pool of THREADS single-threaded workers
(`--mode pool`). Writes the predictions (de_train layout) and prints the fit time.

    python bench/xgb/python_xgb.py --de-train D --targets T --out P [--mode loop|pool] [--rounds 100]
"""
import argparse
import multiprocessing as mp
import os
import time

import numpy as np
import pandas as pd
import xgboost

KEYS = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]

ap = argparse.ArgumentParser()
ap.add_argument("--de-train", required=True)
ap.add_argument("--targets", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--rounds", type=int, default=100)
ap.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", 2)))
ap.add_argument("--mode", choices=["loop", "pool"], default="loop")
a = ap.parse_args()

# pgen-xgb defaults (base_score 0: pgen-xgb's default; XGBoost's own is 0.5).
PARAMS = {"objective": "reg:squarederror", "eta": 0.3, "max_depth": 6, "min_child_weight": 1.0,
          "subsample": 1.0, "colsample_bytree": 1.0, "lambda": 1.0, "alpha": 0.0, "gamma": 0.0,
          "tree_method": "exact", "seed": 0, "base_score": 0.0}


def onehot(df_ct, df_cp, cts, cps):
    x = np.zeros((len(df_ct), len(cts) + len(cps)), dtype=np.float32)
    x[np.arange(len(df_ct)), [cts.index(c) for c in df_ct]] = 1
    x[np.arange(len(df_ct)), [len(cts) + cps.index(c) for c in df_cp]] = 1
    return x


def fit_genes(args):
    x, xt, y_block, nthread = args
    params = {**PARAMS, "nthread": nthread}
    dtest = xgboost.DMatrix(xt)
    out = np.empty((xt.shape[0], y_block.shape[1]))
    for g in range(y_block.shape[1]):
        b = xgboost.train(params, xgboost.DMatrix(x, label=y_block[:, g]), num_boost_round=a.rounds)
        out[:, g] = b.predict(dtest)
    return out


if __name__ == "__main__":
    t0 = time.perf_counter()
    de = pd.read_parquet(a.de_train)
    ids = pd.read_csv(a.targets)
    genes = [c for c in de.columns if c not in KEYS]
    cts, cps = sorted(de["cell_type"].unique()), sorted(de["sm_name"].unique())
    x = onehot(de["cell_type"], de["sm_name"], cts, cps)
    xt = onehot(ids["cell_type"], ids["sm_name"], cts, cps)
    y = de[genes].to_numpy()
    t1 = time.perf_counter()
    if a.mode == "loop":
        pred = fit_genes((x, xt, y, a.threads))
    else:
        blocks = np.array_split(np.arange(len(genes)), a.threads * 8)
        with mp.Pool(a.threads) as pool:
            parts = pool.map(fit_genes, [(x, xt, y[:, b], 1) for b in blocks])
        pred = np.concatenate(parts, axis=1)
    t2 = time.perf_counter()
    meta = de.drop_duplicates("sm_name").set_index("sm_name")
    out = pd.DataFrame({"cell_type": ids["cell_type"], "sm_name": ids["sm_name"],
                        "sm_lincs_id": ids["sm_name"].map(meta["sm_lincs_id"]).to_numpy(),
                        "SMILES": ids["sm_name"].map(meta["SMILES"]).to_numpy(),
                        "control": ids["sm_name"].map(meta["control"]).to_numpy()})
    out = pd.concat([out, pd.DataFrame(pred, columns=genes)], axis=1)
    out.to_parquet(a.out, index=False)
    print(f"python xgboost {xgboost.__version__} mode={a.mode} threads={a.threads}: "
          f"{len(genes)} genes, load {t1 - t0:.1f} s, fit+predict {t2 - t1:.1f} s, total {time.perf_counter() - t0:.1f} s")
