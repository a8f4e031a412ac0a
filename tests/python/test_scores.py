"""The yardstick (issue 25) against independent computations: every metric of pgen-score's
tables recomputed with numpy/scipy from the demo workflow's own files (1e-9), the scores table,
the baselines against pandas, each route's clip against its inner hold-out, and bad predictions
refused with one line and no output."""

import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import _binary

KEYS = ["cell_type", "sm_name"]
META = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]
ROW_METRICS = ["rmse", "mae", "pearson", "spearman", "cosine", "rmse_clip4", "mae_clip4", "pearson_clip4",
               "spearman_clip4", "cosine_clip4", "sign_agreement", "top50_overlap", "top100_overlap",
               "top200_overlap", "discrimination"]
OVERALL = {m: {"rmse": "mrrmse", "rmse_clip4": "mrrmse_clip4"}.get(m, m) for m in ROW_METRICS}
BASELINES = {"zero", "global_mean", "mean_cell_type", "mean_compound"}


def genes_of(table):
    return [c for c in table.columns if c not in META]


def read_table(path):
    t = pd.read_parquet(path)
    return t.astype({"cell_type": str, "sm_name": str})


def aligned(truth, prediction):
    """The prediction's values in the truth's row and gene order."""
    genes = genes_of(truth)
    p = prediction.set_index(KEYS).loc[pd.MultiIndex.from_frame(truth[KEYS]), genes]
    return truth[genes].to_numpy(np.float64), p.to_numpy(np.float64)


def zero_if_nan(v):
    return 0.0 if not np.isfinite(v) else float(v)


def top_k(v, k):
    """Indices of the k largest |v|, ties by gene order."""
    return set(np.lexsort((np.arange(len(v)), -np.abs(v)))[:min(k, len(v))])


def numpy_row_metrics(t, p):
    """OP3's metrics (SPEC §5) on the raw and on the ±4-clipped truth, sign agreement on the DE
    genes, top-k overlap: numpy/scipy, written from the definitions in docs/metrics.md."""
    out = {}
    for suffix, tt in (("", t), ("_clip4", np.clip(t, -4, 4))):
        out["rmse" + suffix] = np.sqrt(np.mean((tt - p) ** 2))
        out["mae" + suffix] = np.mean(np.abs(tt - p))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["pearson" + suffix] = zero_if_nan(np.corrcoef(tt, p)[0, 1]) if p.std() > 0 else 0.0
            out["spearman" + suffix] = zero_if_nan(stats.spearmanr(tt, p).statistic) if p.std() > 0 else 0.0
            out["cosine" + suffix] = zero_if_nan(tt @ p / (np.linalg.norm(tt) * np.linalg.norm(p)))
    de = np.abs(t) >= -np.log10(0.05)
    out["sign_agreement"] = np.mean(np.sign(t[de]) == np.sign(p[de])) if de.any() else np.nan
    for k in (50, 100, 200):
        out[f"top{k}_overlap"] = len(top_k(t, k) & top_k(p, k)) / min(k, len(t))
    return out


def numpy_discrimination(T, P):
    d = ((P[:, None, :] - T[None, :, :]) ** 2).sum(axis=2)  # d[i, j] = |P_i - T_j|²
    n = len(T)
    own = np.diag(d)
    closer = (d < own[:, None]).sum(axis=1) + 0.5 * ((d == own[:, None]).sum(axis=1) - 1)
    return closer / (n - 1)


def apply_clip(values, clip):
    return values if clip == "none" else np.clip(values, -float(clip), float(clip))


@pytest.fixture(scope="module")
def results(demo_workflow):
    return demo_workflow / "results"


@pytest.fixture(scope="module")
def scores(results):
    return pd.read_csv(results / "scores" / "scores.csv", keep_default_na=False, na_values=[""])


