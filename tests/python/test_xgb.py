"""pgen-xgb (XGBoost per gene on the DE values) against Python's xgboost doing the same fits.

The Rust side links XGBoost 1.6.2 built from the source vendored by the xgboost-rs-sys crate;
requirements.txt pins the Python package to the same version. The feature matrix is rebuilt
here independently (one-hot cell types sorted, then compounds sorted, then the per-gene extras)
and every gene is fitted with `xgboost.train`; predictions must agree to 1e-5.
Also: bad inputs give one-line errors, exit 1 and no output.
"""

import numpy as np
import pandas as pd
import pytest

from conftest import _binary, run

xgboost = pytest.importorskip("xgboost")

DE_KEYS = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]
CELL_TYPES = ["NK cells", "T cells CD4+", "T cells CD8+", "B cells", "Myeloid cells"]
COMPOUNDS = [f"Compound {c}" for c in "ABCDEFGHIJ"]
GENES = ["GENE1", "GENE2", "GENE3", "ZNF4", "A2M", "MT-CO1"]


@pytest.fixture(scope="module")
def xgb_bin():
    return _binary("pgen-xgb")


def fixture_tables(seed=0):
    """de_train: every compound in the first three cell types, three compounds in B and Myeloid
    cells; targets: the other B / Myeloid pairs. Values: compound + cell-type effects + noise."""
    rng = np.random.default_rng(seed)
    comp_eff = rng.normal(0, 1.5, (len(COMPOUNDS), len(GENES)))
    ct_eff = rng.normal(0, 0.7, (len(CELL_TYPES), len(GENES)))
    rows, targets = [], []
    for ci, ct in enumerate(CELL_TYPES):
        for ki, cp in enumerate(COMPOUNDS):
            measured = ci < 3 or ki in (0, 3 + ci, 7)
            if measured:
                vals = comp_eff[ki] * (1 + 0.3 * ci) + ct_eff[ci] + rng.normal(0, 0.3, len(GENES))
                rows.append([ct, cp, f"LINCS-{ki}", f"C{ki}", False, *vals])
            elif ci >= 3:
                targets.append((ct, cp))
    de = pd.DataFrame(rows, columns=DE_KEYS + GENES)
    ids = pd.DataFrame({"id": range(len(targets)), "cell_type": [t[0] for t in targets],
                        "sm_name": [t[1] for t in targets]})
    return de, ids


def design(de, pairs, extras):
    """The feature matrices pgen-xgb documents, built independently."""
    cts, cps = sorted(de["cell_type"].unique()), sorted(de["sm_name"].unique())
    vals = de[GENES].to_numpy()

    def onehot(ct, cp):
        v = np.zeros(len(cts) + len(cps))
        v[cts.index(ct)] = 1
        v[len(cts) + cps.index(cp)] = 1
        return v

    def extra_cols(ct, cp, g):
        out = []
        for e in extras:
            if e == "compound_mean":
                m = (de["sm_name"] == cp) & (de["cell_type"] != ct)
            else:
                m = (de["cell_type"] == ct) & (de["sm_name"] != cp)
            out.append(vals[m.to_numpy(), g].mean() if m.any() else np.nan)
        return out

    def matrix(rows, g):
        return np.array([np.concatenate([onehot(ct, cp), extra_cols(ct, cp, g)]) for ct, cp in rows])

    train_rows = list(zip(de["cell_type"], de["sm_name"]))
    return lambda g: (matrix(train_rows, g), matrix(pairs, g))


def python_predictions(de, ids, extras, params, rounds, scale=False):
    pairs = list(zip(ids["cell_type"], ids["sm_name"]))
    mats = design(de, pairs, extras)
    # --cell-type-scale: each cell type's values divided by their root mean square.
    rms = {ct: np.sqrt((d[GENES].to_numpy() ** 2).mean()) if scale else 1.0 for ct, d in de.groupby("cell_type")}
    s_train = de["cell_type"].map(rms).to_numpy()
    s_target = ids["cell_type"].map(rms).to_numpy()
    out = np.zeros((len(pairs), len(GENES)))
    for g, gene in enumerate(GENES):
        x, xt = mats(g)
        label = de[gene].to_numpy() / s_train
        booster = xgboost.train(params, xgboost.DMatrix(x, label=label), num_boost_round=rounds)
        out[:, g] = booster.predict(xgboost.DMatrix(xt)).astype(np.float64) * s_target
    return out


