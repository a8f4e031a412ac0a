"""Config-time checks (issue 11, point 8): a bad config stops the workflow before any job, with
one line `config: <dotted key>: <reason>` and a non-zero exit: schema errors (no schema dump),
the typed sections (pgen-config check), and the config against the cells whenever their obs can
be read when the workflow loads (here: the demo simulation as a Kaggle folder, as an existing
simulation, as an .h5ad); otherwise rule check_config stops the run right after ingest.

Each case runs the repository's Snakefile in a fresh temporary working directory (`-d`), so
nothing of the checkout's results/ is read or written. Dry runs parse only (about a second)."""
import re
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import BIN_DIR, REPO

SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
DMSO = "Dimethyl Sulfoxide"
CONTROLS = {DMSO, "Dabrafenib", "Belinostat"}


def snakemake(workdir, *args, config=(), configfiles=()):
    if not SNAKEMAKE.exists():
        pytest.fail(f"{SNAKEMAKE} is missing: run scripts/setup", pytrace=False)
    cmd = [SNAKEMAKE, *args, "--snakefile", REPO / "workflow" / "Snakefile", "-d", workdir,
           "--configfile", REPO / "config" / "config.yaml", *configfiles, "--config", f"bin_dir={BIN_DIR}", *config]
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=workdir)
    return proc, proc.stdout + proc.stderr


def files_under(path):
    return {p.relative_to(path): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()} if path.exists() else {}


def assert_one_line_failure(proc, out, key, fragment):
    """Non-zero exit; exactly one `config: ` line, naming `key` (a prefix ending in `.` allows
    any key below it) and containing `fragment`; no schema dump, no job table."""
    assert proc.returncode != 0, out
    lines = [line for line in out.splitlines() if line.startswith("config: ")]
    assert len(lines) == 1, out
    line = lines[0]
    prefix = f"config: {key}" if key.endswith(".") else f"config: {key}: "
    assert line.startswith(prefix), (prefix, line)
    assert fragment in line, (fragment, line)
    assert "Failed validating" not in out and "$schema" not in out, out
    assert "Job stats" not in out and "localrule" not in out, out
    assert len([x for x in out.splitlines() if x.strip()]) <= 5, out
    return line


@pytest.fixture
def workdir(tmp_path):
    d = tmp_path / "wd"
    d.mkdir()
    return d


# --- schema and typed sections: no data needed --------------------------------------------------------

SCHEMA_CASES = {
    "unknown-top-level-key": (["foo=1"], "foo", "unknown key (top-level keys: input, simulate"),
    "unknown-nested-key": (["xgb={etaa: 0.1}"], "xgb.etaa", "did you mean `eta`?"),
    "wrong-type": (["threads={xgb: two}"], "threads.xgb", 'expected integer, found "two"'),
    "pair-syntax": (['split={mode: holdout, holdout: {pairs: ["NK cells Foo"]}}'], "split.holdout.pairs[0]",
                    '"NK cells Foo" is not a hold-out pair "cell type|compound"'),
    "pair-cell-type-not-in-cell_types": (['split={mode: holdout, holdout: {pairs: ["NK cells|Belinostat"]}}',
                                          "cell_types=[B cells]"], "split.holdout.pairs[0]",
                                         "cell type `NK cells` is not in cell_types"),
    # Added on the Rust side (pgen-config check, run when the workflow loads).
    "min-epochs-above-max": (["train={common: {min_epochs: 50, max_epochs: 10}}"], "train.", "min_epochs"),
    "design-unknown-column": (['de={design: "~0+Rpert+nonexistent"}'], "de.design", "nonexistent"),
    "write-cells-of-nb-means": (["generate={write_cells: true, emit: mean}"], "generate.write_cells", "needs `emit: sample`"),
    "effect-also-a-covariate": (["train={common: {effects: [plate_name]}}"], "train.effects", "`plate_name` is also in covariates"),
    "unknown-generation-source": (["generate={source: posterior}"], "generate.source", "controls"),
    "auto-without-the-inner-holdout": (["generate={inner_holdout: false}"], "generate.source", "needs `generate.inner_holdout: true`"),
    "shared-models-without-the-inner-holdout": (["generate={inner_holdout: false, inner_models: shared, source: controls, reference: generated_controls, emit: sample}"],
                                                "generate.inner_models", "needs `generate.inner_holdout: true`"),
    "unknown-inner-models": (["generate={inner_models: both}"], "generate.inner_models", "expected one of separate, shared"),
    "unknown-forest-reference": (["forest={reference: generated}"], "forest.reference", "predicted_controls"),
}