def test_every_metric_equals_numpy_scipy(results, scores):
    assert len(scores) >= 14, scores
    for route, kind in zip(scores["route"], scores["kind"]):
        if kind == "reference":
            # The noise ceiling: the first half's DE scored against the second's.
            assert route == "ceiling"
            truth = read_table(results / "de" / "ceiling" / "second.parquet")
            prediction = read_table(results / "de" / "ceiling" / "first.parquet")
        else:
            truth = read_table(results / "de" / "truth.parquet")
            prediction = read_table(results / "predictions" / f"{route}.parquet")
        table = pd.read_csv(results / "scores" / f"{route}.csv", dtype={"cell_type": str, "sm_name": str, "clip": str})
        assert list(table.columns) == ["cell_type", "sm_name", "clip", *ROW_METRICS]
        rows, overall = table.iloc[:-1].reset_index(drop=True), table.iloc[-1]
        assert (overall["cell_type"], overall["sm_name"]) == ("ALL", "MEAN")
        clip = overall["clip"]
        T, P = aligned(truth, prediction)
        P = apply_clip(P, clip)
        assert list(zip(rows["cell_type"], rows["sm_name"])) == list(zip(truth["cell_type"], truth["sm_name"]))
        expected = pd.DataFrame([numpy_row_metrics(t, p) for t, p in zip(T, P)])
        expected["discrimination"] = numpy_discrimination(T, P)
        for m in ROW_METRICS:
            np.testing.assert_allclose(rows[m].to_numpy(float), expected[m].to_numpy(float), rtol=0, atol=1e-9,
                                       err_msg=f"{route}: {m}")
            assert abs(overall[m] - np.nanmean(expected[m])) <= 1e-9, (route, m)
            # scores.csv holds the same means.
            assert abs(scores.set_index("route").loc[route, OVERALL[m]] - overall[m]) <= 1e-12, (route, m)
    print("\n" + scores[["route", "kind", "clip", "mrrmse", "mrrmse_clip4", "pearson", "top100_overlap",
                         "discrimination"]].to_string(index=False))


def test_scores_table_ranks_routes_and_baselines(scores):
    assert list(scores.columns) == ["route", "kind", "clip", *OVERALL.values(), "toward_ceiling"]
    assert list(scores["mrrmse"]) == sorted(scores["mrrmse"]), "ranked by leaderboard.metric (mrrmse), the ceiling too"
    assert set(scores.loc[scores["kind"] == "baseline", "route"]) == BASELINES
    assert list(scores.loc[scores["kind"] == "reference", "route"]) == ["ceiling"]
    # toward_ceiling: (zero − route) / (zero − ceiling) on the ranking metric.
    by = scores.set_index("route")["mrrmse"]
    expected = (by["zero"] - by) / (by["zero"] - by["ceiling"])
    np.testing.assert_allclose(scores.set_index("route")["toward_ceiling"], expected, rtol=0, atol=1e-12)
    assert {"xgb", "forest", "xgb_forest", "dgd_avg", "nbvae_avg"} <= set(scores.loc[scores["kind"] == "route", "route"])
    zero = scores.set_index("route").loc["zero"]
    # The all-zero prediction: no correlation, no sign agreement.
    assert (zero["pearson"], zero["spearman"], zero["cosine"], zero["sign_agreement"]) == (0, 0, 0, 0)


def test_baselines_equal_pandas(results):
    de = read_table(results / "de" / "de_train_fit.parquet")
    genes = genes_of(de)
    targets = pd.read_csv(results / "split" / "targets.csv", dtype=str)
    for name in ["global_mean", "mean_cell_type", "mean_compound"]:
        pred = read_table(results / "predictions" / f"{name}.parquet")
        assert list(zip(pred["cell_type"], pred["sm_name"])) == list(zip(targets["cell_type"], targets["sm_name"]))
        for _, row in pred.iterrows():
            if name == "global_mean":
                rows = de
            elif name == "mean_cell_type":
                rows = de[de["cell_type"] == row["cell_type"]]
            else:
                rows = de[de["sm_name"] == row["sm_name"]]
            expected = rows[genes].mean().to_numpy() if len(rows) else np.zeros(len(genes))
            np.testing.assert_allclose(row[genes].to_numpy(float), expected, rtol=0, atol=1e-12, err_msg=name)
    # The compound's mean carries the compound's effect: it beats zero on the demo's targets.
    s = pd.read_csv(results / "scores" / "scores.csv").set_index("route")
    assert s.loc["mean_compound", "pearson"] > 0.2, s


