# Shared configuration handling and helper functions (no rules here).
import importlib.util
import json
import os
import re
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


def _load_script_module(name):
    """A module of workflow/scripts/ (shared with the rules that run it as a script)."""
    path = os.path.join(workflow.basedir, "workflow", "scripts", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"perturbgen_{name}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


# The config-time checks, shared with rule check_config.
CONFIG_CHECKS = _load_script_module("config_checks")
_NOTES = set()


def note_once(text):
    """A note on stderr, once per workflow load (input functions may ask again)."""
    if text not in _NOTES:
        _NOTES.add(text)
        print(f"note: {text}", file=sys.stderr)

# Every config problem stops the workflow as it loads, before any job, with one line
# `config: <dotted key>: <reason>` (raised here at module level, so that Snakemake's report of it
# is that line plus one location line, not the schema).
_coerce_cli_strings(config, _schema_doc("config.schema.yaml"))
try:
    validate(config, schema="../schemas/config.schema.yaml")  # also fills in the defaults
except WorkflowError as _e:
    raise WorkflowError(f"config: {CONFIG_CHECKS.schema_error_line(_e)}") from None


def _check_typed_sections(cfg):
    """Runs the typed sections (xgb, forest, train, …) of `cfg` through their Rust types and checks
    (pgen-config check), so that a bad value stops the workflow before any job, naming its key:
    returns that one-line message, or None. Skipped, with a note, until the executables are built."""
    exe = os.path.join(config["bin_dir"], "pgen-config")
    if not os.path.exists(exe):
        note_once(f"{exe} not built yet: typed config sections not checked (run scripts/setup)")
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="pgen-config-", delete=False) as fh:
        json.dump(cfg, fh)
    try:
        result = subprocess.run([exe, "check", fh.name], capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    finally:
        os.unlink(fh.name)
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"pgen-config check failed ({result.returncode})"
        return message.removeprefix("error: ").replace(f"{fh.name}: ", "")
    return None


_typed_error = _check_typed_sections(config)
if _typed_error:
    raise WorkflowError(f"config: {_typed_error}")


# One prefix for every shell command (set in the Snakefile): bash strict mode (Snakemake's default
# prefix) and the log level of the executables' logs (not a param: changing it reruns
# nothing). XGBoost's OpenMP workers sleep between boosters instead of spinning on other cores.
SHELL_PREFIX = f"set -euo pipefail; export RUST_LOG={shlex.quote(config['log_level'])} OMP_WAIT_POLICY=passive; "


def section_params(name, cfg=None, **only):
    """`--params JSON` for the executable of config section `name` of `cfg` (the main config or
    a sweep row's; the whole section, or the keys given as `only`), shell-quoted; Snakemake
    reruns the rule when it changes."""
    value = only if only else (config if cfg is None else cfg)[name]
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
GENERATE_DIR = f"{RUN}/generate"
INNER = "results/inner"  # the inner hold-out's pairs (shared); its predictions per run:
INNER_PREDICTIONS = f"{RUN}/inner/predictions"


def at(path, variant=""):
    """`path` with its {variant} filled in (the main run's by default)."""
    return path.replace("{variant}", variant)


# The route registry: every route that writes results{variant}/predictions/<name>.parquet, with
# the config sections its prediction depends on (a sweep row setting one of them gets its own
# prediction; otherwise it shares the main run's), whether it also has an inner-hold-out run
# (results{variant}/inner/predictions/<name>.parquet, so blends can fit weights over it) and
# whether it is drawn in the p-value histogram. "{model}" entries exist once per trained model
# (train.models). Blends (config blend.blends) are routes too, derived from these. A new route
# is its rule file plus one line here.
class Route:
    def __init__(self, sections=(), inner=False, values=False):
        self.sections, self.inner, self.values = tuple(sections), inner, values


MODEL_SECTIONS = ("train.common", "train.device", "train.precision", "train.{model}")  # rule train_model
GENERATE_JOB_SECTIONS = (*MODEL_SECTIONS, "sizes", "generate.emit", "generate.seed", "generate.reference")  # rule generate
ROUTE_REGISTRY = {
    "zero": Route(inner=True),  # workflow/rules/score.smk
    "xgb": Route(sections=["xgb"], inner=True, values=True),  # workflow/rules/regress.smk
    "forest": Route(sections=["forest"], inner=True, values=True),  # workflow/rules/regress.smk
    "{model}": Route(sections=[*GENERATE_JOB_SECTIONS, "generate.combine"]),  # workflow/rules/generate.smk: run 0
    "{model}_avg": Route(sections=[*GENERATE_JOB_SECTIONS, "generate"], values=True),  # generate.smk: the runs combined
}
INNER_ROUTES = [r for r, spec in ROUTE_REGISTRY.items() if spec.inner and "{model}" not in r]


def base_routes(cfg):
    """{route: Route with its sections filled in} for the models of `cfg`, in registry order."""
    routes = {name: spec for name, spec in ROUTE_REGISTRY.items() if "{model}" not in name}
    for m in cfg["train"]["models"]:
        for name, spec in ROUTE_REGISTRY.items():
            if "{model}" in name:
                routes[name.replace("{model}", m)] = Route([s.replace("{model}", m) for s in spec.sections], spec.inner, spec.values)
    return routes


def blends_of(cfg):
    """The configured blends whose routes `cfg` has; a blend over a generative route is
    skipped, with a note, when its model is not in train.models."""
    base, names = base_routes(cfg), []
    for name, spec in cfg["blend"]["blends"].items():
        if name in base or name in ("submission", "leaderboard", "scores", "inner"):
            raise WorkflowError(f"config: blend.blends.{name}: the name is taken by a route or output; pick another")
        missing = [r for r in spec["routes"] if r not in base]
        if missing and all(r.removesuffix("_avg") in ("dgd", "nbvae") for r in missing):
            note_once(f"blend {name} skipped: routes {missing} need train.models {cfg['train']['models']} to include their model")
        elif missing:
            raise WorkflowError(f"config: blend.blends.{name}.routes: {missing} are not routes (routes: {', '.join(base)})")
        else:
            names.append(name)
    return names


def routes_of(cfg):
    """{route: config sections its prediction depends on}: the base routes, then the blends."""
    routes = {name: spec.sections for name, spec in base_routes(cfg).items()}
    for name in blends_of(cfg):
        members = cfg["blend"]["blends"][name]["routes"]
        routes[name] = (f"blend.blends.{name}", *(s for r in members for s in routes[r]))
    return routes


def leaderboard_route(cfg=None):
    """The route to submit: config leaderboard.submit, else the best-scoring one (with a truth),
    else xgb (no truth to rank by, e.g. the real Kaggle id_map)."""
    cfg = config if cfg is None else cfg
    submit, routes = cfg["leaderboard"]["submit"], routes_of(cfg)
    if submit is not None and submit not in routes:
        raise ValueError(f"leaderboard.submit: `{submit}` is not one of the routes {list(routes)}")
    if submit is None and not has_truth():
        return "xgb"
    return submit


GENERATIVE_ROUTES = [r for r in base_routes(config) if r not in ROUTE_REGISTRY]
BASE_ROUTES = list(base_routes(config))
BLENDS = blends_of(config)
ROUTES = list(routes_of(config))


def slug(name):
    """File-name form of a cell type ("T cells CD4+" -> "t_cells_cd4p")."""
    return "".join(c if c.isalnum() else "_" for c in name.lower().replace("+", "p")).strip("_")


CELL_TYPES = {slug(c): c for c in config["cell_types"]}


def has_truth():
    """Scores need true DE for the targets: the hold-out's cells, or the simulator's withheld ones."""
    return config["split"]["mode"] == "holdout" or config["input"]["source"] == "simulate"


def all_targets():
    """Final outputs: the ingest QC, the training DE table (unless Kaggle's own is used), each
    route's submission, the scores table when the targets have a truth, the models' plots, and
    each sweep's table and plot."""
    targets = list(INGEST_FILES.values()) + [de_train_path()]
    targets += [at(f"{STAGE['submission']}/{route}.csv") for route in ROUTES]
    targets += [at(f"{STAGE['submission']}/submission.csv")]
    if has_truth():
        targets += [at(f"{STAGE['scores']}/scores.csv"), at(f"{STAGE['scores']}/leaderboard.png")]
    for model in config["train"]["models"]:
        targets += [at(f"{STAGE['scores']}/loglik/{model}.csv"), at(f"{STAGE['models']}/{model}/latent.png")]
        if has_truth():
            targets += [at(f"{STAGE['scores']}/replicates/{model}.png")]
    if config["train"]["models"]:
        targets += [at(f"{GENERATE_DIR}/sizes.png")]
    for name in SWEEPS:
        targets += [f"results/sweeps/{name}/sweep.csv", f"results/sweeps/{name}/sweep.png"]
    return targets


def binary(name):
    """Path of a pgen-* executable; ancient() so a rebuild does not rerun everything."""
    return ancient(os.path.join(config["bin_dir"], name))


def rule_threads(name):
    return config["threads"].get(name, 1)


def rule_resources(name, mem_mb=2000, runtime=30):
    """A rule's cluster resources: config resources.<name> (mem_mb, runtime in minutes, and any
    executor resource such as gpu, gres, slurm_partition, slurm_extra) over the given defaults."""
    return {"mem_mb": mem_mb, "runtime": runtime, **config["resources"].get(name, {})}


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
    """Rule check_config's params: the input that ingest reads (recorded with the result). The
    checked config keys are not params: after the first run, every parse checks them against
    the ingested cells itself."""
    return {"source": json.dumps(CONFIG_CHECKS.source_identity(config, stamp=False), sort_keys=True)}


# The config against the cells (pairs, cell types, compounds, min_cells), whenever they can be
# read now; otherwise rule check_config does the same right after ingest.
try:
    CONFIG_CHECKS.check(config, CONFIG_CHECKS.parse_time_cells(config), CONFIG_CHECKS.parse_time_id_map(config))
except CONFIG_CHECKS.ConfigError as _e:
    raise WorkflowError(f"config: {_e}") from None


# Sweeps (config `sweeps`: {name: Paramspace TSV}, workflow/scripts/sweeps.py): each row is a
# variant of this config with its own folder results/sweeps/<name>/<row>/ for the stages its
# columns change; every other stage (and everything before the routes) is the main run's.
SWEEP_MODULE = _load_script_module("sweeps")
VARIANTS = {"": config}  # variant -> its config
VARIANT_KEYS = {"": ()}  # variant -> the dotted keys its sweep row sets
SWEEPS = {}  # sweep name -> its row names, in file order


def _sweep_row_config(where, overrides):
    """The main config with a sweep row's values, validated like the main config."""
    try:
        cfg = SWEEP_MODULE.apply_overrides(config, overrides)
    except SWEEP_MODULE.SweepError as e:
        raise WorkflowError(f"config: {where}: {e}") from None
    _coerce_cli_strings(cfg, _schema_doc("config.schema.yaml"))
    try:
        validate(cfg, schema="../schemas/config.schema.yaml")
    except WorkflowError as e:
        raise WorkflowError(f"config: {where}: {CONFIG_CHECKS.schema_error_line(e)}") from None
    typed_error = _check_typed_sections(cfg)
    if typed_error:
        raise WorkflowError(f"config: {where}: {typed_error}")
    try:
        routes_of(cfg)
        leaderboard_route(cfg)
    except (WorkflowError, ValueError) as e:
        raise WorkflowError(f"config: {where}: {str(e).removeprefix('config: ')}") from None
    return cfg


def sweep_variant(sweep, row):
    """The {variant} of a sweep row: its folder under results/ (and logs/, benchmarks/)."""
    return os.sep + os.path.join("sweeps", sweep, row)


def _load_sweeps():
    for name, path in config["sweeps"].items():
        try:
            rows = SWEEP_MODULE.read_rows(path)
        except SWEEP_MODULE.SweepError as e:
            raise WorkflowError(f"config: sweeps.{name}: {e}") from None
        SWEEPS[name] = [row for row, _ in rows]
        for row, overrides in rows:
            variant = sweep_variant(name, row)
            VARIANTS[variant] = _sweep_row_config(f"sweeps.{name}: {path}, row `{row}`", overrides)
            VARIANT_KEYS[variant] = tuple(overrides)


def cfg_of(wildcards):
    """The config of the run a job belongs to (the main run's or a sweep row's)."""
    return VARIANTS[wildcards.variant]


def owner(variant, sections):
    """The variant whose folder holds a stage depending on the dotted config `sections`: the
    sweep row's own if the row's values differ from the main config's in one of them, else the
    main run's ("": the row shares that stage)."""
    if variant and any(SWEEP_MODULE.lookup(VARIANTS[variant], s) != SWEEP_MODULE.lookup(config, s) for s in sections):
        return variant
    return ""


def route_owner(variant, route):
    return owner(variant, ROUTES_OF[variant][route])


def model_owner(variant, model, *extra):
    return owner(variant, [s.replace("{model}", model) for s in (*MODEL_SECTIONS, *extra)])


def prediction_path(variant, route):
    """Where `route`'s prediction for `variant` is (the main run's when the row leaves it alone)."""
    return at(f"{STAGE['predictions']}/{route}.parquet", route_owner(variant, route))


def score_path(variant, route):
    return at(f"{STAGE['scores']}/{route}.csv", route_owner(variant, route))


def submission_path(variant, route):
    return at(f"{STAGE['submission']}/{route}.csv", route_owner(variant, route))


_load_sweeps()
ROUTES_OF = {v: routes_of(c) for v, c in VARIANTS.items()}
ALL_ROUTES = list(dict.fromkeys(r for routes in ROUTES_OF.values() for r in routes))
ALL_MODELS = list(dict.fromkeys(m for c in VARIANTS.values() for m in c["train"]["models"]))
ALL_BLENDS = list(dict.fromkeys(b for c in VARIANTS.values() for b in blends_of(c)))

VARIANT_PATTERN = "(?:{})".format("|".join(re.escape(v) for v in VARIANTS))
