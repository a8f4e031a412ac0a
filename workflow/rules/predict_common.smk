# Helpers for workflow/rules/predict.smk (no rules here).

PREDICT_DIR = "results/predict"
PREDICT_TARGETS = config["predict"]["targets"]


def _predict_models():
    """{name: model folder}: predict.model, named by its folder, or each of train.models as
    this workflow trains it."""
    folder = config["predict"]["model"]
    if folder is not None:
        return {os.path.basename(os.path.normpath(folder)): os.path.normpath(folder)}
    return {m: at(f"{MODEL_DIR}/{m}") for m in config["train"]["models"]}


def _predict_set():
    """The targets' folder name under results/predict: the targets file's name without .csv."""
    name = os.path.basename(PREDICT_TARGETS).removesuffix(".csv")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise WorkflowError(f"config: predict.targets: `{PREDICT_TARGETS}`: its file name names the output folder: letters, digits, `_`, `-`, `.`")
    return name


PREDICT_MODELS = _predict_models() if PREDICT_TARGETS is not None else {}
if PREDICT_TARGETS is not None:
    if not os.path.isfile(PREDICT_TARGETS):
        raise WorkflowError(f"config: predict.targets: no such file `{PREDICT_TARGETS}`")
    if not PREDICT_MODELS:
        raise WorkflowError("config: predict.model: null and train.models is empty: no model to predict with")
    PREDICT_SET = _predict_set()


def predict_outputs():
    """The predict target's files: each model's combined prediction (none without predict.targets)."""
    if PREDICT_TARGETS is None:
        return []
    return [f"{PREDICT_DIR}/{PREDICT_SET}/{m}/prediction.parquet" for m in PREDICT_MODELS]


def predict_inputs(wildcards):
    """Rule predict's input: the predictions; asked for without predict.targets, a config error."""
    if PREDICT_TARGETS is None:
        raise WorkflowError("config: predict.targets: null: set it to a CSV of the pairs to predict (docs/predict.md)")
    return predict_outputs()


def predict_calibration_input():
    """With generate settings set to `auto`, the main run's inner-hold-out pick for each of the
    workflow's own models (a model given as predict.model has none: pgen-predict then says the
    setting needs one)."""
    if not auto_settings(config) or config["predict"]["model"] is not None:
        return {}
    return {"calibration": at(f"{INNER_GENERATE_DIR}/{{model}}/calibration.json")}


def predict_args(wildcards, output):
    """pgen-predict's settings: what the sizes and generate jobs of the main run read."""
    sections = ["sizes", "generate.emit", "generate.seed", "generate.reference", "generate.source", "generate.write_cells", *LIMMA_KEYS, "filter.drop_compounds"]
    if auto_settings(config):
        sections.append("generate.inner_holdout")
    cells = ["--out-cells", output.cells, "--out-cells-obs", output.cells_obs] if "cells" in output.keys() else []
    return shlex.join([*section_flags(sections, config), *cells])


def predict_runs(wildcards):
    return [f"{PREDICT_DIR}/{wildcards.targets}/{wildcards.model}/run{k}.parquet" for k in range(config["generate"]["n_runs"])]