def test_each_clip_is_the_best_candidate_on_the_inner_holdout(results, scores):
    inner_truth = read_table(results / "inner" / "truth.parquet")
    candidates = ["none", "4.0", "2.0"]  # config/config.yaml leaderboard.clip
    checked = 0
    for route in scores["route"]:
        path = results / "inner" / "predictions" / f"{route}.parquet"
        clip_file = results / "scores" / "clip" / f"{route}.txt"
        if not path.exists():
            assert not clip_file.exists(), route
            assert scores.set_index("route").loc[route, "clip"] == "none", "clip_without_inner: null"
            continue
        T, P = aligned(inner_truth, read_table(path))
        inner = [np.mean(np.sqrt(np.mean((T - apply_clip(P, c)) ** 2, axis=1))) for c in candidates]
        best = candidates[int(np.argmin(inner))]
        assert clip_file.read_text().strip() == best, (route, dict(zip(candidates, inner)))
        assert scores.set_index("route").loc[route, "clip"] == best
        checked += 1
    # 4 baselines, xgb, forest, the three blends, and (generate.inner_holdout) dgd, dgd_avg,
    # nbvae, nbvae_avg have an inner run.
    assert checked == 13, checked


def test_fitted_blend_inner_run_uses_its_weights(results):
    w = pd.read_csv(results / "predictions" / "xgb_forest.weights.csv").set_index("route")["weight"]
    inner = {r: read_table(results / "inner" / "predictions" / f"{r}.parquet") for r in ["xgb", "forest", "xgb_forest"]}
    genes = genes_of(inner["xgb"])
    mix = w["xgb"] * inner["xgb"][genes].to_numpy() + w["forest"] * inner["forest"].set_index(KEYS).loc[
        pd.MultiIndex.from_frame(inner["xgb"][KEYS]), genes].to_numpy()
    np.testing.assert_allclose(inner["xgb_forest"][genes].to_numpy(), mix, rtol=0, atol=1e-12)


def refused(cmd, out):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, (proc.returncode, proc.stderr)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*")), "nothing written"
    return lines[0]


def test_bad_predictions_are_one_line_errors(results, tmp_path):
    score_bin = _binary("pgen-score")
    truth_path = results / "de" / "truth.parquet"
    good = pd.read_parquet(results / "predictions" / "xgb.parquet")
    gene = genes_of(good)[3]
    cases = {
        "missing-gene": (good.drop(columns=[gene]), f"gene `{gene}` of the truth is missing"),
        "nan": (good.assign(**{gene: np.where(np.arange(len(good)) == 1, np.nan, good[gene])}),
                f"row 2, column `{gene}`: expected a finite number"),
        "duplicate-row": (pd.concat([good, good.iloc[[0]]], ignore_index=True), "appears twice"),
        "unknown-target": (pd.concat([good, good.iloc[[0]].assign(sm_name="Never-measured")], ignore_index=True),
                           f"({good['cell_type'].iloc[0]}, Never-measured) is not in the truth"),
    }
    for name, (table, message) in cases.items():
        path = tmp_path / f"{name}.parquet"
        table.to_parquet(path, index=False)
        out = tmp_path / f"{name}.csv"
        line = refused([score_bin, "--prediction", path, "--truth", truth_path, "--out-table", out], out)
        assert str(path) in line and message in line, (name, line)
    out = tmp_path / "clip.csv"
    line = refused([score_bin, "--prediction", results / "predictions" / "xgb.parquet", "--truth", truth_path,
                    "--clip=-4", "--out-table", out], out)
    assert "--clip `-4`" in line, line
