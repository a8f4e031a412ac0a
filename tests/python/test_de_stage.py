"""The DE stage (SPEC.md sections 1 and 3) checked against independent computations:

* pgen-pseudobulk against a pandas groupby of the raw simulated files;
* pgen-limma against limma called directly from R (a script written here, the official recipe
  with one makeContrasts / contrasts.fit / eBayes / topTable per compound);
* the DE values against the simulator's true effects;
* pgen-score's MRRMSE against numpy, on the demo output and on a hand-computed fixture;
* bad inputs: one-line errors, exit status 1, no outputs and no temporary files left behind;
* the Snakemake workflow: runs, is up to date afterwards, and a limma parameter change
  reschedules only the DE stage and what follows it.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from conftest import REPO, _binary, run, workflow_args

NEGATIVE_CONTROL = "Dimethyl Sulfoxide"
DE_KEYS = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]
PB_KEYS = ["cell_type", "plate_name", "well", "donor_id", "row", "sm_name", "sm_lincs_id",
           "SMILES", "control", "n_cells"]
GROUP = ["plate_name", "well", "cell_type"]
LIMMA_SCRIPT = REPO / "scripts" / "limma_de.R"
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
POSITIVE_CONTROLS = ("Belinostat", "Dabrafenib")


# --- helpers ------------------------------------------------------------------------------------

def read_parquet(path):
    return pd.read_parquet(path, engine="pyarrow")


def genes_of(sim_dir):
    return Path(sim_dir, "genes.txt").read_text().splitlines()


def gene_columns(df, keys):
    return [c for c in df.columns if c not in keys]


def write_de(df, path):
    df.to_parquet(path, engine="pyarrow", index=False)
    return path


def files_under(folder):
    """Every file and folder below `folder`, hidden ones included."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*"))


def numpy_mrrmse(truth, prediction):
    """Per-row RMSE over genes (rows matched by (cell_type, sm_name), genes by name) and their
    mean (SPEC section 1)."""
    genes = gene_columns(truth, DE_KEYS)
    pred = truth[["cell_type", "sm_name"]].merge(
        prediction, on=["cell_type", "sm_name"], how="left", validate="one_to_one")
    assert not pred[genes].isna().any().any(), "prediction lacks a truth pair"
    err = truth[genes].to_numpy(np.float64) - pred[genes].to_numpy(np.float64)
    rows = np.sqrt(np.mean(err ** 2, axis=1))
    return rows, rows.mean()


def read_scores(path):
    """(rows: cell_type, sm_name, rmse; the ALL row's RMSE mean) of a pgen-score table (its
    other metrics: tests/python/test_scores.py)."""
    df = pd.read_csv(path, dtype={"cell_type": str, "sm_name": str, "clip": str, "rmse": np.float64})
    assert list(df.columns[:4]) == ["cell_type", "sm_name", "clip", "rmse"]
    assert (df["cell_type"].iloc[-1], df["sm_name"].iloc[-1]) == ("ALL", "MEAN"), \
        "the last row must be ALL,MEAN"
    return df.iloc[:-1][["cell_type", "sm_name", "rmse"]].reset_index(drop=True), float(df["rmse"].iloc[-1])


