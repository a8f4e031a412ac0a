"""limma's numbers as AnnData (pgen-limma --out-h5ad, pgen-merge-de --out-h5ad) and the figures
per target (pgen-target-plots), on the demo simulation:

* `anndata` and `scanpy` read de_train.h5ad / truth.h5ad; obs, var and X equal the parquet
  tables exactly (same rows in the same order);
* the layers agree with X (sign(logFC) * -log10 P.Value) and with an independent numpy BH;
* every layer equals limma's own topTable columns, from an R script written here (1e-12);
* the figures: one PNG per target, Pearson 1 for a prediction equal to the truth.
"""

import shutil

import anndata
import numpy as np
import pandas as pd
import pytest

from conftest import _binary, run
from test_de_stage import DE_KEYS, LIMMA_SCRIPT, NEGATIVE_CONTROL, PB_KEYS, gene_columns, limma_cmd, read_parquet

LAYERS = ["logFC", "AveExpr", "t", "P.Value", "adj.P.Val"]
TRAIN_CELL_TYPES = ["NK cells", "T cells CD4+"]


@pytest.fixture(scope="module")
def bins():
    names = ["split", "pseudobulk", "limma", "merge-de", "ingest", "target-plots"]
    return {n: _binary(f"pgen-{n}") for n in names}


@pytest.fixture(scope="module")
def de(bins, sim_dir, ingest_dir, tmp_path_factory):
    """split -> pseudo-bulk -> limma per cell type (parquet + .h5ad) -> merged de_train and
    truth, both as parquet and .h5ad, the way workflow/rules/de.smk runs them."""
    d = tmp_path_factory.mktemp("de_anndata")
    split = d / "split"
    run([bins["split"], "--counts", ingest_dir / "counts.parquet", "--obs", ingest_dir / "obs.parquet",
         "--id-map", sim_dir / "id_map.csv", "--set", "keep_target_relevant=true", "--set", "seed=0",
         "--out-train-counts", split / "train_counts.parquet", "--out-train-obs", split / "train_obs.parquet",
         "--out-holdout-counts", split / "holdout_counts.parquet", "--out-holdout-obs", split / "holdout_obs.parquet",
         "--out-targets", split / "targets.csv", "--out-validation", split / "validation_ids.txt"])
    run([bins["ingest"], "--counts", sim_dir / "truth" / "adata_test.parquet",
         "--obs", sim_dir / "truth" / "adata_test_obs_meta.csv", "--genes", sim_dir / "genes.txt",
         "--out-counts", d / "truth_cells" / "counts.parquet", "--out-obs", d / "truth_cells" / "obs.parquet"])
    pb_train, pb_truth = d / "pb_train.parquet", d / "pb_truth.parquet"
    run([bins["pseudobulk"], "--counts", split / "train_counts.parquet", "--obs", split / "train_obs.parquet",
         "--threads", 2, "--out", pb_train])
    run([bins["pseudobulk"], "--counts", split / "train_counts.parquet", "--obs", split / "train_obs.parquet",
         "--counts", d / "truth_cells" / "counts.parquet", "--obs", d / "truth_cells" / "obs.parquet",
         "--out", pb_truth])
    out = {"pb_train": pb_train, "targets": split / "targets.csv", "dir": d}
    for kind, pb, cell_types, extra in [
        ("de_train", pb_train, TRAIN_CELL_TYPES, []),
        ("truth", pb_truth, sorted(set(pd.read_csv(split / "targets.csv")["cell_type"])), ["--targets", split / "targets.csv"]),
    ]:
        parts = []
        for ct in cell_types:
            stem = d / kind / ct.replace(" ", "_").replace("+", "p")
            run(limma_cmd(bins, pb, ct, f"{stem}.parquet", *extra, "--out-h5ad", f"{stem}.h5ad"))
            parts.append(stem)
        out[kind] = {"parquet": d / f"{kind}.parquet", "h5ad": d / f"{kind}.h5ad", "parts": parts}
        run([bins["merge-de"], *[f"{p}.parquet" for p in parts], "--out", out[kind]["parquet"]])
        run([bins["merge-de"], *[f"{p}.h5ad" for p in parts], "--route", kind, "--out-h5ad", out[kind]["h5ad"]])
    return out