# Issue 23: names that collide, settings that used to be silently ignored or to fail mid-run.
LONG_NAME = "T cells " + "x" * 300
SCHEMA_CASES.update({
    "cell-type-file-names-collide": (["cell_types=[T cells CD4+, T cells/CD4+]"], "cell_types[1]",
                                     "`T cells/CD4+` and `T cells CD4+` have the same file name `t_cells_cd4p`"),
    "cell-type-name-too-long": ([f"cell_types=[{LONG_NAME}]"], "cell_types[0]", "cannot name a file"),
    "blend-weights-of-the-wrong-length": (["blend={blends: {b: {routes: [xgb, zero], weights: [0.5]}}}"],
                                          "blend.blends.b.weights", "1 weights for 2 routes"),
    # (Without the generative inner hold-out: with it, dgd_avg has an inner run to fit on.)
    "fitted-weights-over-a-generative-route": (["blend={blends: {b: {routes: [xgb, dgd_avg], weights: null}}}",
                                                "generate={inner_holdout: false, source: controls, reference: generated_controls, emit: sample}"],
                                               "blend.blends.b.weights", "give weights for ['dgd_avg']"),
    "unknown-submitted-route": (["leaderboard={submit: xgbb}"], "leaderboard.submit", "is not one of the routes"),
    "empty-drop-list-entry": (["filter={drop_compounds: ['']}"], "filter.drop_compounds", "an empty name"),
    "bin-dir-without-executables": (["bin_dir=/nonexistent"], "bin_dir", "no /nonexistent/pgen-config: build the executables"),
})


@pytest.mark.parametrize("config, key, fragment", SCHEMA_CASES.values(), ids=SCHEMA_CASES.keys())
def test_bad_config_fails_in_one_line_before_any_job(workdir, config, key, fragment):
    proc, out = snakemake(workdir, "-n", config=config)
    assert_one_line_failure(proc, out, key, fragment)
    assert not (workdir / "results").exists()


def test_bad_config_file_fails_in_one_line(workdir):
    bad = workdir / "bad.yaml"
    bad.write_text("filter:\n  drop_compound: [Dabrafenib]\n")
    proc, out = snakemake(workdir, "-n", configfiles=[bad])
    line = assert_one_line_failure(proc, out, "filter.drop_compound", "unknown key; did you mean `drop_compounds`?")
    assert "(filter keys: drop_compounds, min_cells, regressors)" in line
    assert not (workdir / "results").exists()


# --- the config against the cells, read when the workflow loads -----------------------------------

@pytest.fixture(scope="module")
def demo_obs(sim_dir):
    """Cells per (cell type, compound) of the demo simulation."""
    obs = pd.read_csv(sim_dir / "adata_obs_meta.csv", dtype=str)
    return obs.groupby(["cell_type", "sm_name"]).size().unstack(fill_value=0)


def kaggle(sim_dir):
    """The demo simulation read as a Kaggle folder (its obs is readable when the workflow loads)."""
    return f"input={{source: kaggle, kaggle_dir: {sim_dir}}}"


def absent_pair(demo_obs):
    """A cell type and a compound that both have cells, but never together."""
    for compound in demo_obs.columns:
        for cell_type in demo_obs.index:
            if compound not in CONTROLS and demo_obs.loc[cell_type, compound] == 0:
                return cell_type, compound
    pytest.fail("the demo simulation measures every compound in every cell type")


def holdout(pairs=None, **kw):
    inner = [f"pairs: [{', '.join(repr(p) for p in pairs)}]"] if pairs else []
    inner += [f"{k}: {v}" for k, v in kw.items()]
    return f"split={{mode: holdout, holdout: {{{', '.join(inner)}}}}}"


