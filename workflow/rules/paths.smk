# Where each stage writes and reads, and the inputs and flags built from the config. Included by
# common.smk.


SIM_DIR = "results/simulated"
INGEST_DIR = "results/ingest"

# Files pgen-simulate writes into its --out folder (Kaggle names, plus truth/ for scoring).
SIM_FILES = {
    "train": "adata_train.parquet",
    "obs": "adata_obs_meta.csv",
    "excluded": "adata_excluded_ids.csv",
    "id_map": "id_map.csv",
    "sample_submission": "sample_submission.csv",
    "genes": "genes.txt",
    "info": "simulation.json",
    "test": "truth/adata_test.parquet",
    "test_obs": "truth/adata_test_obs_meta.csv",
    "true_effects": "truth/true_effects.parquet",
}

INGEST_FILES = {
    "counts": f"{INGEST_DIR}/counts.parquet",
    "obs": f"{INGEST_DIR}/obs.parquet",
    "summary": f"{INGEST_DIR}/summary.json",
    "qc": f"{INGEST_DIR}/qc.png",
}


# A run's own outputs live under results{variant}: variant is "" for the main run and
# /sweeps/<sweep>/<row> for a sweep row (workflow/rules/sweep.smk). Stages before the routes
# (simulate … limma) have no variant: every sweep row shares them.
RUN = "results{variant}"
STAGE = {
    "models": f"{RUN}/models",
    "filter": "results/filter",
    "split": "results/split",
    "pseudobulk": "results/pseudobulk",
    "de": "results/de",
    "predictions": f"{RUN}/predictions",
    "scores": f"{RUN}/scores",
    "submission": f"{RUN}/submission",
}
MODEL_DIR = STAGE["models"]
TARGET_FIGURES = f"{STAGE['scores']}/targets"  # one PNG per target pair (workflow/rules/figures.smk)
GENERATE_DIR = f"{RUN}/generate"
INNER_MODEL_DIR = f"{RUN}/inner/models"  # generate.inner_holdout (workflow/rules/generate_inner.smk)
INNER_GENERATE_DIR = f"{RUN}/inner/generate"
INNER = "results/inner"  # the inner hold-out's pairs (shared); its predictions per run:
INNER_PREDICTIONS = f"{RUN}/inner/predictions"
# The split's training cells without the inner hold-out's pairs (rule filter_inner).
INNER_FILTER = {
    "counts": f"{INNER}/filter/counts.parquet",
    "obs": f"{INNER}/filter/obs.parquet",
    "removed": f"{INNER}/filter/removed.csv",
    "validation": f"{INNER}/filter/validation_ids.txt",
}


def at(path, variant=""):
    """`path` with its {variant} filled in (the main run's by default)."""
    return path.replace("{variant}", variant)


def slug(name):
    """File-name form of a cell type ("T cells CD4+" -> "t_cells_cd4p")."""
    return "".join(c if c.isalnum() else "_" for c in name.lower().replace("+", "p")).strip("_")


def _cell_type_slugs(names):
    """{slug: cell type}; a cell type whose file name is empty, too long or another's is a config
    error naming both (one would silently replace the other's files)."""
    out = {}
    for i, name in enumerate(names):
        s = slug(name)
        if not s or len(s.encode()) > MAX_NAME_BYTES:
            raise WorkflowError(f"config: cell_types[{i}]: `{name[:60]}` cannot name a file (its file name `{s[:60]}` is empty or over {MAX_NAME_BYTES} bytes)")
        if s in out:
            raise WorkflowError(f"config: cell_types[{i}]: `{name}` and `{out[s]}` have the same file name `{s}`: rename one")
        out[s] = name
    return out


MAX_NAME_BYTES = 200  # a file name of results/ (most file systems allow 255 bytes)
CELL_TYPES = _cell_type_slugs(config["cell_types"])