def auc(scores_pos, scores_neg):
    """Mann-Whitney AUC (ties count one half): P(score of a positive > score of a negative)."""
    ranks = rankdata(np.concatenate([scores_pos, scores_neg]))
    n1, n0 = len(scores_pos), len(scores_neg)
    return (ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


# --- fixtures: the DE stage on the demo simulation, stage by stage --------------------------------

@pytest.fixture(scope="module")
def bins():
    names = ["ingest", "filter", "split", "pseudobulk", "limma", "merge-de", "baseline", "score"]
    return {n: _binary(f"pgen-{n}") for n in names}


def limma_cmd(bins, pseudobulk, cell_type, out, *extra):
    return [bins["limma"], "--pseudobulk", pseudobulk, "--cell-type", cell_type,
            "--script", LIMMA_SCRIPT, *extra, "--out", out]


@pytest.fixture(scope="module")
def pipeline(bins, sim_dir, ingest_dir, tmp_path_factory):
    """split (the simulator's id_map) of every ingested cell -> pseudo-bulk (train; train +
    withheld truth cells) -> limma (NK cells; the target pairs of B and Myeloid cells) -> merge
    -> zero baseline -> score, with the release executables and default parameters. As in the
    official recipe (SPEC §3) the positive controls stay in: filter only serves model training."""
    d = tmp_path_factory.mktemp("de_pipeline")
    p = {k: d / v for k, v in {
        "train_counts": "split/train_counts.parquet", "train_obs": "split/train_obs.parquet",
        "hold_counts": "split/holdout_counts.parquet", "hold_obs": "split/holdout_obs.parquet",
        "targets": "split/targets.csv", "validation": "split/validation_ids.txt",
        "truth_counts": "ingest_truth/counts.parquet", "truth_obs": "ingest_truth/obs.parquet",
        "pb_train": "pseudobulk/train.parquet", "pb_truth": "pseudobulk/truth.parquet",
        "de_nk": "de/train/nk_cells.parquet", "de_truth": "de/truth.parquet",
        "zero": "predictions/zero.parquet", "scores": "scores/zero.csv", "plot": "scores/zero.png",
    }.items()}
    run([bins["split"], "--counts", ingest_dir / "counts.parquet", "--obs", ingest_dir / "obs.parquet",
         "--id-map", sim_dir / "id_map.csv", "--set", "keep_target_relevant=true", "--set", "seed=0",
         "--out-train-counts", p["train_counts"], "--out-train-obs", p["train_obs"],
         "--out-holdout-counts", p["hold_counts"], "--out-holdout-obs", p["hold_obs"],
         "--out-targets", p["targets"], "--out-validation", p["validation"]])
    run([bins["ingest"], "--counts", sim_dir / "truth" / "adata_test.parquet",
         "--obs", sim_dir / "truth" / "adata_test_obs_meta.csv", "--genes", sim_dir / "genes.txt",
         "--out-counts", p["truth_counts"], "--out-obs", p["truth_obs"]])
    run([bins["pseudobulk"], "--counts", p["train_counts"], "--obs", p["train_obs"],
         "--threads", 2, "--out", p["pb_train"]])
    run([bins["pseudobulk"], "--counts", p["train_counts"], "--obs", p["train_obs"],
         "--counts", p["truth_counts"], "--obs", p["truth_obs"], "--out", p["pb_truth"]])
    run(limma_cmd(bins, p["pb_train"], "NK cells", p["de_nk"]))
    target_types = sorted(set(pd.read_csv(p["targets"])["cell_type"]))
    per_type = []
    for ct in target_types:
        out = d / "de" / "truth" / f"{ct.replace(' ', '_')}.parquet"
        run(limma_cmd(bins, p["pb_truth"], ct, out, "--targets", p["targets"]))
        per_type.append(out)
    p["de_truth_per_type"] = dict(zip(target_types, per_type))
    run([bins["merge-de"], *per_type, "--out", p["de_truth"]])
    run([bins["baseline"], "--kind", "zero", "--targets", p["targets"],
         "--de-train", p["de_nk"], "--out", p["zero"]])
    run([bins["score"], "--prediction", p["zero"], "--truth", p["de_truth"],
         "--out-table", p["scores"], "--plot", p["plot"], "--title", "zero"])
    p["sim_dir"] = sim_dir
    p["ingest_counts"], p["ingest_obs"] = ingest_dir / "counts.parquet", ingest_dir / "obs.parquet"
    return p


# --- 1. pseudo-bulk sums ------------------------------------------------------------------------

def pandas_pseudobulk(sim_dir):
    """Sum of counts per (plate_name, well, cell_type) from the raw simulator files, after
    dropping the excluded (obs_id, gene) pairs; n_cells from the obs table (cells without
    any non-zero count still count)."""
    train = read_parquet(sim_dir / "adata_train.parquet")
    train = pd.DataFrame({"obs_id": train["obs_id"].astype(str), "gene": train["gene"].astype(str),
                          "count": train["count"].astype(np.float64)})
    excluded = pd.read_csv(sim_dir / "adata_excluded_ids.csv", dtype=str).drop_duplicates()
    hit = train.merge(excluded, on=["obs_id", "gene"], how="left", indicator=True)
    kept = hit.loc[hit["_merge"] == "left_only", ["obs_id", "gene", "count"]]
    n_excluded = int((hit["_merge"] == "both").sum())

    obs = pd.read_csv(sim_dir / "adata_obs_meta.csv", dtype={"obs_id": str})
    for c in ["plate_name", "well", "cell_type", "donor_id", "row", "sm_name", "sm_lincs_id", "SMILES"]:
        obs[c] = obs[c].astype(str)
    obs["control"] = obs["control"].astype(str).str.lower() == "true"

    long = kept.merge(obs[["obs_id", *GROUP]], on="obs_id", how="left", validate="many_to_one")
    assert not long[GROUP].isna().any().any(), "counts of cells missing from adata_obs_meta.csv"
    sums = long.groupby([*GROUP, "gene"])["count"].sum().unstack("gene", fill_value=0.0)

    meta_cols = ["donor_id", "row", "sm_name", "sm_lincs_id", "SMILES", "control"]
    grouped = obs.groupby(GROUP)
    assert (grouped[meta_cols].nunique() == 1).all().all(), "a group mixes donors/rows/compounds"
    meta = grouped[meta_cols].first()
    meta["n_cells"] = grouped.size()
    genes = genes_of(sim_dir)
    assert set(sums.columns) <= set(genes)
    sums = sums.reindex(index=meta.index, columns=genes, fill_value=0.0).fillna(0.0)
    return meta.join(sums).reset_index(), n_excluded


def test_pseudobulk_sums_equal_pandas(bins, sim_dir, ingest_dir, tmp_path):
    out = tmp_path / "pb.parquet"
    run([bins["pseudobulk"], "--counts", ingest_dir / "counts.parquet",
         "--obs", ingest_dir / "obs.parquet", "--threads", 2, "--out", out])
    got = read_parquet(out)
    genes = genes_of(sim_dir)
    assert list(got.columns) == PB_KEYS + genes, "key columns, then the genes in genes.txt order"
    assert (got[genes].dtypes == np.float64).all()
    assert not got.duplicated(GROUP).any(), "a (plate, well, cell type) group appears twice"

    expected, n_excluded = pandas_pseudobulk(sim_dir)
    assert n_excluded > 0, "no excluded pair hit a count: the exclusion is not being tested"
    assert len(got) == len(expected), f"{len(got)} groups, pandas finds {len(expected)}"

    got = got.astype({c: str for c in PB_KEYS[:8]}).sort_values(GROUP).reset_index(drop=True)
    expected = expected.sort_values(GROUP).reset_index(drop=True)
    for col in PB_KEYS[:8]:
        assert (got[col].to_numpy() == expected[col].to_numpy()).all(), f"column {col} differs"
    assert (got["control"].astype(bool).to_numpy() == expected["control"].to_numpy()).all()
    assert (got["n_cells"].to_numpy() == expected["n_cells"].to_numpy()).all(), "n_cells differ"
    a, b = got[genes].to_numpy(), expected[genes].to_numpy()
    if not np.array_equal(a, b):
        i, j = np.argwhere(a != b)[0]
        pytest.fail(f"{int((a != b).sum())} sums differ, first: group {tuple(got.loc[i, GROUP])} "
                    f"gene {genes[j]}: pgen-pseudobulk {a[i, j]}, pandas {b[i, j]}")
    assert a.sum() > 0


# --- 2. limma through the pipeline == limma called directly -----------------------------------------

DIRECT_LIMMA_R = r"""
# The official recipe (SPEC section 3), written independently of scripts/limma_de.R:
# factors in R's default order, design from model.matrix, one makeContrasts/contrasts.fit/
# eBayes/topTable per compound.
suppressPackageStartupMessages({ library(limma); library(edgeR) })
args <- commandArgs(trailingOnly = TRUE)
counts <- as.matrix(read.csv(args[[1]], row.names = 1, check.names = FALSE))
samples <- read.csv(args[[2]], check.names = FALSE, colClasses = "character")
control <- args[[3]]
stopifnot(identical(colnames(counts), samples$sample))
Rpert <- factor(samples$sm_name)
donor_id <- factor(samples$donor_id)
plate_name <- factor(samples$plate_name)
row <- factor(samples$row)
design <- model.matrix(~0 + Rpert + donor_id + plate_name + row)
colnames(design) <- make.names(colnames(design))
stopifnot(!anyDuplicated(colnames(design)))
dge <- DGEList(counts = counts)
dge <- calcNormFactors(dge)
v <- voom(dge, design)
fit <- suppressWarnings(lmFit(v, design))
compounds <- setdiff(levels(Rpert), control)
res <- matrix(NA_real_, length(compounds), nrow(counts))
for (i in seq_along(compounds)) {
  contr <- makeContrasts(
    contrasts = paste0(make.names(paste0("Rpert", compounds[[i]])), " - ",
                       make.names(paste0("Rpert", control))),
    levels = design)
  fit2 <- eBayes(suppressWarnings(contrasts.fit(fit, contr)))
  tt <- topTable(fit2, number = Inf, sort.by = "none")
  stopifnot(identical(rownames(tt), rownames(counts)))
  p <- tt$P.Value
  p[p == 0] <- .Machine$double.eps
  res[i, ] <- sign(tt$logFC) * -log10(p)
}
out <- data.frame(sm_name = compounds, matrix(sprintf("%.17g", res), nrow = length(compounds)),
                  check.names = FALSE, stringsAsFactors = FALSE)
colnames(out) <- c("sm_name", rownames(counts))
write.csv(out, args[[4]], row.names = FALSE)
"""


@pytest.mark.parametrize("case", ["NK cells, training pseudo-bulk", "B cells, truth targets"])
def test_limma_equals_direct_limma(case, pipeline, tmp_path):
    if shutil.which("Rscript") is None:
        pytest.fail("Rscript not found (R with limma and edgeR: scripts/setup)", pytrace=False)
    if case.startswith("NK"):
        cell_type, pb_path, de_path, targets = "NK cells", pipeline["pb_train"], pipeline["de_nk"], None
    else:
        cell_type, pb_path = "B cells", pipeline["pb_truth"]
        de_path = pipeline["de_truth_per_type"][cell_type]
        targets = pd.read_csv(pipeline["targets"])
        targets = set(targets.loc[targets["cell_type"] == cell_type, "sm_name"])
        assert targets

    if targets is None:
        # The training pseudo-bulk of every ingested cell, by pandas from the raw files: the
        # split's training cells are all of adata_train here (the targets' cells are withheld).
        pb, _ = pandas_pseudobulk(pipeline["sim_dir"])
        assert set(POSITIVE_CONTROLS) <= set(pb["sm_name"]), "positive controls missing from the direct input"
    else:
        pb = read_parquet(pb_path)
    pb = pb[pb["cell_type"].astype(str) == cell_type].reset_index(drop=True)
    genes = gene_columns(pb, PB_KEYS)
    samples = pb[["sm_name", "donor_id", "plate_name", "row", "well"]].astype(str)
    samples.insert(0, "sample", [f"s{i + 1}" for i in range(len(pb))])
    samples.to_csv(tmp_path / "samples.csv", index=False)
    counts = pd.DataFrame(pb[genes].to_numpy().T, index=pd.Index(genes, name="gene"),
                          columns=samples["sample"])
    assert (counts.to_numpy() == np.round(counts.to_numpy())).all()
    counts.astype(np.int64).to_csv(tmp_path / "counts.csv")
    script = tmp_path / "direct_limma.R"
    script.write_text(DIRECT_LIMMA_R)
    run(["Rscript", script, tmp_path / "counts.csv", tmp_path / "samples.csv", NEGATIVE_CONTROL,
         tmp_path / "direct.csv"])
    direct = pd.read_csv(tmp_path / "direct.csv", dtype={"sm_name": str})
    if targets is not None:
        direct = direct[direct["sm_name"].isin(targets)]
    direct = direct.set_index("sm_name").sort_index()

    got = read_parquet(de_path)
    assert list(got.columns) == DE_KEYS + genes
    assert (got["cell_type"].astype(str) == cell_type).all()
    got = got.assign(sm_name=got["sm_name"].astype(str)).set_index("sm_name").sort_index()
    assert list(got.index) == list(direct.index), "different compounds"
    assert list(direct.columns) == genes
    if targets is None:
        # The positive controls are fitted and reported like any compound, flagged control.
        assert set(POSITIVE_CONTROLS) <= set(got.index)
        assert got.loc[list(POSITIVE_CONTROLS), "control"].astype(bool).all()
        assert not got.drop(index=list(POSITIVE_CONTROLS))["control"].astype(bool).any()
    # Compound metadata comes from the pseudo-bulk samples.
    meta = pb.drop_duplicates("sm_name").astype({"sm_name": str}).set_index("sm_name")
    for col in ["sm_lincs_id", "SMILES"]:
        assert (got[col].astype(str) == meta.loc[got.index, col].astype(str)).all(), col

    diff = np.abs(got[genes].to_numpy() - direct[genes].to_numpy())
    per_compound = pd.Series(diff.max(axis=1), index=got.index)
    assert (per_compound <= 1e-8).all(), f"max |pgen-limma - direct limma| per compound:\n{per_compound}"
    assert np.abs(direct.to_numpy()).max() > 2, "no gene with P < 0.01: comparison too weak"
    print(f"\n{case}: {len(got)} compounds x {len(genes)} genes, max |diff| = {diff.max():.3g}")


# --- 3. the true-effect genes rank at the top ------------------------------------------------------

def de_vs_truth(de, true_effects):
    genes = gene_columns(de, DE_KEYS)
    keys = de[["cell_type", "sm_name"]].astype(str)
    te = true_effects.astype({"cell_type": str, "sm_name": str})
    truth = keys.merge(te, on=["cell_type", "sm_name"], how="left", validate="one_to_one")
    assert not truth[genes].isna().any().any(), "DE rows without a true effect"
    t, v = truth[genes].to_numpy(), de[genes].to_numpy()
    effect, null = np.abs(t) >= 1, t == 0
    a = auc(np.abs(v[effect]), np.abs(v[null]))
    significant = effect & (10.0 ** -np.abs(v) < 0.01)
    sign_ok = (np.sign(v[significant]) == np.sign(t[significant])).mean()
    return dict(rows=len(de), n_effect=int(effect.sum()), n_null=int(null.sum()), auc=a,
                n_significant=int(significant.sum()), sign_agreement=sign_ok)


@pytest.mark.parametrize("table,min_auc", [("de_nk", 0.9), ("de_truth", 0.9)])
def test_true_effect_genes_rank_top(table, min_auc, pipeline, sim_dir):
    """Pooled over compounds: |value| separates genes with |true log2FC| >= 1 from genes with no
    effect (AUC), and significant effect genes have the true sign.

    Both must reach AUC > 0.9 (demo preset, seed 0: NK cells 0.970, the B/Myeloid target pairs
    0.929 — they have ~18 cells per well against ~60 for NK; a broken pipeline gives ~0.5)."""
    te = read_parquet(sim_dir / "truth" / "true_effects.parquet")
    r = de_vs_truth(read_parquet(pipeline[table]), te)
    print(f"\n{table}: {r}")
    assert r["n_effect"] >= 100 and r["n_null"] >= 1000, r
    assert r["n_significant"] >= 50, r
    assert r["auc"] > min_auc, r
    assert r["sign_agreement"] >= 0.95, r


# --- 4. MRRMSE == numpy --------------------------------------------------------------------------------

def check_scores(scores_path, truth, prediction):
    rows, overall = read_scores(scores_path)
    exp_rows, exp_overall = numpy_mrrmse(truth, prediction)
    expected = truth[["cell_type", "sm_name"]].astype(str).assign(rmse=exp_rows)
    merged = rows.merge(expected, on=["cell_type", "sm_name"], how="outer",
                        suffixes=("", "_numpy"), indicator=True, validate="one_to_one")
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    assert np.allclose(merged["rmse"], merged["rmse_numpy"], rtol=0, atol=1e-12), merged
    assert abs(overall - exp_overall) <= 1e-12, (overall, exp_overall)
    return overall


def test_mrrmse_equals_numpy_on_demo(pipeline, bins, tmp_path):
    truth = read_parquet(pipeline["de_truth"])
    zero = read_parquet(pipeline["zero"])
    genes = gene_columns(truth, DE_KEYS)
    assert list(zero.columns) == DE_KEYS + genes
    assert (zero[genes].to_numpy() == 0).all()
    overall = check_scores(pipeline["scores"], truth, zero)
    print(f"\nzero baseline MRRMSE on the demo targets: {overall!r}")

    # A prediction that is not zero, with rows shuffled and gene columns in another order:
    # pgen-score must match rows by pair and genes by name.
    rng = np.random.default_rng(7)
    pred = truth.copy()
    pred[genes] = truth[genes].to_numpy() * 0.5 + rng.normal(0, 1, (len(truth), len(genes)))
    pred = pred.iloc[rng.permutation(len(pred))]
    pred = pred[DE_KEYS + list(rng.permutation(genes))]
    write_de(pred, tmp_path / "pred.parquet")
    run([bins["score"], "--prediction", tmp_path / "pred.parquet", "--truth", pipeline["de_truth"],
         "--out-table", tmp_path / "scores.csv"])
    check_scores(tmp_path / "scores.csv", truth, pred)


def de_frame(rows, genes, values):
    df = pd.DataFrame({
        "cell_type": [r[0] for r in rows], "sm_name": [r[1] for r in rows],
        "sm_lincs_id": [f"LSM-{r[1]}" for r in rows], "SMILES": ["C" for _ in rows],
        "control": [False for _ in rows],
    })
    return pd.concat([df, pd.DataFrame(np.asarray(values, dtype=np.float64), columns=genes)], axis=1)


def test_mrrmse_hand_fixture(bins, tmp_path):
    genes = ["G1", "G2", "G3"]
    truth = de_frame([("B cells", "A"), ("Myeloid cells", "A")], genes,
                     [[0.5, -1.0, 2.0],
                      [2.0, -2.0, 2.0]])
    pred = de_frame([("B cells", "A"), ("Myeloid cells", "A")], genes,
                    [[1.5, -2.0, 7.0],
                     [0.0, 0.0, 0.0]])
    # Row 1: errors (-1, 1, -5): mean square (1 + 1 + 25) / 3 = 9, RMSE 3.
    # Row 2: errors (2, -2, 2):  mean square (4 + 4 + 4) / 3 = 4,  RMSE 2.
    # MRRMSE = (3 + 2) / 2 = 2.5.
    write_de(truth, tmp_path / "truth.parquet")
    # The prediction's rows and genes in another order must not change anything.
    write_de(pred.iloc[::-1][DE_KEYS + ["G3", "G1", "G2"]], tmp_path / "pred.parquet")
    run([bins["score"], "--prediction", tmp_path / "pred.parquet", "--truth", tmp_path / "truth.parquet",
         "--out-table", tmp_path / "scores.csv"])
    rows, overall = read_scores(tmp_path / "scores.csv")
    by_pair = {(r.cell_type, r.sm_name): r.rmse for r in rows.itertuples()}
    assert by_pair == pytest.approx({("B cells", "A"): 3.0, ("Myeloid cells", "A"): 2.0}, abs=1e-12)
    assert overall == pytest.approx(2.5, abs=1e-12)
    check_scores(tmp_path / "scores.csv", truth, pred)


# --- 5. bad inputs: one-line error, exit 1, nothing left behind ----------------------------------------

def assert_clean_failure(cmd, out_dir, expect, tmp_dir=None):
    """Exit status 1; exactly one `error: ...` line on stderr (everything else is a log line);
    `expect` in it; nothing at all left in `out_dir` (nor in TMPDIR when given)."""
    env = dict(os.environ)
    if tmp_dir is not None:
        env["TMPDIR"] = str(tmp_dir)
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    where = f"{' '.join(cmd)}\n--- stderr ---\n{proc.stderr[-3000:]}"
    assert proc.returncode == 1, f"exit status {proc.returncode}: {where}"
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line: {where}"
    others = [line for line in lines if not line.startswith(("error:", "["))]
    assert not others, f"stderr lines that are neither log lines nor the error: {others}\n{where}"
    assert lines[-1] == errors[0], f"the error should be the last line: {where}"
    assert expect.lower() in errors[0].lower(), f"`{expect}` not in the error: {where}"
    left = files_under(out_dir)
    assert not left, f"left in the output folder after the error: {left}\n{where}"
    if tmp_dir is not None:
        left = files_under(tmp_dir)
        assert not left, f"left in TMPDIR after the error: {left}\n{where}"
    return errors[0]


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def tmp_dir(tmp_path):
    d = tmp_path / "tmpdir"
    d.mkdir()
    return d


def test_limma_unknown_negative_control(pipeline, bins, out_dir, tmp_dir):
    assert_clean_failure(
        limma_cmd(bins, pipeline["pb_train"], "NK cells", out_dir / "de.parquet",
                  "--set", "negative_control=Water"),
        out_dir, "Water", tmp_dir)


def test_limma_error_inside_r(pipeline, bins, out_dir, tmp_dir):
    """A failure reported by the R script (design term that is no sample column): still one
    line, and the exchange folder is removed."""
    assert_clean_failure(
        limma_cmd(bins, pipeline["pb_train"], "NK cells", out_dir / "de.parquet",
                  "--set", "design=~0+Rpert+batch"),
        out_dir, "batch", tmp_dir)


def test_limma_cell_type_without_samples(pipeline, bins, out_dir, tmp_dir):
    assert_clean_failure(
        limma_cmd(bins, pipeline["pb_train"], "Platelets", out_dir / "de.parquet"),
        out_dir, "Platelets", tmp_dir)


def split_cmd(bins, pipeline, out_dir, *targets):
    return [bins["split"], "--counts", pipeline["ingest_counts"], "--obs", pipeline["ingest_obs"], *targets,
            "--out-train-counts", out_dir / "train_counts.parquet",
            "--out-train-obs", out_dir / "train_obs.parquet",
            "--out-holdout-counts", out_dir / "holdout_counts.parquet",
            "--out-holdout-obs", out_dir / "holdout_obs.parquet",
            "--out-targets", out_dir / "targets.csv", "--out-validation", out_dir / "validation_ids.txt"]


@pytest.mark.parametrize("targets,expect", [
    (["--set", "mode=holdout", "--set", "holdout.draw=0"], "split.holdout.draw: must be at least 1"),
    # B cells are measured with 4 non-control compounds only in the demo.
    (["--set", "mode=holdout", "--set", "holdout={draw: 5, cell_types: [B cells, NK cells]}"], "5"),
    (["--set", "mode=holdout", "--set", "holdout={draw: 2, cell_types: [Platelets]}"], "Platelets"),
    (["--set", "mode=holdout", "--set", "holdout.pairs=['B cells|Compound-005']"], "Compound-005"),
], ids=["draw-0", "draw-more-than-measured", "no-such-cell-type", "pair-without-cells"])
def test_split_empty_or_impossible_holdout(targets, expect, pipeline, bins, out_dir):
    assert_clean_failure(split_cmd(bins, pipeline, out_dir, *targets), out_dir, expect)


def test_split_target_cell_type_without_cells(pipeline, bins, out_dir, tmp_path):
    id_map = tmp_path / "id_map.csv"
    id_map.write_text("id,cell_type,sm_name\n0,Platelets,Compound-005\n")
    assert_clean_failure(split_cmd(bins, pipeline, out_dir, "--id-map", id_map), out_dir, "Platelets")


def test_split_failing_late_output_leaves_no_outputs(pipeline, bins, out_dir, sim_dir):
    """The last-but-one output path is an existing (non-empty) folder, so only its final rename
    fails: the outputs must still appear together or not at all."""
    (out_dir / "targets.csv" / "keep").mkdir(parents=True)
    cmd = split_cmd(bins, pipeline, out_dir, "--id-map", sim_dir / "id_map.csv")
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert files_under(out_dir) == ["targets.csv", "targets.csv/keep"], files_under(out_dir)


def test_score_prediction_with_other_genes(pipeline, bins, out_dir, tmp_path):
    truth = read_parquet(pipeline["de_truth"])
    genes = gene_columns(truth, DE_KEYS)
    pred = truth.rename(columns={genes[3]: "NOT_A_GENE"})
    write_de(pred, tmp_path / "pred.parquet")
    assert_clean_failure(
        [bins["score"], "--prediction", tmp_path / "pred.parquet", "--truth", pipeline["de_truth"],
         "--out-table", out_dir / "scores.csv", "--plot", out_dir / "scores.png"],
        out_dir, genes[3])
    # One gene fewer.
    write_de(truth.drop(columns=[genes[-1]]), tmp_path / "pred.parquet")
    assert_clean_failure(
        [bins["score"], "--prediction", tmp_path / "pred.parquet", "--truth", pipeline["de_truth"],
         "--out-table", out_dir / "scores.csv", "--plot", out_dir / "scores.png"],
        out_dir, f"gene `{genes[-1]}` of the truth is missing")
    # One gene more: named too.
    write_de(truth.assign(EXTRA_GENE=0.0), tmp_path / "pred.parquet")
    assert_clean_failure(
        [bins["score"], "--prediction", tmp_path / "pred.parquet", "--truth", pipeline["de_truth"],
         "--out-table", out_dir / "scores.csv", "--plot", out_dir / "scores.png"],
        out_dir, "(e.g. `EXTRA_GENE`)")


def test_score_mismatched_pairs(pipeline, bins, out_dir, tmp_path):
    truth = read_parquet(pipeline["de_truth"])
    missing = truth.iloc[1:]
    write_de(missing, tmp_path / "missing.parquet")
    assert_clean_failure(
        [bins["score"], "--prediction", tmp_path / "missing.parquet", "--truth", pipeline["de_truth"],
         "--out-table", out_dir / "scores.csv", "--plot", out_dir / "scores.png"],
        out_dir, str(truth["sm_name"].iloc[0]))
    extra = pd.concat([truth, truth.iloc[[0]].assign(sm_name="Compound-999")], ignore_index=True)
    write_de(extra, tmp_path / "extra.parquet")
    assert_clean_failure(
        [bins["score"], "--prediction", tmp_path / "extra.parquet", "--truth", pipeline["de_truth"],
         "--out-table", out_dir / "scores.csv", "--plot", out_dir / "scores.png"],
        out_dir, "Compound-999")


def test_pseudobulk_inputs_with_other_gene_order(pipeline, bins, sim_dir, out_dir, tmp_path):
    reversed_genes = tmp_path / "genes_reversed.txt"
    reversed_genes.write_text("\n".join(reversed(genes_of(sim_dir))) + "\n")
    other = tmp_path / "ingest_reversed"
    run([bins["ingest"], "--counts", sim_dir / "truth" / "adata_test.parquet",
         "--obs", sim_dir / "truth" / "adata_test_obs_meta.csv", "--genes", reversed_genes,
         "--out-counts", other / "counts.parquet", "--out-obs", other / "obs.parquet"])
    assert_clean_failure(
        [bins["pseudobulk"], "--counts", pipeline["train_counts"], "--obs", pipeline["train_obs"],
         "--counts", other / "counts.parquet", "--obs", other / "obs.parquet", "--out", out_dir / "pb.parquet"],
        out_dir, "gene")


def test_merge_de_tables_with_other_genes(pipeline, bins, out_dir, tmp_path):
    tables = list(pipeline["de_truth_per_type"].values())
    assert len(tables) == 2
    second = read_parquet(tables[1])
    genes = gene_columns(second, DE_KEYS)
    write_de(second.rename(columns={genes[0]: "NOT_A_GENE"}), tmp_path / "renamed.parquet")
    assert_clean_failure([bins["merge-de"], tables[0], tmp_path / "renamed.parquet", "--out", out_dir / "m.parquet"],
                         out_dir, "genes")
    write_de(second[DE_KEYS + genes[::-1]], tmp_path / "reordered.parquet")
    assert_clean_failure([bins["merge-de"], tables[0], tmp_path / "reordered.parquet", "--out", out_dir / "m.parquet"],
                         out_dir, "genes")


# --- 6. the workflow -------------------------------------------------------------------------------------

def snakemake(workdir, *args, check=True):
    if not SNAKEMAKE.exists():
        pytest.fail(f"{SNAKEMAKE} is missing: run scripts/setup", pytrace=False)
    cmd = [SNAKEMAKE, *args]
    if check:
        return run(cmd, cwd=workdir)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=workdir)


