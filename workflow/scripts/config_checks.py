"""Config-time checks: the workflow configuration against its schema and against the cells.

Shared by the two places that check, so that both say the same thing:

* workflow/rules/common.smk, when the workflow loads (before any job, also for `snakemake -n`):
  a schema error as one line, and the data checks whenever the cells' obs can already be read
  (`parse_time_obs`: the Kaggle CSV, an .h5ad, a simulation made with the current `simulate`
  settings, or results/ingest/obs.parquet when rule check_config recorded that it was ingested
  from that same input);
* workflow/scripts/check_config.py (rule check_config, an input of split and filter), right after
  ingest, on results/ingest/obs.parquet, for runs whose cells do not exist yet when the workflow
  loads (a fresh simulation).

The data checks themselves are Rust's (`pgen-config cells`, perturbgen::config_check), reading
the cells with the pipeline's own readers; this module picks the file and turns the answer into
a ConfigError. Every problem is one line, `<dotted key>: <reason>` (`split.holdout.pairs[1]:
...`); the callers put `config: ` in front. Standard library only.
"""

import difflib
import json
import os
import re
import subprocess
import tempfile

# Where rule check_config records what it checked (its output; read back at parse time), and the
# workflow's ingest obs and simulation folder (common.smk asserts they are its own).
RECORD = "results/checks/config.json"
INGEST_OBS = "results/ingest/obs.parquet"
SIM_DIR = "results/simulated"


class ConfigError(Exception):
    """A config problem, one line: `<dotted key>: <reason>`."""


# --- small text helpers ---------------------------------------------------------------------------


def key_path(parts):
    """`split.holdout.pairs[1]` from ("split", "holdout", "pairs", 1)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def show(value, limit=80):
    """A config value as the user wrote it (JSON/YAML-like), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def names(values, limit=8, count=True):
    """`a, b, c, … (20 in all)` (without the count: `a, b, c, …`)."""
    values = [str(v) for v in values]
    if len(values) <= limit:
        return ", ".join(values)
    return ", ".join(values[:limit]) + (f", … ({len(values)} in all)" if count else ", …")


def did_you_mean(word, candidates):
    candidates = [str(c) for c in candidates]
    close = [c for c in candidates if len(str(word)) >= 3 and str(word).lower() in c.lower()][:3]
    close = close or difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.7)
    return f"; did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""


def one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- schema errors ---------------------------------------------------------------------------------


def schema_error_line(exc):
    """One line for a failed `snakemake.utils.validate` (a WorkflowError raised while handling a
    jsonschema ValidationError): the dotted key and the short reason, no schema dump."""
    import jsonschema

    err, seen = exc, set()
    while err is not None and not isinstance(err, jsonschema.ValidationError) and id(err) not in seen:
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    if err is None:
        for arg in getattr(exc, "args", ()):
            if isinstance(arg, jsonschema.ValidationError):
                err = arg
    if err is None:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return one_line(lines[-1] if lines else exc)
    return validation_error_line(err)


def _alternatives(err):
    """The allowed values when every branch of a oneOf/anyOf is a const/enum, else None."""
    if err.validator not in ("oneOf", "anyOf") or not err.context:
        return None
    values = []
    for sub in err.context:
        if list(sub.absolute_path) != list(err.absolute_path):
            return None
        if sub.validator == "const":
            values.append(sub.validator_value)
        elif sub.validator == "enum":
            values.extend(sub.validator_value)
        else:
            return None
    return values


def validation_error_line(err):
    import jsonschema

    values = _alternatives(err)
    if values is None and err.context:
        err = jsonschema.exceptions.best_match([err])
        values = _alternatives(err)
    key = key_path(err.absolute_path)
    where = key or "the config"
    kind, expected, value, schema = err.validator, err.validator_value, err.instance, err.schema
    schema = schema if isinstance(schema, dict) else {}

    if values is not None:
        return f"{where}: expected one of {', '.join(str(v) for v in values)}, found {show(value)}"
    schema_path = list(err.absolute_schema_path)
    if len(schema_path) >= 2 and schema_path[-2] == "propertyNames":
        # A key's name failed: jsonschema reports the name as the instance, at the object's path.
        name = f"{key}.{value}" if key else str(value)
        if kind == "enum":
            return f"{name}: unknown key{did_you_mean(value, expected)} ({where} keys: {names(expected, 20)})"
        if kind == "pattern":
            return f"{name}: key names must match {expected}"
        return f"{name}: bad key name: {one_line(err.message)}"
    if kind == "additionalProperties" and expected is False and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        extra = [k for k in value if k not in allowed and not any(re.search(p, str(k)) for p in patterns)]
        unknown = extra[0] if extra else "?"
        more = f" (and {', '.join(map(str, extra[1:]))})" if len(extra) > 1 else ""
        section = key or "top-level"
        return (f"{key}.{unknown}" if key else str(unknown)) + (
            f": unknown key{more}{did_you_mean(unknown, allowed)} ({section} keys: {names(allowed, 20)})"
        )
    if kind == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        return f"{where}: expected {' or '.join(types)}, found {show(value)}"
    if kind == "enum":
        return f"{where}: expected one of {', '.join(str(v) for v in expected)}, found {show(value)}"
    if kind == "const":
        return f"{where}: expected {show(expected)}, found {show(value)}"
    if kind == "pattern":
        if schema.get("description"):
            return f"{where}: {show(value)} is not {schema['description']}"
        return f"{where}: {show(value)} does not match {expected}"
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    if kind in bounds:
        return f"{where}: must be {bounds[kind]} {expected}, found {show(value)}"
    if kind in ("minItems", "maxItems") and isinstance(value, list):
        word = "at least" if kind == "minItems" else "at most"
        return f"{where}: needs {word} {expected} item{'s' if expected != 1 else ''}, found {len(value)}"
    if kind == "required" and isinstance(value, dict):
        missing = [r for r in expected if r not in value] or list(expected)
        return f"{key + '.' if key else ''}{missing[0]}: missing (required)"
    return f"{where}: {one_line(err.message)}"


