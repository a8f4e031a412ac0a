"""File-format contract of pgen-simulate and pgen-ingest, read the way Kaggle users read the
real competition files: pandas with the pyarrow engine.

The simulator must write the Kaggle names, column order and dtypes (SPEC.md section 2);
ingest must keep exactly the simulated counts minus the excluded (obs_id, gene) pairs.
"""

import filecmp
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import LAYOUT_DIR, REPO, ingest, run, simulate

OBS_COLUMNS = [
    "obs_id", "library_id", "plate_name", "well", "row", "col", "cell_id", "donor_id",
    "cell_type", "sm_lincs_id", "sm_name", "SMILES", "dose_uM", "timepoint_hr", "control",
]
DE_KEYS = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]
CELL_TYPES = {
    "NK cells", "T cells CD4+", "T cells CD8+", "T regulatory cells", "B cells", "Myeloid cells",
}
NEGATIVE_CONTROL = "Dimethyl Sulfoxide"
POSITIVE_CONTROLS = {"Dabrafenib", "Belinostat"}

SIM_FILES = [
    "adata_train.parquet", "adata_obs_meta.csv", "adata_excluded_ids.csv", "id_map.csv",
    "sample_submission.csv", "genes.txt", "simulation.json",
    "truth/adata_test.parquet", "truth/adata_test_obs_meta.csv", "truth/true_effects.parquet",
]
INGEST_FILES = ["counts.parquet", "obs.parquet", "summary.json", "qc.png"]


# --- helpers ------------------------------------------------------------------------------

def read_parquet(path):
    return pd.read_parquet(path, engine="pyarrow")


def read_csv(path):
    return pd.read_csv(path, engine="pyarrow")


def read_genes(sim_dir):
    genes = Path(sim_dir, "genes.txt").read_text().splitlines()
    assert genes, "genes.txt is empty"
    assert all(g and g == g.strip() for g in genes), "genes.txt has blank or padded lines"
    assert len(set(genes)) == len(genes), "genes.txt has duplicate genes"
    return genes


def is_stringish(series):
    """Strings as pandas reads them: categorical of strings, object of str, or string dtype."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return all(isinstance(c, str) for c in series.cat.categories)
    if pd.api.types.is_string_dtype(series.dtype):
        return series.map(lambda v: isinstance(v, str)).all()
    return False


def as_str(series):
    """Plain string values, whether the column was categorical, object or string dtype."""
    return series.astype(str)


def is_boolish(series):
    """`control` column: bool, or the strings True/False as pandas may read them from CSV."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return True
    return set(series.astype(str).unique()) <= {"True", "False"}


def to_bool(series):
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype(bool)
    return series.astype(str) == "True"


def pairs(df):
    return set(zip(as_str(df["cell_type"]), as_str(df["sm_name"])))


def check_long_table(path, genes, obs_ids):
    """adata_train.parquet / truth/adata_test.parquet layout."""
    schema = pq.read_schema(path)
    assert schema.names == ["obs_id", "gene", "count", "normalized_count"], schema
    for name in ("obs_id", "gene"):
        t = schema.field(name).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        assert pa.types.is_string(t) or pa.types.is_large_string(t), f"{name}: {schema.field(name).type}"

    df = read_parquet(path)
    assert len(df) > 0
    assert is_stringish(df["obs_id"]) and is_stringish(df["gene"])
    assert df["count"].dtype == np.float64
    assert df["normalized_count"].dtype == np.float64
    counts = df["count"].to_numpy()
    assert np.isfinite(counts).all()
    assert (counts > 0).all(), "long (COO) table should hold non-zero counts only"
    assert (counts == np.round(counts)).all(), "count must hold whole numbers"
    norm = df["normalized_count"].to_numpy()
    assert np.isfinite(norm).all() and (norm >= 0).all()
    assert not df.duplicated(["obs_id", "gene"]).any(), "duplicate (obs_id, gene) rows"
    assert set(as_str(df["gene"]).unique()) <= set(genes), "genes outside genes.txt"
    assert set(as_str(df["obs_id"]).unique()) <= set(obs_ids), "obs_id missing from obs meta"
    return df