@pytest.mark.parametrize("kind", ["de_train", "truth"])
def test_anndata_reads_the_table_the_parquet_holds(kind, de):
    a = anndata.read_h5ad(de[kind]["h5ad"])
    table = read_parquet(de[kind]["parquet"])
    genes = gene_columns(table, DE_KEYS)
    assert a.shape == (len(table), len(genes))
    assert list(a.var_names) == genes
    assert list(a.obs.columns) == DE_KEYS
    for col in ["cell_type", "sm_name", "sm_lincs_id", "SMILES"]:
        assert list(a.obs[col].astype(str)) == list(table[col].astype(str)), col
    assert isinstance(a.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert a.obs["control"].dtype == bool
    assert (a.obs["control"].to_numpy() == table["control"].astype(bool).to_numpy()).all()
    assert list(a.obs_names) == [f"{c}|{s}" for c, s in zip(table["cell_type"], table["sm_name"])]
    assert a.X.dtype == np.float64
    assert np.array_equal(a.X, table[genes].to_numpy(np.float64)), "X differs from the parquet values"
    assert sorted(a.layers.keys()) == sorted(LAYERS)
    assert a.uns["route"] == kind
    assert a.uns["settings"]["negative_control"] == NEGATIVE_CONTROL
    assert a.uns["settings"]["design"] == "~0+Rpert+donor_id+plate_name+row"


@pytest.mark.parametrize("kind", ["de_train", "truth"])
def test_layers_agree_with_x(kind, de):
    a = anndata.read_h5ad(de[kind]["h5ad"])
    log_fc, p, adj = a.layers["logFC"], a.layers["P.Value"], a.layers["adj.P.Val"]
    assert ((p >= 0) & (p <= 1)).all() and (adj >= p).all() and (adj <= 1).all()
    x = np.sign(log_fc) * -np.log10(np.where(p == 0, np.finfo(np.float64).eps, p))
    np.testing.assert_allclose(a.X, x, rtol=0, atol=1e-12)
    # Benjamini-Hochberg within each row (one compound's contrast), by hand.
    n = p.shape[1]
    for i in range(a.n_obs):
        order = np.argsort(p[i])[::-1]
        ranked = p[i][order] * n / np.arange(n, 0, -1)
        bh = np.empty(n)
        bh[order] = np.minimum(1, np.minimum.accumulate(ranked))
        np.testing.assert_allclose(adj[i], bh, rtol=1e-12, atol=1e-15)
    # AveExpr describes the gene in its cell type: the same in every row of one cell type.
    for ct, rows in a.obs.groupby("cell_type", observed=True).indices.items():
        ave = a.layers["AveExpr"][rows]
        assert (ave == ave[0]).all(), ct
    assert np.isfinite(a.layers["t"]).all()
    assert (np.sign(a.layers["t"]) == np.sign(log_fc)).all()


TOPTABLE_R = r"""
# limma's own topTable for every compound of one cell type, independently of limma_de.R: the
# official recipe with one makeContrasts / contrasts.fit / eBayes / topTable per compound.
suppressPackageStartupMessages({ library(limma); library(edgeR) })
args <- commandArgs(trailingOnly = TRUE)
counts <- as.matrix(read.csv(args[[1]], row.names = 1, check.names = FALSE))
samples <- read.csv(args[[2]], check.names = FALSE, colClasses = "character")
control <- args[[3]]
Rpert <- factor(samples$sm_name)
donor_id <- factor(samples$donor_id)
plate_name <- factor(samples$plate_name)
row <- factor(samples$row)
design <- model.matrix(~0 + Rpert + donor_id + plate_name + row)
colnames(design) <- make.names(colnames(design))
v <- voom(calcNormFactors(DGEList(counts = counts)), design)
fit <- suppressWarnings(lmFit(v, design))
out <- NULL
for (k in setdiff(levels(Rpert), control)) {
  contr <- makeContrasts(contrasts = paste0(make.names(paste0("Rpert", k)), " - ",
                                            make.names(paste0("Rpert", control))), levels = design)
  tt <- topTable(eBayes(suppressWarnings(contrasts.fit(fit, contr))), number = Inf, sort.by = "none")
  out <- rbind(out, data.frame(sm_name = k, gene = rownames(tt),
                               logFC = sprintf("%.17g", tt$logFC), AveExpr = sprintf("%.17g", tt$AveExpr),
                               t = sprintf("%.17g", tt$t), P.Value = sprintf("%.17g", tt$P.Value),
                               adj.P.Val = sprintf("%.17g", tt$adj.P.Val), check.names = FALSE))
}
write.csv(out, args[[4]], row.names = FALSE)
"""


def test_layers_equal_limma_toptable(de, tmp_path):
    if shutil.which("Rscript") is None:
        pytest.fail("Rscript not found (R with limma and edgeR: scripts/setup)", pytrace=False)
    cell_type = TRAIN_CELL_TYPES[0]
    pb = read_parquet(de["pb_train"])
    pb = pb[pb["cell_type"].astype(str) == cell_type].reset_index(drop=True)
    genes = gene_columns(pb, PB_KEYS)
    samples = pb[["sm_name", "donor_id", "plate_name", "row"]].astype(str)
    samples.insert(0, "sample", [f"s{i + 1}" for i in range(len(pb))])
    samples.to_csv(tmp_path / "samples.csv", index=False)
    pd.DataFrame(pb[genes].to_numpy().T.astype(np.int64), index=pd.Index(genes, name="gene"),
                 columns=samples["sample"]).to_csv(tmp_path / "counts.csv")
    (tmp_path / "toptable.R").write_text(TOPTABLE_R)
    run(["Rscript", tmp_path / "toptable.R", tmp_path / "counts.csv", tmp_path / "samples.csv",
         NEGATIVE_CONTROL, tmp_path / "toptable.csv"])
    ref = pd.read_csv(tmp_path / "toptable.csv", dtype={"sm_name": str, "gene": str})

    a = anndata.read_h5ad(de["de_train"]["h5ad"])
    a = a[a.obs["cell_type"] == cell_type]
    assert sorted(a.obs["sm_name"].astype(str)) == sorted(ref["sm_name"].unique())
    worst = {}
    for layer in LAYERS:
        wide = ref.pivot(index="sm_name", columns="gene", values=layer).loc[list(a.obs["sm_name"].astype(str)), genes]
        got = np.asarray(a.layers[layer])
        diff = np.abs(got - wide.to_numpy(np.float64))
        worst[layer] = diff.max()
        assert diff.max() <= 1e-12, f"{layer}: max |h5ad - topTable| = {diff.max():.3g}"
    assert (ref["P.Value"] < 1e-3).any(), "no strong DE: the comparison is too weak"
    print(f"\n{cell_type}: {a.n_obs} compounds x {len(genes)} genes; max |diff| per layer {worst}")


def test_scanpy_opens_it(de):
    try:
        import scanpy as sc
    except ImportError:
        pytest.fail("scanpy is missing: pip install -r requirements.txt (scripts/setup)", pytrace=False)
    a = sc.read_h5ad(de["truth"]["h5ad"])
    gene = a.var_names[0]
    df = sc.get.obs_df(a, keys=["cell_type", "sm_name", gene], layer="logFC")
    assert np.array_equal(df[gene].to_numpy(), a.layers["logFC"][:, 0])
    # A per-gene summary as a scanpy user would start one: the strongest truth genes.
    sc.pp.calculate_qc_metrics(a, layer="P.Value", percent_top=None, inplace=True)
    assert len(a.var) == a.n_vars


def test_merged_rows_follow_the_parts(de):
    """The merged .h5ad holds each per-cell-type file's rows unchanged."""
    merged = anndata.read_h5ad(de["de_train"]["h5ad"])
    for stem in de["de_train"]["parts"]:
        part = anndata.read_h5ad(f"{stem}.h5ad")
        sub = merged[part.obs_names]
        for layer in LAYERS:
            assert np.array_equal(sub.layers[layer], part.layers[layer]), layer
        assert np.array_equal(sub.X, part.X)


def test_merge_refuses_mixed_inputs(bins, de, tmp_path):
    parts = de["truth"]["parts"]
    proc = __import__("subprocess").run(
        [str(bins["merge-de"]), f"{parts[0]}.h5ad", f"{parts[0]}.parquet", "--out-h5ad", str(tmp_path / "x.h5ad")],
        capture_output=True, text=True)
    assert proc.returncode == 1 and "mix .h5ad and parquet" in proc.stderr
    assert not (tmp_path / "x.h5ad").exists()


def test_target_figures(bins, de, tmp_path):
    """A prediction equal to the truth, picked as the best route of a scores table: one PNG
    per target, Pearson 1 in targets.csv."""
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    shutil.copy(de["truth"]["parquet"], predictions / "perfect.parquet")
    (tmp_path / "scores.csv").write_text("route,mrrmse\nperfect,0.0\nzero,1.0\n")
    out = tmp_path / "targets"
    run([bins["target-plots"], "--truth", de["truth"]["h5ad"], "--scores", tmp_path / "scores.csv",
         "--predictions", predictions, "--out-dir", out])
    index = pd.read_csv(out / "targets.csv")
    truth = read_parquet(de["truth"]["parquet"])
    assert list(index["sm_name"]) == list(truth["sm_name"].astype(str))
    assert sorted(p.name for p in out.glob("*.png")) == sorted(index["file"])
    np.testing.assert_allclose(index["pearson"], 1.0, atol=1e-12)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"
    # Unknown route: one line, exit 1, the old figures untouched.
    proc = __import__("subprocess").run(
        [str(bins["target-plots"]), "--truth", str(de["truth"]["h5ad"]), "--route", "nope",
         "--predictions", str(predictions), "--out-dir", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1 and "nope.parquet" in proc.stderr
    assert len(list(out.glob("*.png"))) == len(index)