def largest_training_compound(demo_obs):
    per = demo_obs.sum(axis=0).drop([DMSO, "Dabrafenib", "Belinostat"])
    return per.idxmax(), int(per.max())


def data_cases(demo_obs):
    t, c = absent_pair(demo_obs)
    largest, n = largest_training_compound(demo_obs)
    return {
        "pair-unknown-compound": ([holdout(["NK cells|Belinostat", "NK cells|Foo"])], "split.holdout.pairs[1]",
                                  "`NK cells|Foo`: no such compound `Foo` in"),
        "pair-unknown-cell-type": ([holdout(["NK cels|Belinostat"])], "split.holdout.pairs[0]",
                                   "no such cell type `NK cels` in"),
        "pair-never-measured-together": ([holdout([f"{t}|{c}"])], "split.holdout.pairs[0]",
                                         f"`{t}|{c}`: no such cells in"),
        "holdout-cell-type-unknown": ([holdout(cell_types="[NK cells, Foo cells]")], "split.holdout.cell_types[1]",
                                      "no such cell type `Foo cells`"),
        "holdout-draw-too-many": ([holdout(cell_types="[NK cells]", draw=1000)], "split.holdout.draw",
                                  "1000 compounds asked, but only"),
        "inner-cell-type-unknown": (["blend={inner: {cell_types: [Foo cells]}}"], "blend.inner.cell_types[0]",
                                    "no such cell type `Foo cells`"),
        "cell-types-unknown": (["cell_types=[B cells, Myeloid cells, NK cell]"], "cell_types[2]",
                               "no such cell type `NK cell` in"),
        "drop-compound-unknown": (["filter={drop_compounds: [Dabrafenib, Foo]}"], "filter.drop_compounds[1]",
                                  "no such compound `Foo`"),
        "negative-control-unknown": (["de={negative_control: DMSO}"], "de.negative_control",
                                     "no such compound `DMSO`"),
        "min-cells-above-every-compound": (["filter={min_cells: 1000000}"], "filter.min_cells",
                                           f"1000000 drops every compound: the largest, `{largest}`, has {n} "),
    }


DATA_CASE_IDS = ["pair-unknown-compound", "pair-unknown-cell-type", "pair-never-measured-together",
                 "holdout-cell-type-unknown", "holdout-draw-too-many", "inner-cell-type-unknown",
                 "cell-types-unknown", "drop-compound-unknown", "negative-control-unknown",
                 "min-cells-above-every-compound"]


@pytest.mark.parametrize("case", DATA_CASE_IDS)
def test_config_against_the_cells_fails_in_one_line_before_any_job(workdir, sim_dir, demo_obs, case):
    config, key, fragment = data_cases(demo_obs)[case]
    proc, out = snakemake(workdir, "-n", config=[kaggle(sim_dir), *config])
    line = assert_one_line_failure(proc, out, key, fragment)
    assert str(sim_dir / "adata_obs_meta.csv") in line  # says which cells it checked against
    assert not (workdir / "results").exists()


def test_valid_holdout_passes(workdir, sim_dir, demo_obs):
    _, compound = absent_pair(demo_obs)
    measured = [t for t in demo_obs.index if demo_obs.loc[t, compound] > 0]
    proc, out = snakemake(workdir, "-n", "--quiet", "rules",
                          config=[kaggle(sim_dir), holdout([f"{measured[0]}|{compound}"])])
    assert proc.returncode == 0, out
    assert "config: " not in out and "check_config" in out, out


def test_existing_simulation_is_checked_and_left_alone(workdir, sim_dir):
    """source simulate with results/simulated already there (made with the config's settings)."""
    shutil.copytree(sim_dir, workdir / "results" / "simulated")
    before = files_under(workdir / "results")
    proc, out = snakemake(workdir, "-n", config=[holdout(["NK cells|Foo"])])
    assert_one_line_failure(proc, out, "split.holdout.pairs[0]",
                            "no such compound `Foo` in results/simulated/adata_obs_meta.csv")
    assert files_under(workdir / "results") == before