def has_truth():
    """Scores need true DE for the targets: the hold-out's cells, or the simulator's withheld ones."""
    return config["split"]["mode"] == "holdout" or config["input"]["source"] == "simulate"


def ceiling_table():
    """The noise ceiling's score table (workflow/rules/ceiling.smk; the main run's, shared by the
    sweep rows), or None: it needs a truth for the targets and config ceiling.enabled."""
    if has_truth() and config["ceiling"]["enabled"]:
        return at(f"{STAGE['scores']}/ceiling.csv")
    return None


def all_targets():
    """Final outputs: the ingest QC, the training DE table (unless Kaggle's own is used; also as
    .h5ad), each route's submission and its prediction as .h5ad, the scores table, the noise ceiling, the truth as .h5ad and
    the figures per target when the targets have a truth, the models' plots, and each sweep's
    table and plot, and with predict.targets their predictions."""
    targets = list(INGEST_FILES.values()) + [de_train_path()]
    if not config["de"]["use_existing_de_train"]:
        targets += [f"{STAGE['de']}/de_train.h5ad"]
    if has_truth():
        targets += [f"{STAGE['de']}/truth.h5ad", at(TARGET_FIGURES)]
    targets += [at(f"{STAGE['submission']}/{route}.csv") for route in ROUTES]
    targets += [at(f"{STAGE['predictions']}/{route}.h5ad") for route in ROUTES]
    targets += [at(f"{STAGE['submission']}/submission.csv")]
    if has_truth():
        targets += [at(f"{STAGE['scores']}/scores.csv"), at(f"{STAGE['scores']}/leaderboard.png")]
    if ceiling_table():
        targets += [ceiling_table(), at(f"{STAGE['scores']}/ceiling.png")]
    for model in config["train"]["models"]:
        targets += [at(f"{STAGE['scores']}/loglik/{model}.csv"), at(f"{STAGE['models']}/{model}/latent.png")]
        if has_truth():
            targets += [at(f"{STAGE['scores']}/replicates/{model}.png"), at(f"{STAGE['scores']}/probe/{model}.csv"), at(f"{STAGE['scores']}/probe/{model}.png")]
    if config["train"]["models"]:
        targets += [at(f"{GENERATE_DIR}/sizes.png")]
    if config["train"]["models"] and config["generate"]["write_cells"]:
        for model in config["train"]["models"]:
            for k in range(config["generate"]["n_runs"]):
                targets += [at(f"{GENERATE_DIR}/{model}/run{k}_cells{part}") for part in (".parquet", "_obs.parquet", ".h5ad")]
    for name in SWEEPS:
        targets += [f"results/sweeps/{name}/sweep.csv", f"results/sweeps/{name}/sweep.png"]
    targets += predict_outputs()  # with predict.targets (workflow/rules/predict.smk)
    return targets


def kaggle_path(name):
    return os.path.join(config["input"]["kaggle_dir"], name)


def h5ad_path():
    """The .h5ad the training cells come from (source h5ad, or set over simulate/kaggle), or None."""
    return config["input"]["h5ad"]["path"]


if config["input"]["source"] == "h5ad":  # (input.h5ad.path is checked with the typed sections)
    if config["split"]["mode"] != "holdout":
        raise WorkflowError("config: input.source h5ad has no id_map: use split.mode holdout (or source kaggle with input.h5ad.path)")


