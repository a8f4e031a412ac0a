# Shared configuration handling and helper functions (no rules here).
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


_SCHEMA_DIR = os.path.join(workflow.basedir, "workflow", "schemas")
_SCHEMA_DOCS = {}


def _schema_doc(name):
    """A schema file of workflow/schemas (config.schema.yaml, or stages.schema.json which
    pgen-config generates from the Rust parameter types)."""
    if name not in _SCHEMA_DOCS:
        with open(os.path.join(_SCHEMA_DIR, name)) as fh:
            _SCHEMA_DOCS[name] = yaml.safe_load(fh)
    return _SCHEMA_DOCS[name]


def _resolve(schema, doc):
    """Follows `$ref` (within `doc`, or `file#/pointer` into another schema file)."""
    while "$ref" in schema:
        target, _, pointer = schema["$ref"].partition("#")
        if target:
            doc = target
        node = _schema_doc(doc)
        parts = [p for p in pointer.lstrip("#/").split("/") if p]
        for part in parts:
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema, doc


def _coerce_cli_strings(cfg, schema, doc="config.schema.yaml"):
    """`--config key='{a: 1}'` hands nested values over as strings (YAML BaseLoader):
    turn them back into integers/numbers/booleans/null where the schema allows no string."""
    schema, doc = _resolve(schema, doc)
    if isinstance(cfg, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in cfg.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                cfg[key] = _coerce_cli_strings(value, sub, doc)
        return cfg
    items = schema.get("items") or schema.get("prefixItems")
    if isinstance(cfg, list) and isinstance(items, (dict, list)):
        pick = (lambda i: items[min(i, len(items) - 1)]) if isinstance(items, list) else (lambda i: items)
        return [_coerce_cli_strings(v, pick(i), doc) for i, v in enumerate(cfg)]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    for alt in [*schema.get("anyOf", []), *schema.get("oneOf", [])]:
        alt_types = _resolve(alt, doc)[0].get("type", [])
        types = [*types, *([alt_types] if isinstance(alt_types, str) else alt_types)]
    if isinstance(cfg, str) and "string" not in types:
        if "null" in types and cfg in ("null", "None", "~", ""):
            return None
        if "integer" in types:
            try:
                return int(cfg)
            except ValueError:
                pass
        if "boolean" in types and cfg.lower() in ("true", "false"):
            return cfg.lower() == "true"
        if "number" in types:
            try:
                return float(cfg)
            except ValueError:
                pass
    return cfg


def _load_config_checks():
    """workflow/scripts/config_checks.py: the config-time checks, shared with rule check_config."""
    path = os.path.join(workflow.basedir, "workflow", "scripts", "config_checks.py")
    spec = importlib.util.spec_from_file_location("perturbgen_config_checks", path)
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    return checks


CONFIG_CHECKS = _load_config_checks()

# Every config problem stops the workflow as it loads, before any job, with one line
# `config: <dotted key>: <reason>` (raised here at module level, so that Snakemake's report of it
# is that line plus one location line, not the schema).
_coerce_cli_strings(config, _schema_doc("config.schema.yaml"))
try:
    validate(config, schema="../schemas/config.schema.yaml")  # also fills in the defaults
except WorkflowError as _e:
    raise WorkflowError(f"config: {CONFIG_CHECKS.schema_error_line(_e)}") from None


def _check_typed_sections():
    """Runs the typed sections (xgb, forest, train) through their Rust types and checks
    (pgen-config check), so that a bad value stops the workflow before any job, naming its key:
    returns that one-line message, or None. Skipped, with a note, until the executables are built."""
    exe = os.path.join(config["bin_dir"], "pgen-config")
    if not os.path.exists(exe):
        print(f"note: {exe} not built yet: typed config sections not checked (run scripts/setup)", file=sys.stderr)
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="pgen-config-", delete=False) as fh:
        json.dump(config, fh)
    try:
        result = subprocess.run([exe, "check", fh.name], capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    finally:
        os.unlink(fh.name)
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"pgen-config check failed ({result.returncode})"
        return message.removeprefix("error: ").replace(f"{fh.name}: ", "")
    return None


_typed_error = _check_typed_sections()
if _typed_error:
    raise WorkflowError(f"config: {_typed_error}")


def section_params(name, **only):
    """`--params JSON` for the executable of config section `name` (the whole section, or the
    keys given as `only`), shell-quoted; Snakemake reruns the rule when it changes."""
    value = only if only else config[name]
    return f"--params {shlex.quote(json.dumps(value, sort_keys=True))}"


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


STAGE = {
    "models": "results/models",
    "filter": "results/filter",
    "split": "results/split",
    "pseudobulk": "results/pseudobulk",
    "de": "results/de",
    "predictions": "results/predictions",
    "scores": "results/scores",
    "submission": "results/submission",
}

# Routes that produce a prediction table for the targets (later issues add models): baselines,
# regressors (workflow/rules/regress.smk) and the blends named in config blend.blends.
# The generation route (workflow/rules/generate.smk): per trained model, one run (<model>) and
# generate.n_runs runs combined (<model>_avg).
GENERATIVE_ROUTES = [r for m in config["train"]["models"] for r in (m, f"{m}_avg")]
BASE_ROUTES = ["zero", "xgb", "forest", *GENERATIVE_ROUTES]


def _blends_of_this_run():
    """The configured blends whose routes this run has; a blend over a generative route is
    skipped, with a note, when its model is not in train.models."""
    names = []
    for name, spec in config["blend"]["blends"].items():
        missing = [r for r in spec["routes"] if r not in BASE_ROUTES]
        if missing and all(r.removesuffix("_avg") in ("dgd", "nbvae") for r in missing):
            print(f"note: blend {name} skipped: routes {missing} need train.models {config['train']['models']} to include their model", file=sys.stderr)
        elif missing:
            raise WorkflowError(f"config: blend.blends.{name}.routes: {missing} are not routes (routes: {', '.join(BASE_ROUTES)})")
        else:
            names.append(name)
    return names


BLENDS = _blends_of_this_run()
ROUTES = [*BASE_ROUTES, *BLENDS]


def slug(name):
    """File-name form of a cell type ("T cells CD4+" -> "t_cells_cd4p")."""
    return "".join(c if c.isalnum() else "_" for c in name.lower().replace("+", "p")).strip("_")


CELL_TYPES = {slug(c): c for c in config["cell_types"]}


def has_truth():
    """Scores need true DE for the targets: the hold-out's cells, or the simulator's withheld ones."""
    return config["split"]["mode"] == "holdout" or config["input"]["source"] == "simulate"


def all_targets():
    """Final outputs: the ingest QC, the training DE table (unless Kaggle's own is used), each
    route's submission, and the scores table when the targets have a truth."""
    targets = list(INGEST_FILES.values()) + [de_train_path()]
    targets += [f"{STAGE['submission']}/{route}.csv" for route in ROUTES]
    targets += [f"{STAGE['submission']}/submission.csv"]
    if has_truth():
        targets += [f"{STAGE['scores']}/scores.csv", f"{STAGE['scores']}/leaderboard.png"]
    for model in config["train"]["models"]:
        targets += [f"{STAGE['scores']}/loglik/{model}.csv", f"{STAGE['models']}/{model}/latent.png"]
        if has_truth():
            targets += [f"{STAGE['scores']}/replicates/{model}.png"]
    if config["train"]["models"]:
        targets += ["results/generate/sizes.png"]
    return targets


def binary(name):
    """Path of a pgen-* executable; ancient() so a rebuild does not rerun everything."""
    return ancient(os.path.join(config["bin_dir"], name))


def rule_threads(name):
    return config["threads"].get(name, 1)


def rule_resources(name, key, default):
    return config["resources"].get(name, {}).get(key, default)


def simulate_args():
    """Optional pgen-simulate flags from config['simulate'], shell-quoted."""
    sim = config["simulate"]
    args = ["--preset", sim["preset"], "--seed", str(sim["seed"])]
    if sim.get("layout"):
        args += ["--layout", sim["layout"]]
    for key in ("cells", "genes", "compounds", "donors"):
        if sim.get(key) is not None:
            args += [f"--{key}", str(sim[key])]
    return shlex.join(args)


def kaggle_path(name):
    return os.path.join(config["input"]["kaggle_dir"], name)


def h5ad_path():
    """The .h5ad the training cells come from (source h5ad, or set over simulate/kaggle), or None."""
    return config["input"]["h5ad"]["path"]


if config["input"]["source"] == "h5ad":
    if not h5ad_path():
        raise WorkflowError("config: input.source h5ad needs input.h5ad.path (the .h5ad file)")
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


def optional_flag(flag, key):
    """Input function for params: '--flag path' if the rule has input `key`, else ''."""

    def fn(wildcards, input):
        return f"{flag} {shlex.quote(input[key])}" if key in input.keys() else ""

    return fn


def id_map_path():
    if config["input"]["source"] == "simulate":
        return f"{SIM_DIR}/{SIM_FILES['id_map']}"
    return kaggle_path("id_map.csv")


def split_target_args():
    """pgen-split flags choosing the targets."""
    sp = config["split"]
    if sp["mode"] == "id_map":
        return ""  # the id_map comes in as an input file
    hold = sp["holdout"]
    if hold["pairs"]:
        return shlex.join(a for p in hold["pairs"] for a in ("--holdout-pair", p))
    args = ["--holdout-draw", str(hold["draw"])]
    for ct in hold["cell_types"]:
        args += ["--holdout-cell-type", ct]
    return shlex.join(args)


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


# The paths config_checks.py reads (it also runs on its own, in rule check_config) are these.
assert (CONFIG_CHECKS.INGEST_OBS, CONFIG_CHECKS.SIM_DIR) == (INGEST_FILES["obs"], SIM_DIR)


def check_config_params():
    """Rule check_config's params: the config keys it checks (so it reruns when they change) and
    the input that ingest reads (recorded with the result)."""
    return {
        "checked": json.dumps(CONFIG_CHECKS.checked_config(config), sort_keys=True),
        "source": json.dumps(CONFIG_CHECKS.source_identity(config, stamp=False), sort_keys=True),
    }


# The config against the cells (pairs, cell types, compounds, min_cells), whenever they can be
# read now; otherwise rule check_config does the same right after ingest.
try:
    CONFIG_CHECKS.check(config, CONFIG_CHECKS.parse_time_cells(config), CONFIG_CHECKS.parse_time_id_map(config))
except CONFIG_CHECKS.ConfigError as _e:
    raise WorkflowError(f"config: {_e}") from None