# --- which obs can be read when the workflow loads -------------------------------------------------


def source_obs(config):
    """(kind, path) of the obs that ingest reads for this config: an .h5ad or an obs CSV."""
    inp = config["input"]
    if inp["h5ad"]["path"]:
        return "h5ad", inp["h5ad"]["path"]
    if inp["source"] == "kaggle":
        return "csv", os.path.join(inp["kaggle_dir"], "adata_obs_meta.csv")
    return "csv", f"{SIM_DIR}/adata_obs_meta.csv"


def file_stamp(path):
    """[mtime_ns, size] of a file, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def source_identity(config, stamp=True):
    """What the ingested obs.parquet depends on: the obs file ingest reads, as it is now, and the
    column mapping (rule check_config records it; `stamp=False` leaves the file's stamp out)."""
    kind, path = source_obs(config)
    identity = {"kind": kind, "path": path, "columns": dict(sorted(config["input"]["columns"].items()))}
    if stamp:
        identity["stamp"] = file_stamp(path)
    return identity


def simulation_is_current(config):
    """Whether results/simulated was made with the config's simulate settings (else the simulate
    rule reruns, and what is there now says nothing about the cells the run will have)."""
    try:
        with open(f"{SIM_DIR}/simulation.json") as fh:
            made = json.load(fh)["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    sim = config["simulate"]
    if made.get("preset") != sim["preset"] or made.get("seed") != sim["seed"]:
        return False
    layout, made_layout = sim.get("layout"), made.get("layout_dir")
    if bool(layout) != bool(made_layout):
        return False
    if layout and os.path.realpath(layout) != os.path.realpath(made_layout):
        return False
    fields = {"cells": "n_train_cells", "donors": "n_donors"}
    if not layout:
        fields.update({"genes": "n_genes", "compounds": "n_compounds"})
    return all(sim.get(k) is None or made.get(f) == sim[k] for k, f in fields.items())


def parse_time_obs(config):
    """The obs file the cells can be checked against now, or None (then rule check_config checks
    them after ingest). Only data that the run will use: not a simulation made with other
    settings, nor an obs.parquet ingested from another input."""
    kind, path = source_obs(config)
    if not os.path.exists(path):
        return None
    if kind == "csv" and config["input"]["source"] == "simulate" and not simulation_is_current(config):
        return None
    try:
        with open(RECORD) as fh:
            record = json.load(fh)
        if record.get("source") == source_identity(config) and record.get("obs_stamp") == file_stamp(INGEST_OBS):
            return INGEST_OBS
    except (OSError, ValueError):  # no (readable) record: read the input instead
        pass
    return path


def parse_time_id_map(config):
    """The id_map of the targets when it exists now, else None."""
    if config["split"]["mode"] != "id_map":
        return None
    if config["input"]["source"] == "simulate":
        if not simulation_is_current(config):
            return None
        path = f"{SIM_DIR}/id_map.csv"
    else:
        path = os.path.join(config["input"]["kaggle_dir"], "id_map.csv")
    return path if os.path.exists(path) else None


# --- the checks ------------------------------------------------------------------------------------

# The config keys the checks read (rule check_config reruns when they change).
CHECKED_KEYS = (("cell_types",), ("split", "mode"), ("split", "holdout"), ("blend", "inner", "cell_types"),
                ("filter", "drop_compounds"), ("filter", "min_cells"), ("de", "negative_control"))


def checked_config(config):
    """The part of the config `check` reads, nested as in the config."""
    out = {}
    for path in CHECKED_KEYS:
        src, dst = config, out
        for part in path[:-1]:
            src, dst = src[part], dst.setdefault(part, {})
        dst[path[-1]] = src[path[-1]]
    return out


# `pgen-config cells` exit status when the cells cannot be read now (ingest will say why).
UNREADABLE = 3


def check(config, exe, cells=None, id_map=None):
    """Checks the config (the keys of CHECKED_KEYS) against itself and, when given, the cells of
    the obs file `cells` and the id_map file's cell types, through `pgen-config cells` (`exe`).
    Raises ConfigError on the first problem; returns {"cell_types": [...], "compounds": n}
    (None values without cells), or None when the cells cannot be read now."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="pgen-config-", delete=False) as fh:
        json.dump(config, fh)
    cmd = [exe, "cells", fh.name]
    if cells:
        cmd += ["--cells", cells]
    if id_map:
        cmd += ["--id-map", id_map]
    try:
        result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env={**os.environ, "RUST_LOG": "error"})
    finally:
        os.unlink(fh.name)
    if result.returncode == 0:
        return json.loads(result.stdout)
    if result.returncode == UNREADABLE:
        return None
    lines = result.stderr.strip().splitlines()
    line = lines[-1] if lines else f"pgen-config cells failed ({result.returncode})"
    raise ConfigError(line.removeprefix("error: ").replace(f"{fh.name}: ", ""))