def test_simulation_made_with_other_settings_is_not_held_against_the_config(workdir, sim_dir):
    """simulate.seed differs from the simulation there: it is rerun, so the check waits for its cells
    (rule check_config) instead of judging the config by stale ones."""
    shutil.copytree(sim_dir, workdir / "results" / "simulated")
    proc, out = snakemake(workdir, "-n", "--quiet", "rules", config=[holdout(["NK cells|Foo"]), "simulate={seed: 1}"])
    assert proc.returncode == 0, out
    assert "config: " not in out and re.search(r"check_config\s+1", out), out


def test_study_without_positive_controls(workdir, simulate_bin, tmp_path):
    """A study has no positive controls: the default drop_compounds (Kaggle's) is an error that
    says what to set; with drop_compounds: [] the config passes."""
    study = tmp_path / "study"
    subprocess.run([str(simulate_bin), "--set", "preset=study", "--out", str(study)], check=True, capture_output=True)
    config = [f"input={{source: kaggle, kaggle_dir: {study}}}", holdout(["B cells|Stimulus-1"]),
              "cell_types=[CD14+ Monocytes, B cells, CD4 T cells, NK cells, CD8 T cells]"]
    proc, out = snakemake(workdir, "-n", config=config)
    assert_one_line_failure(proc, out, "filter.drop_compounds[0]",
                            "no such compound `Dabrafenib` in")
    assert "(a study without positive controls: drop_compounds: [])" in out, out
    proc, out = snakemake(workdir, "-n", "--quiet", "rules", config=[*config, "filter={drop_compounds: []}"])
    assert proc.returncode == 0, out
    assert "config: " not in out, out


@pytest.fixture(scope="module")
def study_h5ad(sim_dir, tmp_path_factory):
    """The demo simulation's obs as an .h5ad obs (categorical columns, a study's own names)."""
    import anndata
    import numpy as np

    obs = pd.read_csv(sim_dir / "adata_obs_meta.csv", dtype=str)
    meta = pd.DataFrame(index=pd.Index(obs["obs_id"].to_numpy(dtype=object), dtype=object))
    for name, column in {"celltype": "cell_type", "condition": "sm_name", "donor": "donor_id",
                         "batch": "plate_name", "well": "well"}.items():
        values = obs[column].astype(object).to_numpy()
        meta[name] = pd.Categorical(values, categories=pd.Index(sorted(set(values)), dtype=object))
    path = tmp_path_factory.mktemp("h5ad") / "study.h5ad"
    var = pd.DataFrame(index=pd.Index(["gene_0"], dtype=object))  # anndata 0.12.6 cannot write pandas 3's `str`
    anndata.AnnData(X=np.zeros((len(meta), 1), dtype=np.float32), obs=meta, var=var).write_h5ad(path)
    return path


def test_h5ad_obs_is_checked_through_input_columns(workdir, study_h5ad):
    columns = "{cell_type: celltype, sm_name: condition, donor_id: donor, plate_name: batch}"
    source = f"input={{source: h5ad, h5ad: {{path: {study_h5ad}}}, columns: {columns}}}"
    proc, out = snakemake(workdir, "-n", config=[source, holdout(["NK cells|Foo"])])
    assert_one_line_failure(proc, out, "split.holdout.pairs[0]", f"no such compound `Foo` in {study_h5ad} (obs)")
    proc, out = snakemake(workdir, "-n", "--quiet", "rules", config=[source, holdout(["NK cells|Belinostat"])])
    assert proc.returncode == 0, out
    # Without the mapping, the study's column is not found: named as the key to set.
    proc, out = snakemake(workdir, "-n", config=[f"input={{source: h5ad, h5ad: {{path: {study_h5ad}}}}}",
                                                 holdout(["NK cells|Belinostat"])])
    assert_one_line_failure(proc, out, "input.columns", "has no `cell_type` column")
    assert not (workdir / "results").exists()


# --- after ingest: rule check_config ---------------------------------------------------------------