def job_stats(text):
    """The first `Job stats:` table of a dry run, as {rule: count}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    jobs = {}
    for line in lines[start + 1:]:
        m = re.fullmatch(r"\s*(\S+)\s+(\d+)\s*", line)
        if m is None:
            continue
        if m.group(1) == "total":
            break
        jobs[m.group(1)] = int(m.group(2))
    return jobs


@pytest.fixture(scope="module")
def workflow_dir(demo_workflow):
    """The session's demo workflow run (conftest demo_workflow: `snakemake -c2 all` on the default
    config) and the arguments that plan in it as it ran. The tests here only read it and dry-run."""
    return demo_workflow, workflow_args(demo_workflow)


def test_workflow_scores_zero_route(workflow_dir):
    d, _ = workflow_dir
    scores = pd.read_csv(d / "results" / "scores" / "scores.csv")
    assert list(scores.columns[:4]) == ["route", "kind", "clip", "mrrmse"]
    assert {"zero", "global_mean", "mean_cell_type", "mean_compound"} <= set(scores["route"]), scores
    value = float(scores.loc[scores["route"] == "zero", "mrrmse"].iloc[0])
    # The same number from the route's own table and from numpy on the workflow's files.
    _, overall = read_scores(d / "results" / "scores" / "zero.csv")
    truth = read_parquet(d / "results" / "de" / "truth.parquet")
    _, expected = numpy_mrrmse(truth, read_parquet(d / "results" / "predictions" / "zero.parquet"))
    assert value == overall
    assert abs(value - expected) <= 1e-12, (value, expected)
    print(f"\nworkflow zero-route MRRMSE: {value!r}")


def test_workflow_de_train_has_the_official_rows(workflow_dir):
    """de_train keeps the positive controls (SPEC §3: 12 control=True rows on the real data,
    6 cell types x 2 here); the table the regressors fit leaves them out (filter.regressors)."""
    d, _ = workflow_dir
    de = read_parquet(d / "results" / "de" / "de_train.parquet")
    control = de[de["control"].astype(bool)]
    assert sorted(set(control["sm_name"].astype(str))) == sorted(POSITIVE_CONTROLS)
    assert len(control) == 12 and control.groupby("sm_name").size().eq(6).all(), control[["cell_type", "sm_name"]]
    fit = read_parquet(d / "results" / "de" / "de_train_fit.parquet")
    assert len(fit) == len(de) - 12 and not fit["control"].astype(bool).any()
    # The models train without them.
    obs = read_parquet(d / "results" / "filter" / "obs.parquet")
    assert not set(obs["sm_name"].astype(str)) & set(POSITIVE_CONTROLS)


def direct_limma(pb, cell_type, tmp_path):
    """DIRECT_LIMMA_R on one cell type's rows of a pseudo-bulk frame: sm_name x genes."""
    pb = pb[pb["cell_type"].astype(str) == cell_type].reset_index(drop=True)
    genes = gene_columns(pb, PB_KEYS)
    samples = pb[["sm_name", "donor_id", "plate_name", "row", "well"]].astype(str)
    samples.insert(0, "sample", [f"s{i + 1}" for i in range(len(pb))])
    samples.to_csv(tmp_path / "samples.csv", index=False)
    counts = pd.DataFrame(pb[genes].to_numpy().T, index=pd.Index(genes, name="gene"), columns=samples["sample"])
    counts.astype(np.int64).to_csv(tmp_path / "counts.csv")
    script = tmp_path / "direct_limma.R"
    script.write_text(DIRECT_LIMMA_R)
    run(["Rscript", script, tmp_path / "counts.csv", tmp_path / "samples.csv", NEGATIVE_CONTROL, tmp_path / "direct.csv"])
    return pd.read_csv(tmp_path / "direct.csv", dtype={"sm_name": str}).set_index("sm_name").sort_index()