CASES = {
    "onehot": dict(extras=[], args=[], params={}),
    "compound_mean+cell_type_mean, depth 3, eta 0.1": dict(
        extras=["compound_mean", "cell_type_mean"],
        args=["--set", "max_depth=3", "--set", "eta=0.1"],
        params={"max_depth": 3, "eta": 0.1}),
    "cell-type scale, base_score 0.5": dict(
        extras=["compound_mean"], scale=True,
        args=["--set", "cell_type_scale=true", "--set", "base_score=0.5"],
        params={"base_score": 0.5}),
    "subsample/colsample with a seed, hist": dict(
        extras=["compound_mean"],
        # --params (the JSON the workflow passes) and a --set over it.
        args=["--params", '{"subsample": 0.7, "colsample_bytree": 0.8, "seed": 7, "tree_method": "hist", "lambda": 1}',
              "--set", "lambda=2", "--set", "min_child_weight=0.5"],
        params={"subsample": 0.7, "colsample_bytree": 0.8, "seed": 7, "tree_method": "hist",
                "lambda": 2, "min_child_weight": 0.5}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_xgb_matches_python_xgboost(xgb_bin, tmp_path, case):
    assert xgboost.__version__ == "1.6.2", "the Rust side links XGBoost 1.6.2"
    spec = CASES[case]
    de, ids = fixture_tables()
    de.to_parquet(tmp_path / "de_train.parquet", index=False)
    ids.to_csv(tmp_path / "targets.csv", index=False)
    rounds = 30
    feats = ["--set", f"features=[{', '.join(spec['extras'])}]"]
    run([xgb_bin, "--de-train", tmp_path / "de_train.parquet", "--targets", tmp_path / "targets.csv",
         "--set", f"rounds={rounds}", *feats, *spec["args"], "--threads", 2, "--out", tmp_path / "xgb.parquet"])
    got = pd.read_parquet(tmp_path / "xgb.parquet")
    assert list(got.columns) == DE_KEYS + GENES
    assert list(zip(got["cell_type"], got["sm_name"])) == list(zip(ids["cell_type"], ids["sm_name"]))
    # The compound metadata comes from de_train.
    assert (got["sm_lincs_id"] == got["sm_name"].map(dict(zip(de["sm_name"], de["sm_lincs_id"])))).all()
    # pgen-xgb's base_score defaults to 0 (XGBoost's to 0.5).
    params = {"objective": "reg:squarederror", "nthread": 1, "base_score": 0.0, **spec["params"]}
    expected = python_predictions(de, ids, spec["extras"], params, rounds, spec.get("scale", False))
    diff = np.abs(got[GENES].to_numpy() - expected).max()
    assert diff <= 1e-5, f"max |Rust - Python| = {diff}"
    # Not trivially equal: the model moved away from the base score.
    assert np.abs(expected).max() > 0.5


def test_xgb_thread_count_does_not_change_predictions(xgb_bin, tmp_path):
    de, ids = fixture_tables(seed=1)
    de.to_parquet(tmp_path / "de.parquet", index=False)
    ids.to_csv(tmp_path / "t.csv", index=False)
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"p{threads}.parquet"
        run([xgb_bin, "--de-train", tmp_path / "de.parquet", "--targets", tmp_path / "t.csv",
             "--set", "subsample=0.8", "--set", "rounds=10", "--threads", threads, "--out", out])
        outs.append(pd.read_parquet(out))
    pd.testing.assert_frame_equal(outs[0], outs[1])


def test_xgb_clip_train_fits_the_clipped_values(xgb_bin, tmp_path):
    """clip_train: c gives exactly the predictions of the raw fit on a de_train clipped by pandas
    (features compound_mean included: they are built from the clipped values too)."""
    de, ids = fixture_tables(seed=2)
    genes = [c for c in de.columns if c not in DE_KEYS]
    assert (de[genes].abs() > 1.5).to_numpy().mean() > 0.2, "the clip must bite"
    de.to_parquet(tmp_path / "de.parquet", index=False)
    de.assign(**{g: de[g].clip(-1.5, 1.5) for g in genes}).to_parquet(tmp_path / "clipped.parquet", index=False)
    ids.to_csv(tmp_path / "t.csv", index=False)
    common = ["--targets", tmp_path / "t.csv", "--set", "rounds=10", "--set", "features=[compound_mean]"]
    run([xgb_bin, "--de-train", tmp_path / "de.parquet", *common, "--set", "clip_train=1.5", "--out", tmp_path / "a.parquet"])
    run([xgb_bin, "--de-train", tmp_path / "clipped.parquet", *common, "--out", tmp_path / "b.parquet"])
    run([xgb_bin, "--de-train", tmp_path / "de.parquet", *common, "--out", tmp_path / "raw.parquet"])
    a, b, raw = (pd.read_parquet(tmp_path / f"{n}.parquet") for n in ("a", "b", "raw"))
    pd.testing.assert_frame_equal(a, b)
    assert not a[genes].equals(raw[genes])
    fails([xgb_bin, "--de-train", tmp_path / "de.parquet", *common, "--set", "clip_train=-1", "--out", tmp_path / "c.parquet"],
          tmp_path / "c.parquet", "xgb.clip_train", "positive")


def fails(cmd, out, *patterns):
    import subprocess
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), proc.stderr
    for p in patterns:
        assert p in lines[-1], (p, lines[-1])
    assert not out.exists()
    if out.parent.exists():
        assert not [f for f in out.parent.iterdir() if f.name.startswith(".")], list(out.parent.iterdir())
    return lines[-1]


def test_xgb_bad_inputs(xgb_bin, tmp_path):
    de, ids = fixture_tables()
    good = tmp_path / "de.parquet"
    de.to_parquet(good, index=False)
    ids.to_csv(tmp_path / "t.csv", index=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "xgb.parquet"

    # A target compound with no training row: no features.
    unseen = pd.concat([ids, pd.DataFrame({"id": [99], "cell_type": ["B cells"], "sm_name": ["Novel X"]})])
    unseen.to_csv(tmp_path / "unseen.csv", index=False)
    fails([xgb_bin, "--de-train", good, "--targets", tmp_path / "unseen.csv", "--out", out],
          out, "unseen.csv", "Novel X", "no features")

    # An empty training table.
    de.iloc[:0].to_parquet(tmp_path / "empty.parquet", index=False)
    fails([xgb_bin, "--de-train", tmp_path / "empty.parquet", "--targets", tmp_path / "t.csv", "--out", out],
          out, "empty.parquet", "no rows")

    # NaN in de_train: file, row and column named.
    bad = de.copy()
    bad.loc[4, "ZNF4"] = np.nan
    bad.to_parquet(tmp_path / "nan.parquet", index=False)
    fails([xgb_bin, "--de-train", tmp_path / "nan.parquet", "--targets", tmp_path / "t.csv", "--out", out],
          out, "nan.parquet", "row 5", "ZNF4")

    # Hyperparameters out of range.
    fails([xgb_bin, "--de-train", good, "--targets", tmp_path / "t.csv", "--set", "subsample=0", "--out", out],
          out, "xgb.subsample", "(0, 1]")
    fails([xgb_bin, "--de-train", good, "--targets", tmp_path / "t.csv", "--set", "features=[smiles]", "--out", out],
          out, "xgb.features", "smiles")
    fails([xgb_bin, "--de-train", good, "--targets", tmp_path / "t.csv", "--set", "tree_method=magic", "--out", out],
          out, "xgb.tree_method", "magic")
    # An unknown key: named, with the keys there are.
    fails([xgb_bin, "--de-train", good, "--targets", tmp_path / "t.csv", "--set", "etaa=0.1", "--out", out],
          out, "unknown field `etaa`", "eta")
    # A parameter XGBoost itself refuses: its message, and the parameters.
    fails([xgb_bin, "--de-train", good, "--targets", tmp_path / "t.csv", "--set", "params.booster=magic", "--out", out],
          out, "XGBoost", "magic", "booster=magic")


def test_blend_and_leaderboard_cli(xgb_bin, tmp_path):
    """pgen-blend: given weights, fitted weights on an inner hold-out (reported); pgen-leaderboard:
    ranking, plot and the chosen route's submission."""
    blend_bin, board_bin = _binary("pgen-blend"), _binary("pgen-leaderboard")
    de, ids = fixture_tables()
    de.to_parquet(tmp_path / "de.parquet", index=False)
    ids.to_csv(tmp_path / "t.csv", index=False)
    run([xgb_bin, "--de-train", tmp_path / "de.parquet", "--targets", tmp_path / "t.csv", "--set", "rounds=20",
         "--out", tmp_path / "xgb.parquet"])
    run([_binary("pgen-baseline"), "--kind", "zero", "--targets", tmp_path / "t.csv",
         "--de-train", tmp_path / "de.parquet", "--out", tmp_path / "zero.parquet"])
    x, z = pd.read_parquet(tmp_path / "xgb.parquet"), pd.read_parquet(tmp_path / "zero.parquet")

    run([blend_bin, "apply", "--prediction", f"xgb={tmp_path / 'xgb.parquet'}", "--prediction",
         f"zero={tmp_path / 'zero.parquet'}", "--weights", "0.25,0.75", "--out", tmp_path / "b.parquet",
         "--out-weights", tmp_path / "w.csv"])
    b = pd.read_parquet(tmp_path / "b.parquet")
    np.testing.assert_allclose(b[GENES].to_numpy(), 0.25 * x[GENES].to_numpy(), rtol=0, atol=1e-12)
    assert list(pd.read_csv(tmp_path / "w.csv")["weight"]) == [0.25, 0.75]
    fails([blend_bin, "apply", "--prediction", f"xgb={tmp_path / 'xgb.parquet'}", "--prediction",
           f"zero={tmp_path / 'zero.parquet'}", "--weights", "0.5,0.6", "--out", tmp_path / "o" / "b.parquet",
           "--out-weights", tmp_path / "o" / "w.csv"], tmp_path / "o" / "b.parquet", "sum to 1")

    # Fitted: inner hold-out from de_train only, both routes refitted on the inner training table.
    inner = tmp_path / "inner"
    run([blend_bin, "split", "--de-train", tmp_path / "de.parquet", "--targets", tmp_path / "t.csv", "--set", "inner.draw=1",
         "--out-train", inner / "train.parquet", "--out-targets", inner / "t.csv", "--out-truth", inner / "truth.parquet"])
    held = pd.read_parquet(inner / "truth.parquet")
    assert set(held["cell_type"]) == {"B cells", "Myeloid cells"} and len(held) == 2
    assert not set(zip(held["cell_type"], held["sm_name"])) & set(zip(ids["cell_type"], ids["sm_name"]))
    run([xgb_bin, "--de-train", inner / "train.parquet", "--targets", inner / "t.csv", "--set", "rounds=20",
         "--out", inner / "xgb.parquet"])
    run([_binary("pgen-baseline"), "--kind", "zero", "--targets", inner / "t.csv",
         "--de-train", inner / "train.parquet", "--out", inner / "zero.parquet"])
    run([blend_bin, "apply", "--prediction", f"xgb={tmp_path / 'xgb.parquet'}", "--prediction",
         f"zero={tmp_path / 'zero.parquet'}", "--fit-truth", inner / "truth.parquet",
         "--fit-prediction", f"xgb={inner / 'xgb.parquet'}", "--fit-prediction", f"zero={inner / 'zero.parquet'}",
         "--out", tmp_path / "fit.parquet", "--out-weights", tmp_path / "fw.csv"])
    w = pd.read_csv(tmp_path / "fw.csv").set_index("route")
    assert abs(w.loc[["xgb", "zero"], "weight"].sum() - 1) < 1e-9 and (w["weight"] >= 0).all()
    assert w.loc["BLEND", "inner_mrrmse"] <= w.loc[["xgb", "zero"], "inner_mrrmse"].min() + 1e-12

    # Leaderboard over hand-written score tables.
    metrics = ["rmse", "mae", "pearson", "spearman", "cosine", "rmse_clip4", "mae_clip4", "pearson_clip4", "spearman_clip4",
               "cosine_clip4", "sign_agreement", "top50_overlap", "top100_overlap", "top200_overlap", "discrimination"]
    for route, v in [("zero", 0.9), ("xgb", 0.6), ("blend", 0.7)]:
        values = ",".join([str(v)] + ["0.5"] * (len(metrics) - 1))
        (tmp_path / f"{route}.csv").write_text(f"cell_type,sm_name,clip,{','.join(metrics)}\nB cells,x,none,{values}\nALL,MEAN,none,{values}\n")
        (tmp_path / f"sub_{route}.csv").write_text(f"id,G\n0,{v}\n")
    args = [a for r in ["zero", "xgb", "blend"] for a in (f"--score={r}={tmp_path / (r + '.csv')}",
                                                           f"--submission={r}={tmp_path / ('sub_' + r + '.csv')}")]
    run([board_bin, *args, "--out-table", tmp_path / "board.csv", "--plot", tmp_path / "board.png",
         "--out-submission", tmp_path / "submission.csv"])
    assert list(pd.read_csv(tmp_path / "board.csv")["route"]) == ["xgb", "blend", "zero"]
    assert (tmp_path / "submission.csv").read_text() == "id,G\n0,0.6\n"
    assert (tmp_path / "board.png").read_bytes()[:4] == b"\x89PNG"
    run([board_bin, *args, "--submit", "zero", "--out-submission", tmp_path / "submission.csv"])
    assert (tmp_path / "submission.csv").read_text() == "id,G\n0,0.9\n"
    fails([board_bin, *args, "--submit", "dgd", "--out-submission", tmp_path / "x" / "s.csv"],
          tmp_path / "x" / "s.csv", "dgd")
