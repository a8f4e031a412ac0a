# The workflow configuration: loaded, validated against the schema and the Rust parameter types
# (pgen-config check), and which sections each job receives. Included by common.smk.
import importlib.util
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


# The workflow's own files (schemas, scripts, the limma recipe) are found from this file, not from
# the working directory or the main Snakefile (workflow.basedir): another project may use this
# workflow as a module, with its own Snakefile elsewhere (docs/user-guide.md, "As a module").
WORKFLOW_DIR = os.path.dirname(str(workflow.current_basedir))  # <repository>/workflow
REPO_DIR = os.path.dirname(WORKFLOW_DIR)
_SCHEMA_DIR = os.path.join(WORKFLOW_DIR, "schemas")
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
    path = os.path.join(WORKFLOW_DIR, "scripts", f"{name}.py")
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


def _resolve_bin_dir(setting):
    """The folder of the pgen-* executables. An explicit bin_dir is used as written (a relative one
    is relative to the working directory). null: the build next to this workflow
    (<repository>/target/release, relative to the working directory so that a moved project stays
    up to date) if it holds pgen-config, else the folder of the pgen-config on PATH. Returns
    (folder, None) or (None, the one-line reason)."""
    if setting is not None:
        if not os.path.exists(os.path.join(setting, "pgen-config")):
            return None, f"bin_dir: no {os.path.join(setting, 'pgen-config')}: build the executables (scripts/setup) or point bin_dir at them"
        return setting, None
    built = os.path.join(REPO_DIR, "target", "release")
    if os.path.exists(os.path.join(built, "pgen-config")):
        return os.path.relpath(built), None
    on_path = shutil.which("pgen-config")
    if on_path:
        return os.path.dirname(os.path.abspath(on_path)), None
    return None, f"bin_dir: null, and no pgen-config in {built} nor on PATH: build the executables (scripts/setup), put them on PATH, or set bin_dir"


# The executables' folder; no executables is a config error: every job would fail on it, after
# a plan that looked fine.
BIN_DIR, _bin_error = _resolve_bin_dir(config["bin_dir"])
if _bin_error:
    raise WorkflowError(f"config: {_bin_error}")
# The config checks' executable (typed sections; the config against the cells).
PGEN_CONFIG = os.path.join(BIN_DIR, "pgen-config")


def _check_typed_sections(cfg):
    """Runs the typed sections (xgb, forest, train, …) of `cfg` through their Rust types and checks
    (pgen-config check), so that a bad value stops the workflow before any job, naming its key:
    returns that one-line message, or None."""
    exe = PGEN_CONFIG
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


# One prefix for every shell command (set in workflow/Snakefile): bash strict mode (Snakemake's default
# prefix) and the log level of the executables' logs (not a param: changing it reruns
# nothing). XGBoost's OpenMP workers sleep between boosters instead of spinning on other cores.
SHELL_PREFIX = f"set -euo pipefail; export RUST_LOG={shlex.quote(config['log_level'])} OMP_WAIT_POLICY=passive; "


def section_params(name, cfg=None, **only):
    """`--params JSON` for the executable of config section `name` of `cfg` (the main config or
    a sweep row's; the whole section, or the keys given as `only`), shell-quoted; Snakemake
    reruns the rule when it changes."""
    value = only if only else (config if cfg is None else cfg)[name]
    return f"--params {shlex.quote(json.dumps(value, sort_keys=True))}"


# Which config sections each stage's executable receives: its own section first (`--params`;
# `blend.inner` = only that part of `blend`), then the parts of other sections it reads
# (`--section NAME=JSON`; `de.negative_control` = only that key of `de`). Only what a stage
# reads, so that a job reruns exactly when one of its settings changes. The routes' sweep
# ownership (ROUTE_REGISTRY) is derived from the same rows.
LIMMA_KEYS = ("de.design", "de.negative_control", "de.rscript")
JOB_SECTIONS = {
    "simulate": ("simulate",),
    "split": ("split", "de.negative_control"),
    "filter": ("filter", "de.negative_control"),
    "limma": ("de",),
    "inner_split": ("blend.inner",),
    "xgb": ("xgb",),
    "forest": ("forest", *LIMMA_KEYS),
    "sizes": ("sizes",),
    "pseudobulk_half": ("ceiling.seed",),
    "external": ("external", *LIMMA_KEYS),
}


def _section_value(cfg, dotted, into=None):
    """The value of `dotted` nested as in the config (`blend.inner` -> {inner: ...}), merged
    into `into`."""
    head, *rest = dotted.split(".")
    if not rest:
        return cfg[head]
    out = {} if into is None else into
    node, value = out, cfg[head]
    for key in rest[:-1]:
        value = value[key]
        node = node.setdefault(key, {})
    node[rest[-1]] = value[rest[-1]]
    return out


def section_flags(sections, cfg):
    """`--section NAME=JSON` for each config section of the dotted keys `sections`."""
    merged = {}
    for dotted in sections:
        head = dotted.split(".")[0]
        merged[head] = _section_value(cfg, dotted, merged.get(head))
    return [f"--section={name}={json.dumps(value, sort_keys=True)}" for name, value in merged.items()]


def job_params(job, cfg=None):
    """The flags carrying the config sections of JOB_SECTIONS[job] (the main config's, or a
    sweep row's `cfg`), shell-quoted; Snakemake reruns the job when one of them changes."""
    cfg = config if cfg is None else cfg
    own, *others = JOB_SECTIONS[job]
    return shlex.join(["--params", json.dumps(_section_value(cfg, own), sort_keys=True), *section_flags(others, cfg)])


# The limma recipe, by its path relative to the working directory, so that a moved or copied
# project finds its outputs up to date.
LIMMA_SCRIPT = os.path.relpath(os.path.join(REPO_DIR, "scripts", "limma_de.R"))