def ingest_inputs(wildcards):
    """Counts/obs/excluded/genes inputs for ingest: the simulation, the Kaggle folder, or an
    .h5ad (which replaces adata_train.parquet + adata_obs_meta.csv of either)."""
    src = config["input"]["source"]
    if src == "h5ad":
        files = {}
    elif src == "simulate":
        files = {
            "counts": f"{SIM_DIR}/{SIM_FILES['train']}",
            "obs": f"{SIM_DIR}/{SIM_FILES['obs']}",
            "excluded": f"{SIM_DIR}/{SIM_FILES['excluded']}",
            "genes": f"{SIM_DIR}/{SIM_FILES['genes']}",
        }
    else:
        files = {
            "counts": kaggle_path("adata_train.parquet"),
            "obs": kaggle_path("adata_obs_meta.csv"),
        }
        # adata_excluded_ids.csv and de_train.parquet are optional in the Kaggle folder.
        if os.path.exists(kaggle_path("adata_excluded_ids.csv")):
            files["excluded"] = kaggle_path("adata_excluded_ids.csv")
        if os.path.exists(kaggle_path("de_train.parquet")):
            files["genes"] = kaggle_path("de_train.parquet")
    if h5ad_path():
        files.pop("counts", None)
        files.pop("obs", None)
        files["h5ad"] = h5ad_path()
    if config["input"]["h5ad"].get("excluded"):
        files["excluded"] = config["input"]["h5ad"]["excluded"]
    if config["input"].get("genes"):
        files["genes"] = config["input"]["genes"]
    return files


def ingest_cells_args(wildcards, input):
    """pgen-ingest's cell inputs: --h5ad FILE --h5ad-counts WHERE, or --counts/--obs; and the
    study's obs column names (input.columns)."""
    if "h5ad" in input.keys():
        args = ["--h5ad", input.h5ad, "--h5ad-counts", config["input"]["h5ad"]["counts"]]
    else:
        args = ["--counts", input.counts, "--obs", input.obs]
    for name, column in config["input"]["columns"].items():
        args += ["--column", f"{name}={column}"]
    return shlex.join(args)


# Snakemake records (and reruns on) only the params that do not depend on `input`: a rule whose
# flags are built from its inputs also has a `settings` param holding the config behind them.
def optional_flag(flag, key):
    """Input function for params: '--flag path' if the rule has input `key`, else ''."""

    def fn(wildcards, input):
        return f"{flag} {shlex.quote(input[key])}" if key in input.keys() else ""

    return fn


def id_map_path():
    if config["input"]["source"] == "simulate":
        return f"{SIM_DIR}/{SIM_FILES['id_map']}"
    return kaggle_path("id_map.csv")


def truth_cells():
    """Cells whose DE is the truth for the targets: the hold-out, or the simulator's withheld
    test cells (ingested like the training cells)."""
    if config["split"]["mode"] == "holdout":
        return {"truth_counts": f"{STAGE['split']}/holdout_counts.parquet", "truth_obs": f"{STAGE['split']}/holdout_obs.parquet"}
    return {"truth_counts": "results/ingest_truth/counts.parquet", "truth_obs": "results/ingest_truth/obs.parquet"}


def de_train_path():
    if config["de"]["use_existing_de_train"]:
        return kaggle_path("de_train.parquet")
    return f"{STAGE['de']}/de_train.parquet"


def target_cell_type_slugs():
    """Cell types of the target pairs (known once the split checkpoint has run)."""
    import csv

    with open(checkpoints.split.get().output.targets, newline="") as fh:
        names = sorted({row["cell_type"] for row in csv.DictReader(fh)})
    unknown = [n for n in names if slug(n) not in CELL_TYPES]
    if unknown:
        raise ValueError(f"target cell types {unknown} are not in config cell_types {list(CELL_TYPES.values())}")
    return [slug(n) for n in names]


def target_figures_predictions():
    """Rule target_figures' predictions: the configured submission's, or every route's (the
    best-scoring one is read from scores.csv when the job runs)."""
    route = leaderboard_route()
    return [prediction_path("", r) for r in ([route] if route is not None else ROUTES)]


def target_figures_route_flag(wildcards, input):
    """pgen-target-plots' route: --route R (leaderboard.submit), else --scores FILE (its first
    data row, the best route)."""
    route = leaderboard_route()
    return f"--route {shlex.quote(route)}" if route is not None else f"--scores {shlex.quote(input.scores)}"