def test_fresh_simulation_stops_right_after_ingest(workdir):
    """The cells do not exist when the workflow loads: the dry run passes; the run stops at rule
    check_config, after ingest and before split, with the same one-line message."""
    config = [holdout(["NK cells|Foo"])]
    proc, out = snakemake(workdir, "-n", "--quiet", "rules", config=config)
    assert proc.returncode == 0 and "config: " not in out, out
    proc, out = snakemake(workdir, "-c2", "--quiet", "rules", config=config)
    assert proc.returncode != 0, out
    lines = [x for x in out.splitlines() if x.startswith("config: ")]
    assert lines == [lines[0]] and lines[0].startswith(
        "config: split.holdout.pairs[0]: `NK cells|Foo`: no such compound `Foo` in results/ingest/obs.parquet"), out
    assert (workdir / "results" / "ingest" / "obs.parquet").exists()
    assert not (workdir / "results" / "split").exists() and not (workdir / "results" / "checks").exists()
    assert lines[0] in (workdir / "logs" / "check_config.log").read_text()
    # Now the simulation is there, the next load stops at once.
    proc, out = snakemake(workdir, "-n", config=config)
    assert_one_line_failure(proc, out, "split.holdout.pairs[0]", "no such compound `Foo`")


# --- sweeps: the Paramspace table is checked row by row when the workflow loads ----------------------

SWEEP_CASES = {
    "unknown-column-key": ("name\txgb.etaa\na\t0.3\n", "xgb.etaa: unknown key; did you mean `eta`?"),
    "column-of-a-shared-stage": ("split.seed\n1\n", "column `split.seed`: `split` is shared by every row"),
    "column-not-a-key": ("eta rate\n0.1\n", "column `eta rate`: expected a dotted config key"),
    "wrong-value-type": ("name\txgb.eta\nfast\tquick\n", 'xgb.eta: expected number, found "quick"'),
    "typed-check": ("train.common.min_epochs\n50\n", "min_epochs"),
    "empty-value": ("xgb.eta\tforest.n_trees\n0.1\t\n", "row 1, column `forest.n_trees`: empty value"),
    "duplicate-rows": ("name\txgb.eta\na\t0.1\na\t0.2\n", "rows named ['a'] more than once"),
    "bad-row-name": ("name\txgb.eta\na/b\t0.1\n", "folder name `a/b`"),
    "write-cells-per-row": ("generate.write_cells\ntrue\n", "column `generate.write_cells`: which files a generation job writes"),
    "inner-holdout-per-row": ("generate.inner_holdout\ntrue\n", "column `generate.inner_holdout`: whether the models are trained for the inner hold-out"),
    "inner-models-per-row": ("generate.inner_models\nshared\n", "column `generate.inner_models`: whether the models are trained for the inner hold-out"),
    "unknown-route-in-blend": ("name\tblend.blends.mine.routes\nb\t[xgb, nope]\n", "blend.blends.mine.routes: ['nope'] are not routes"),
    # Issue 23: rows that cannot name a folder (two sweeps' `..` rows wrote the same one), a
    # column given twice (pandas renamed it `xgb.eta.1`).
    "dot-dot-row": ("name\txgb.eta\n..\t0.1\n", "`..` cannot name a folder"),
    "dot-row": ("name\txgb.eta\n.\t0.1\n", "`.` cannot name a folder"),
    "column-twice": ("xgb.eta\txgb.eta\n0.1\t0.2\n", "column `xgb.eta` is given more than once"),
}


@pytest.mark.parametrize("table, fragment", SWEEP_CASES.values(), ids=SWEEP_CASES.keys())
def test_bad_sweep_fails_in_one_line_before_any_job(workdir, table, fragment):
    (workdir / "sweep.tsv").write_text(table)
    proc, out = snakemake(workdir, "-n", config=[f"sweeps={{grid: {workdir / 'sweep.tsv'}}}"])
    line = assert_one_line_failure(proc, out, "sweeps.grid", fragment)
    assert "sweep.tsv" in line, line
    assert not (workdir / "results").exists()


def test_missing_sweep_file_fails_in_one_line(workdir):
    proc, out = snakemake(workdir, "-n", config=[f"sweeps={{grid: {workdir / 'nope.tsv'}}}"])
    assert_one_line_failure(proc, out, "sweeps.grid", "nope.tsv: no such sweep file")