def test_workflow_de_train_equals_direct_limma_on_every_cell(workflow_dir, tmp_path):
    """The whole demo de_train (every cell type, the positive controls' rows included) equals
    limma run directly by a test R script on a pandas groupby pseudo-bulk of every cell of the
    raw simulator files, to 1e-8."""
    d, _ = workflow_dir
    pb, _ = pandas_pseudobulk(d / "results" / "simulated")
    de = read_parquet(d / "results" / "de" / "de_train.parquet")
    genes = gene_columns(de, DE_KEYS)
    worst = {}
    for ct in sorted(set(de["cell_type"].astype(str))):
        direct = direct_limma(pb, ct, tmp_path)
        got = de[de["cell_type"].astype(str) == ct].astype({"sm_name": str}).set_index("sm_name").sort_index()
        assert list(got.index) == list(direct.index), ct
        assert set(POSITIVE_CONTROLS) <= set(got.index), ct
        worst[ct] = float(np.abs(got[genes].to_numpy() - direct[genes].to_numpy()).max())
    print(f"\nde_train vs direct limma on every cell, max |diff| per cell type: {worst}")
    assert len(worst) == 6 and max(worst.values()) <= 1e-8, worst


def test_workflow_second_run_has_nothing_to_do(workflow_dir):
    d, args = workflow_dir
    proc = snakemake(d, "-n", *args)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# Everything before the DE stage: none of it may rerun when only a limma parameter changes.
