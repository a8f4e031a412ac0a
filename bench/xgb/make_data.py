"""A de_train-shaped table for the XGBoost benchmark: the real 614 row keys and 18,211 gene names
of ../shared/kaggle-layout, synthetic values (compound × cell-type structure plus heavy-tailed
noise, roughly the spread of signed -log10 p-values), and the real id_map as targets.

    python bench/xgb/make_data.py --layout ../shared/kaggle-layout --out bench/out/xgb [--genes N]
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ap = argparse.ArgumentParser()
ap.add_argument("--layout", default="../shared/kaggle-layout")
ap.add_argument("--out", default="bench/out/xgb")
ap.add_argument("--genes", type=int, default=None, help="first N genes only")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()

layout, out = Path(a.layout), Path(a.out)
out.mkdir(parents=True, exist_ok=True)
rows = pd.read_csv(layout / "de_train_rows.csv")
genes = (layout / "genes.txt").read_text().split()
if a.genes:
    genes = genes[: a.genes]
rng = np.random.default_rng(a.seed)
cps = sorted(rows["sm_name"].unique())
cts = sorted(rows["cell_type"].unique())
k = 8
comp = rng.normal(0, 1, (len(cps), k)) * rng.exponential(1, (len(cps), 1))
cell = rng.normal(1, 0.3, (len(cts), k))
load = rng.normal(0, 0.6, (k, len(genes))).astype(np.float64)
ci = rows["sm_name"].map({c: i for i, c in enumerate(cps)}).to_numpy()
ti = rows["cell_type"].map({c: i for i, c in enumerate(cts)}).to_numpy()
values = (comp[ci] * cell[ti]) @ load + rng.standard_t(3, (len(rows), len(genes))) * 0.5
de = pd.concat([rows.reset_index(drop=True), pd.DataFrame(values, columns=genes)], axis=1)
de.to_parquet(out / "de_train.parquet", index=False)
pd.read_csv(layout / "id_map.csv").to_csv(out / "targets.csv", index=False)
print(f"{out / 'de_train.parquet'}: {len(de)} rows × {len(genes)} genes; {out / 'targets.csv'}")