def check_obs_meta(df):
    assert list(df.columns) == OBS_COLUMNS
    assert len(df) > 0
    assert df["obs_id"].is_unique
    for col in ["obs_id", "library_id", "plate_name", "well", "row", "cell_id", "donor_id",
                "cell_type", "sm_lincs_id", "sm_name", "SMILES"]:
        assert is_stringish(df[col]), f"{col}: {df[col].dtype}"
    for col in ["col", "dose_uM", "timepoint_hr"]:
        assert pd.api.types.is_numeric_dtype(df[col]), f"{col}: {df[col].dtype}"
    assert is_boolish(df["control"]), df["control"].unique()
    assert set(as_str(df["cell_type"]).unique()) <= CELL_TYPES


# --- simulator output --------------------------------------------------------------------------

def test_simulator_writes_all_files(sim_dir):
    missing = [f for f in SIM_FILES if not (sim_dir / f).is_file()]
    assert not missing, f"missing simulator outputs: {missing}"
    info = json.loads((sim_dir / "simulation.json").read_text())
    assert isinstance(info, dict) and info


def test_obs_meta_columns(sim_dir):
    obs = read_csv(sim_dir / "adata_obs_meta.csv")
    check_obs_meta(obs)
    names = set(as_str(obs["sm_name"]))
    assert NEGATIVE_CONTROL in names, "no negative-control (DMSO) cells"
    control = to_bool(obs["control"])
    sm = as_str(obs["sm_name"])
    assert control[sm.isin(POSITIVE_CONTROLS)].all(), "positive controls must have control=True"
    treated = ~sm.isin(POSITIVE_CONTROLS | {NEGATIVE_CONTROL})
    assert treated.any() and not control[treated].any(), "compound cells must have control=False"


def test_adata_train_layout(sim_dir):
    genes = read_genes(sim_dir)
    obs = read_csv(sim_dir / "adata_obs_meta.csv")
    check_long_table(sim_dir / "adata_train.parquet", genes, as_str(obs["obs_id"]))


def test_excluded_ids_layout(sim_dir):
    ex = read_csv(sim_dir / "adata_excluded_ids.csv")
    assert list(ex.columns) == ["obs_id", "gene"]
    assert is_stringish(ex["obs_id"]) and is_stringish(ex["gene"])


def test_id_map_and_sample_submission(sim_dir):
    genes = read_genes(sim_dir)
    id_map = read_csv(sim_dir / "id_map.csv")
    assert list(id_map.columns) == ["id", "cell_type", "sm_name"]
    assert len(id_map) > 0
    assert pd.api.types.is_integer_dtype(id_map["id"])
    assert id_map["id"].tolist() == list(range(len(id_map)))
    assert set(id_map["cell_type"]) <= {"B cells", "Myeloid cells"}
    assert not id_map.duplicated(["cell_type", "sm_name"]).any()

    # Test pairs are never measured in the training data.
    obs = read_csv(sim_dir / "adata_obs_meta.csv")
    assert not (pairs(id_map) & pairs(obs)), "id_map pairs appear in the training cells"

    sub = read_csv(sim_dir / "sample_submission.csv")
    assert list(sub.columns) == ["id"] + genes
    assert sub["id"].tolist() == id_map["id"].tolist()
    assert all(pd.api.types.is_numeric_dtype(sub[g]) for g in genes[:50])


def test_truth_files(sim_dir):
    genes = read_genes(sim_dir)
    test_obs = read_csv(sim_dir / "truth" / "adata_test_obs_meta.csv")
    check_obs_meta(test_obs)
    train_obs = read_csv(sim_dir / "adata_obs_meta.csv")
    assert not (set(test_obs["obs_id"]) & set(train_obs["obs_id"])), "test cells also in train"
    check_long_table(sim_dir / "truth" / "adata_test.parquet", genes, as_str(test_obs["obs_id"]))


def test_true_effects_layout(sim_dir):
    genes = read_genes(sim_dir)
    te = read_parquet(sim_dir / "truth" / "true_effects.parquet")
    assert list(te.columns) == DE_KEYS + genes, "true_effects: de_train key columns, then genes.txt"
    for col in ["cell_type", "sm_name", "sm_lincs_id", "SMILES"]:
        assert is_stringish(te[col]), f"{col}: {te[col].dtype}"
    assert is_boolish(te["control"])
    assert (te[genes].dtypes == np.float64).all()
    assert np.isfinite(te[genes].to_numpy()).all()
    assert not te.duplicated(["cell_type", "sm_name"]).any()
    assert set(as_str(te["cell_type"])) <= CELL_TYPES
    assert NEGATIVE_CONTROL not in set(as_str(te["sm_name"])), "DMSO has no DE row"