UPSTREAM_RULES = {"simulate", "ingest", "ingest_truth", "filter", "split", "pseudobulk_train",
                  "pseudobulk_truth", "train_model"}
# The DE stage and what follows it in the commit this test was written against (later routes,
# e.g. regressors fed by de_train, may add more downstream rules).
DE_AND_DOWNSTREAM_RULES = {"limma_train", "limma_truth", "de_train", "de_truth", "baseline",
                           "score", "submission", "scores_table", "all"}


def test_workflow_limma_parameter_change_reruns_only_de(workflow_dir):
    d, args = workflow_dir
    proc = snakemake(d, "-n", "--quiet", "rules", *args, 'de={design: "~0+Rpert+donor_id+plate_name"}')
    jobs = job_stats(proc.stdout + proc.stderr)
    print(f"\nscheduled after a design change: {jobs}")
    assert not set(jobs) & UPSTREAM_RULES, f"upstream rules rescheduled: {jobs}"
    assert DE_AND_DOWNSTREAM_RULES <= set(jobs), f"scheduled: {jobs}"
    n_cell_types = len(read_parquet(d / "results" / "de" / "de_train.parquet")["cell_type"].unique())
    assert jobs["limma_train"] == n_cell_types == 6, jobs
    assert jobs["limma_truth"] == 2, jobs  # B cells and Myeloid cells


@pytest.mark.parametrize("override, expected", [
    ("xgb={eta: 0}", "xgb.eta: must be > 0"),
    ("forest={n_trees: 0}", "forest.n_trees: must be at least 1"),
    ("train={common: {min_epochs: 50, max_epochs: 10}}", "train.min_epochs: 50 is more than max_epochs 10"),
    ("train={dgd: {dirichlet_alpha: 0}}", "train.dirichlet_alpha: must be > 0"),
    ("xgb={tree_method: magic}", "magic"),
])
def test_workflow_bad_typed_values_fail_before_any_job(workflow_dir, override, expected):
    """The typed sections are checked by their Rust types (pgen-config check) when the
    workflow loads, so a bad value stops even a dry run, naming its key."""
    d, args = workflow_dir
    proc = snakemake(d, "-n", *args, override, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert expected in out, out
    assert "Job stats" not in out, out
