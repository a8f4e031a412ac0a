# Helpers for workflow/rules/generate.smk (no rules here).

def size_forest_exclusions():
    """Compounds whose wells are not compound wells for the size forests: the negative control
    and the positive controls (filter.drop_compounds)."""
    names = [config["de"]["negative_control"], *config["filter"]["drop_compounds"]]
    args = [a for c in dict.fromkeys(names) for a in ("--exclude-compound", c)]
    # The target cell types' measured control wells, for generate.reference: generated.
    return shlex.join([*args, "--negative-control", config["de"]["negative_control"]])


def generation_runs(wildcards, n):
    """Runs 0…n-1 of the model's generation, from the run owning them (a sweep row that
    changes only generate.n_runs or combine shares the main run's)."""
    sections = [s.replace("{model}", wildcards.model) for s in GENERATE_JOB_SECTIONS]
    return [at(f"{GENERATE_DIR}/{wildcards.model}/run{k}.parquet", owner(wildcards.variant, sections)) for k in range(n)]


def generate_params(wildcards):
    """pgen-generate's own keys of `generate` (n_runs and combine are the runs' combination's)
    and the `de` section its limma runs with; inner_holdout only where a setting is `auto` (it
    needs it), so that toggling the inner hold-out reruns no generation of fixed settings."""
    cfg = cfg_of(wildcards)
    g = cfg["generate"]
    auto = {"inner_holdout": True} if auto_settings(cfg) else {}
    own = section_params("generate", emit=g["emit"], seed=g["seed"], reference=g["reference"], source=g["source"], write_cells=g["write_cells"], **auto)
    return shlex.join([*shlex.split(own), *section_flags(LIMMA_KEYS, cfg)])


# generate.source, reference and emit set to `auto` are chosen on the generative inner hold-out:
# every combination of their values generates the inner pairs (run 0's seed) and pgen-calibrate
# picks the best by leaderboard.metric, each at its best clip (perturbgen_models::calibration,
# whose Calibration::candidates lists them in this order).
CALIBRATION_VALUES = {"source": ("prior", "controls"), "reference": ("real", "generated", "generated_controls"), "emit": ("mean", "sample")}
# What the pick depends on besides the generation's own settings.
CALIBRATION_SECTIONS = ("leaderboard.metric", "leaderboard.clip")


def auto_settings(cfg):
    """The generate settings of `cfg` set to `auto`."""
    return [k for k in CALIBRATION_VALUES if cfg["generate"][k] == "auto"]


def calibration_candidates(cfg):
    """`<source>.<reference>.<emit>` of every candidate: the auto settings' values, the others as set."""
    g = cfg["generate"]
    return [".".join(c) for c in itertools.product(*(CALIBRATION_VALUES[k] if g[k] == "auto" else (g[k],) for k in CALIBRATION_VALUES))]


def calibration_owner(variant, model):
    return owner(variant, [*(s.replace("{model}", model) for s in GENERATE_JOB_SECTIONS), *CALIBRATION_SECTIONS])


def calibration_input(wildcards):
    """The inner hold-out's pick for the model, where a generate setting is `auto` (from the run
    owning it)."""
    if not auto_settings(cfg_of(wildcards)):
        return {}
    v = calibration_owner(wildcards.variant, wildcards.model)
    return {"calibration": at(f"{INNER_GENERATE_DIR}/{wildcards.model}/calibration.json", v)}


def calibration_flag(wildcards, input):
    return f"--calibration {shlex.quote(input.calibration)}" if "calibration" in input.keys() else ""


def candidate_generate_params(wildcards):
    """generate_params with the candidate's source, reference and emit."""
    cfg = cfg_of(wildcards)
    g = cfg["generate"]
    source, reference, emit = wildcards.candidate.split(".")
    own = section_params("generate", emit=emit, seed=g["seed"], reference=reference, source=source, write_cells=False)
    return shlex.join([*shlex.split(own), *section_flags(LIMMA_KEYS, cfg)])


def calibration_candidate_paths(wildcards):
    """Each candidate's inner prediction (run 0), in calibration_candidates order."""
    d = at(INNER_GENERATE_DIR, wildcards.variant)
    return [f"{d}/{wildcards.model}/candidates/{c}/run0.parquet" for c in calibration_candidates(cfg_of(wildcards))]


def calibration_args(wildcards):
    """pgen-calibrate's candidates, clips and metric, from the wildcards only: Snakemake records
    (and reruns the job when they change) only params that do not read `input`."""
    cfg = cfg_of(wildcards)
    candidates = [f"--candidate={c}={p}" for c, p in zip(calibration_candidates(cfg), calibration_candidate_paths(wildcards))]
    clips = ",".join("none" if c is None else repr(float(c)) for c in cfg["leaderboard"]["clip"])
    return shlex.join([*candidates, "--clips", clips, "--metric", cfg["leaderboard"]["metric"]])


def generated_cells_outputs():
    """With generate.write_cells (main config: the outputs of a rule cannot differ per sweep
    row), each run's generated cells: the pipeline's long counts table and obs table, and the
    same cells as AnnData (X = counts, CSR) for scanpy."""
    if not config["generate"]["write_cells"]:
        return {}
    cells = f"{GENERATE_DIR}/{{model}}/run{{run}}_cells"
    return {"cells": f"{cells}.parquet", "cells_obs": f"{cells}_obs.parquet", "cells_h5ad": f"{cells}.h5ad"}


def generated_cells_args(wildcards, output):
    if "cells" not in output.keys():
        return ""
    return shlex.join(["--out-cells", output.cells, "--out-cells-obs", output.cells_obs, "--out-cells-h5ad", output.cells_h5ad])


def replicate_outputs():
    """The replicate report (MRRMSE and between-run spread against the number of runs), when
    the targets have a truth."""
    if not has_truth():
        return {}
    return {
        "table": f"{STAGE['scores']}/replicates/{{model}}.csv",
        "plot": report(f"{STAGE['scores']}/replicates/{{model}}.png", category="generation", caption="../report/replicates.rst"),
    }


def replicate_args(wildcards, input, output):
    if "table" not in output.keys():
        return ""
    return shlex.join(["--truth", input.truth, "--out-table", output.table, "--plot", output.plot, "--title", f"{wildcards.model}: replicate generation runs"])


def trained_inner_model(wildcards):
    """generate.inner_holdout: the model trained without the inner pairs' cells (with
    generate.inner_models: shared, the main model itself), from the run owning the main model
    (the inner hold-out's pairs are the same in every run)."""
    d = at(f"{MODEL_DIR if SHARED_INNER_MODELS else INNER_MODEL_DIR}/{wildcards.model}", model_owner(wildcards.variant, wildcards.model))
    return {"model": f"{d}/model.safetensors", "meta": f"{d}/model.json"}


def inner_generation_runs(wildcards, n):
    """Runs 0…n-1 of the inner hold-out's generation, from the run owning them."""
    sections = [s.replace("{model}", wildcards.model) for s in GENERATE_JOB_SECTIONS]
    return [at(f"{INNER_GENERATE_DIR}/{wildcards.model}/run{k}.parquet", owner(wildcards.variant, sections)) for k in range(n)]