# --- ingest output -------------------------------------------------------------------------------

def test_ingest_writes_all_files(ingest_dir):
    missing = [f for f in INGEST_FILES if not (ingest_dir / f).is_file()]
    assert not missing, f"missing ingest outputs: {missing}"
    assert (ingest_dir / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((ingest_dir / "summary.json").read_text())
    assert isinstance(summary, dict) and summary


def test_ingest_counts_layout(ingest_dir, sim_dir):
    schema = pq.read_schema(ingest_dir / "counts.parquet")
    assert schema.names == ["obs_id", "gene", "count"], schema
    for name in ("obs_id", "gene"):
        t = schema.field(name).type
        assert pa.types.is_dictionary(t), f"{name} should be dictionary-encoded: {t}"
        assert pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
    assert schema.field("count").type == pa.int32()

    counts = read_parquet(ingest_dir / "counts.parquet")
    obs = read_parquet(ingest_dir / "obs.parquet")
    genes = read_genes(sim_dir)
    assert counts["count"].dtype == np.int32
    assert (counts["count"] > 0).all()

    # Sorted by cell (obs.parquet row order), then gene (genes.txt order).
    cell_idx = pd.Index(as_str(obs["obs_id"])).get_indexer(as_str(counts["obs_id"]))
    gene_idx = pd.Index(genes).get_indexer(as_str(counts["gene"]))
    assert (cell_idx >= 0).all(), "counts.parquet has cells missing from obs.parquet"
    assert (gene_idx >= 0).all(), "counts.parquet has genes missing from genes.txt"
    key = cell_idx.astype(np.int64) * len(genes) + gene_idx
    assert (np.diff(key) > 0).all(), "counts.parquet not strictly sorted by (cell, gene)"


def test_ingest_obs_layout(ingest_dir, sim_dir):
    obs = read_parquet(ingest_dir / "obs.parquet")
    assert list(obs.columns) == OBS_COLUMNS
    assert obs["obs_id"].is_unique
    meta = read_csv(sim_dir / "adata_obs_meta.csv")
    counts = read_parquet(ingest_dir / "counts.parquet")
    assert set(as_str(counts["obs_id"])) <= set(as_str(obs["obs_id"]))
    assert set(as_str(obs["obs_id"])) <= set(as_str(meta["obs_id"]))
    # Same metadata as the CSV for every cell.
    merged = as_str(obs["obs_id"]).to_frame().merge(
        meta.astype({"obs_id": str}), on="obs_id", how="left", validate="one_to_one")
    for col in ["plate_name", "well", "row", "donor_id", "cell_type", "sm_name", "library_id"]:
        assert (as_str(obs[col]).to_numpy() == as_str(merged[col]).to_numpy()).all(), col
    assert (to_bool(obs["control"]).to_numpy() == to_bool(merged["control"]).to_numpy()).all()


def test_ingest_counts_equal_train_minus_excluded(ingest_dir, sim_dir):
    train = read_parquet(sim_dir / "adata_train.parquet")
    train = pd.DataFrame({
        "obs_id": as_str(train["obs_id"]), "gene": as_str(train["gene"]), "count": train["count"],
    })
    ex = read_csv(sim_dir / "adata_excluded_ids.csv").astype(str).drop_duplicates()
    hit = train.merge(ex, on=["obs_id", "gene"], how="left", indicator=True)
    expected = hit.loc[hit["_merge"] == "left_only", ["obs_id", "gene", "count"]]
    assert (hit["_merge"] == "both").any(), "no excluded pair occurs in adata_train: exclusion untested"

    got = read_parquet(ingest_dir / "counts.parquet")
    got = pd.DataFrame({
        "obs_id": as_str(got["obs_id"]), "gene": as_str(got["gene"]), "count": got["count"],
    })
    assert len(got) == len(expected), f"ingest kept {len(got)} entries, expected {len(expected)}"
    both = expected.merge(got, on=["obs_id", "gene"], how="outer", suffixes=("_sim", "_ingest"),
                          indicator=True, validate="one_to_one")
    assert (both["_merge"] == "both").all(), both[both["_merge"] != "both"].head()
    assert (both["count_sim"].to_numpy() == both["count_ingest"].astype(np.float64).to_numpy()).all()


def test_ingest_rejects_bad_input(ingest_bin, sim_dir, tmp_path):
    """Cells missing from the obs table: non-zero exit, one-line error, no outputs."""
    out = tmp_path / "bad"
    out.mkdir()
    proc = subprocess.run(
        [str(ingest_bin), "--counts", str(sim_dir / "adata_train.parquet"),
         "--obs", str(sim_dir / "truth" / "adata_test_obs_meta.csv"),
         "--out-counts", str(out / "counts.parquet"), "--out-obs", str(out / "obs.parquet")],
        capture_output=True, text=True)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert not list(out.iterdir()), "outputs written despite the error"


# --- determinism -----------------------------------------------------------------------------------

def tree_files(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


def test_simulator_same_seed_is_byte_identical(simulate_bin, sim_dir, tmp_path):
    # sim_dir ran with --threads 2: the thread count must not change a byte either.
    again = simulate(simulate_bin, tmp_path / "again", seed=0, threads=1)
    assert tree_files(again) == tree_files(sim_dir)
    differ = [f for f in tree_files(sim_dir) if not filecmp.cmp(sim_dir / f, again / f, shallow=False)]
    assert not differ, f"same seed, different bytes: {differ}"


def test_simulator_different_seed_differs(simulate_bin, sim_dir, tmp_path):
    other = simulate(simulate_bin, tmp_path / "seed1", seed=1)
    for f in ["adata_train.parquet", "truth/true_effects.parquet"]:
        assert not filecmp.cmp(sim_dir / f, other / f, shallow=False), f"{f}: seed 1 == seed 0"


# --- the workflow end to end ------------------------------------------------------------------------

def test_workflow_runs_on_demo(demo_workflow):
    """`snakemake -c2` on the default config, in a scratch working directory."""
    tmp_path = demo_workflow
    for f in INGEST_FILES:
        assert (tmp_path / "results" / "ingest" / f).is_file(), f
    for f in ["logs/simulate.log", "logs/ingest.log",
              "benchmarks/simulate.tsv", "benchmarks/ingest.tsv"]:
        assert (tmp_path / f).is_file(), f


# --- with the real Kaggle layout ----------------------------------------------------------------------

def test_simulator_with_kaggle_layout(simulate_bin, tmp_path):
    """--layout ../shared/kaggle-layout: genes, test pairs and compound identifiers are the
    real competition's."""
    if not LAYOUT_DIR.is_dir():
        pytest.skip(f"{LAYOUT_DIR} not found (CI provides ../shared beside the repository)")
    out = simulate(simulate_bin, tmp_path / "layout", extra=["--set", f"layout={LAYOUT_DIR}"])
    genes = read_genes(out)
    assert genes == (LAYOUT_DIR / "genes.txt").read_text().splitlines(), \
        "genes.txt must be the layout's 18,211 genes in de_train order"

    id_map = read_csv(out / "id_map.csv")
    real_id_map = read_csv(LAYOUT_DIR / "id_map.csv")
    assert id_map.equals(real_id_map), "id_map.csv must equal the layout's id_map.csv"
    te_columns = pq.read_schema(out / "truth" / "true_effects.parquet").names
    assert te_columns == DE_KEYS + genes
    with open(out / "sample_submission.csv") as fh:
        assert fh.readline().rstrip("\n").split(",") == ["id"] + genes

    # Every real de_train row and every test pair has a true effect, with the real identifiers.
    te = read_parquet(out / "truth" / "true_effects.parquet")[DE_KEYS]
    real_rows = read_csv(LAYOUT_DIR / "de_train_rows.csv")
    assert pairs(real_rows) <= pairs(te), "de_train rows missing from true_effects"
    assert pairs(real_id_map) <= pairs(te), "test pairs missing from true_effects"
    merged = real_rows.merge(te.astype({c: str for c in DE_KEYS[:4]}),
                             on=["cell_type", "sm_name"], suffixes=("", "_sim"), validate="one_to_one")
    for col in ["sm_lincs_id", "SMILES"]:
        assert (merged[col] == merged[f"{col}_sim"]).all(), col
    assert (to_bool(merged["control"]) == to_bool(merged["control_sim"])).all()

    obs = read_csv(out / "adata_obs_meta.csv")
    check_obs_meta(obs)
    assert not (pairs(real_id_map) & pairs(obs)), "test pairs measured in the training cells"
