"""Config-time checks: the workflow configuration against its schema and against the cells.

Shared by the two places that check, so that both say the same thing:

* workflow/rules/common.smk, when the workflow loads (before any job, also for `snakemake -n`):
  a schema error as one line, and the data checks below whenever the cells' obs can already be
  read (`parse_time_cells`: the Kaggle CSV, an .h5ad, a simulation made with the current
  `simulate` settings, or results/ingest/obs.parquet when rule check_config recorded that it was
  ingested from that same input);
* workflow/scripts/check_config.py (rule check_config, an input of split and filter), right after
  ingest, on results/ingest/obs.parquet, for runs whose cells do not exist yet when the workflow
  loads (a fresh simulation).

Every problem is a ConfigError whose text is one line, `<dotted key>: <reason>`
(`split.holdout.pairs[1]: ...`); the callers put `config: ` in front. Standard library only at
import time; pyarrow, numpy and h5py are imported when a table is read.
"""

import csv
import difflib
import json
import os
import re

DMSO = "Dimethyl Sulfoxide"
# The Kaggle data's positive controls (pgen-split never draws them; filter's default drop list).
POSITIVE_CONTROLS = ("Dabrafenib", "Belinostat")
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


# --- the cells -------------------------------------------------------------------------------------


class Cells:
    """Cells per (cell type, compound) of an obs table, and where it was read."""

    def __init__(self, pairs, where):
        self.pairs = dict(pairs)
        self.where = where
        self.cell_types = sorted({t for t, _ in self.pairs})
        self.compounds = sorted({c for _, c in self.pairs})
        self.per_compound = {}
        for (_, c), n in self.pairs.items():
            self.per_compound[c] = self.per_compound.get(c, 0) + n

    def n(self, cell_type, compound):
        return self.pairs.get((cell_type, compound), 0)

    def has_cell_type(self, t):
        return t in set(self.cell_types)

    def has_compound(self, c):
        return c in self.per_compound

    def cell_types_of(self, compound):
        return [t for t in self.cell_types if self.n(t, compound) > 0]

    def no_cell_type(self, t):
        return (f"no such cell type `{t}` in {self.where}{did_you_mean(t, self.cell_types)} "
                f"(cell types: {names(self.cell_types)})")

    def no_compound(self, c):
        return (f"no such compound `{c}` in {self.where}{did_you_mean(c, self.compounds)} "
                f"({len(self.compounds)} compounds: {names(self.compounds, 6, count=False)})")


def _codes(column):
    """(categories, int64 codes without -1) of a pyarrow (chunked) array, nulls as ""."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    column = pc.fill_null(column.cast(pa.string()), "")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.string())
    encoded = pc.dictionary_encode(column)
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype("int64")


def _count(ct, sm, where):
    """Cells from two (categories, codes) columns."""
    import numpy as np

    (ct_cats, ct_codes), (sm_cats, sm_codes) = ct, sm
    keys, counts = np.unique(ct_codes * max(len(sm_cats), 1) + sm_codes, return_counts=True)
    pairs = {}
    for k, n in zip(keys.tolist(), counts.tolist()):
        pair = (ct_cats[k // max(len(sm_cats), 1)], sm_cats[k % max(len(sm_cats), 1)])
        pairs[pair] = pairs.get(pair, 0) + n
    return Cells(pairs, where)


def _missing_column(path, pipeline_name, column, available):
    if column != pipeline_name:
        return ConfigError(f"input.columns.{pipeline_name}: no column `{column}` in {path}"
                           f"{did_you_mean(column, available)} (columns: {names(available, 12)})")
    return ConfigError(f"input.columns: {path} has no `{pipeline_name}` column{did_you_mean(column, available)} "
                       f"(columns: {names(available, 12)}): name the study's with input.columns.{pipeline_name}")


def read_parquet_cells(path):
    """An ingested obs.parquet (the pipeline's column names)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["cell_type", "sm_name"])
    return _count(_codes(table["cell_type"]), _codes(table["sm_name"]), path)


def read_csv_cells(path, columns):
    """An obs CSV (adata_obs_meta.csv layout, or the study's names mapped by input.columns)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with open(path, newline="") as fh:
        header = next(csv.reader(fh), [])
    wanted = {name: columns.get(name, name) for name in ("cell_type", "sm_name")}
    for name, column in wanted.items():
        if column not in header:
            raise _missing_column(path, name, column, header)
    cols = list(dict.fromkeys(wanted.values()))
    table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
        include_columns=cols, column_types={c: pa.string() for c in cols}))
    return _count(_codes(table[wanted["cell_type"]]), _codes(table[wanted["sm_name"]]), path)


def _h5_texts(values):
    return ["" if v is None else v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def _h5_values(node):
    """Texts of a 1-D dataset or of a nullable array group (values + mask; masked = "")."""
    import h5py

    if isinstance(node, h5py.Group):
        values = _h5_texts(node["values"][()])
        if "mask" in node:
            values = ["" if m else v for v, m in zip(values, node["mask"][()].astype(bool))]
        return values
    values = node[()]
    if getattr(values, "ndim", 1) != 1:
        raise ValueError(f"{node.name}: not 1-D")
    return _h5_texts(values)


def read_h5ad_cells(path, columns):
    """The obs of an AnnData .h5ad (categorical, string or nullable-string columns; anndata >= 0.7
    layouts), mapped by input.columns. None for a layout this reader does not know (pgen-ingest
    reads it and says what is wrong)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        obs = f.get("obs")
        if not isinstance(obs, h5py.Group):
            return None
        available = [k for k in obs.keys() if k not in ("__categories", obs.attrs.get("_index", "_index"))]

        def column(name):
            study = columns.get(name, name)
            if study not in obs:
                raise _missing_column(f"{path} (obs)", name, study, available)
            node = obs[study]
            if isinstance(node, h5py.Group) and "categories" in node and "codes" in node:
                cats, codes = _h5_values(node["categories"]), node["codes"][()].astype("int64")
            elif isinstance(node, h5py.Group) and "values" in node:
                cats = _h5_values(node)
                codes = np.arange(len(cats), dtype="int64")
            elif isinstance(node, h5py.Dataset) and "categories" in node.attrs:
                # anndata < 0.8: the codes; the categories in __categories/<column>
                cats, codes = _h5_values(f[node.attrs["categories"]]), node[()].astype("int64")
            elif isinstance(node, h5py.Dataset):
                cats = _h5_values(node)
                codes = np.arange(len(cats), dtype="int64")
            else:
                return None
            cats = [*cats, ""]
            return cats, np.where(codes < 0, len(cats) - 1, codes)

        ct, sm = column("cell_type"), column("sm_name")
    if ct is None or sm is None:
        return None
    # Plain string columns come as one category per row: merge equal names.
    ct, sm = _dedupe(*ct), _dedupe(*sm)
    return _count(ct, sm, f"{path} (obs)")


def _dedupe(cats, codes):
    import numpy as np

    uniq, inverse = np.unique(np.asarray(cats, dtype=object), return_inverse=True)
    return [str(u) for u in uniq], inverse.reshape(-1)[codes]


def read_id_map_cell_types(path):
    with open(path, newline="") as fh:
        return sorted({row["cell_type"] for row in csv.DictReader(fh) if "cell_type" in row})


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


def parse_time_cells(config):
    """The cells as far as they can be read now, or None (then rule check_config checks them
    after ingest). Only data that the run will use: not a simulation made with other settings,
    nor an obs.parquet ingested from another input."""
    kind, path = source_obs(config)
    if not os.path.exists(path):
        return None
    if kind == "csv" and config["input"]["source"] == "simulate" and not simulation_is_current(config):
        return None
    try:
        with open(RECORD) as fh:
            record = json.load(fh)
        if record.get("source") == source_identity(config) and record.get("obs_stamp") == file_stamp(INGEST_OBS):
            return read_parquet_cells(INGEST_OBS)
    except Exception:  # no (readable) record, or obs.parquet unreadable: read the input instead
        pass
    try:
        if kind == "h5ad":
            return read_h5ad_cells(path, config["input"]["columns"])
        return read_csv_cells(path, config["input"]["columns"])
    except ConfigError:
        raise
    except Exception:  # unreadable now: ingest will say what is wrong with it
        return None


def parse_time_id_map(config):
    """(path, cell types) of the id_map targets when it can be read now, else None."""
    if config["split"]["mode"] != "id_map":
        return None
    if config["input"]["source"] == "simulate":
        if not simulation_is_current(config):
            return None
        path = f"{SIM_DIR}/id_map.csv"
    else:
        path = os.path.join(config["input"]["kaggle_dir"], "id_map.csv")
    try:
        return path, read_id_map_cell_types(path)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


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


def check(config, cells=None, id_map=None):
    """Checks the config (the keys of CHECKED_KEYS) against itself and, when given, the cells
    (Cells) and the id_map targets ((path, cell types)). Raises ConfigError on the first problem."""
    cell_types = config["cell_types"]
    control = config["de"]["negative_control"]
    split, hold = config["split"], config["split"]["holdout"]

    first = {}
    for i, t in enumerate(cell_types):
        if t in first:
            raise ConfigError(f"cell_types[{i}]: `{t}` is listed twice (also cell_types[{first[t]}])")
        first[t] = i
    if cells is not None:
        for i, t in enumerate(cell_types):
            if not cells.has_cell_type(t):
                raise ConfigError(f"cell_types[{i}]: {cells.no_cell_type(t)}")
        if not cells.has_compound(control):
            raise ConfigError(f"de.negative_control: {cells.no_compound(control)}")

    def in_cell_types(key, t, why):
        if t not in first:
            raise ConfigError(f"{key}: cell type `{t}` is not in cell_types ({names(cell_types)}), {why}: add it there")

    targets = []  # (key, cell type) of the hold-out's target cell types
    held = set()
    if split["mode"] == "holdout":
        if hold["pairs"]:
            for i, pair in enumerate(hold["pairs"]):
                key = f"split.holdout.pairs[{i}]"
                t, sep, c = pair.partition("|")
                if not (sep and t and c) or "|" in c:
                    raise ConfigError(f'{key}: {show(pair)} is not a hold-out pair "cell type|compound"')
                if c == control:
                    raise ConfigError(f"{key}: `{pair}`: `{c}` is the negative control (de.negative_control), "
                                      f"which every contrast needs")
                if cells is not None:
                    if not cells.has_cell_type(t):
                        raise ConfigError(f"{key}: `{pair}`: {cells.no_cell_type(t)}")
                    if not cells.has_compound(c):
                        raise ConfigError(f"{key}: `{pair}`: {cells.no_compound(c)}")
                    if cells.n(t, c) == 0:
                        raise ConfigError(f"{key}: `{pair}`: no such cells in {cells.where}: `{c}` was measured "
                                          f"in {names(cells.cell_types_of(c))}, not in `{t}`")
                in_cell_types(key, t, "which the DE stage runs for (the held-out truth needs its DE)")
                targets.append((key, t))
                held.add((t, c))
        else:
            if not hold["cell_types"]:
                raise ConfigError("split.holdout.cell_types: empty: name the cell types to draw hold-out "
                                  "compounds in (or list split.holdout.pairs)")
            for i, t in enumerate(hold["cell_types"]):
                key = f"split.holdout.cell_types[{i}]"
                if cells is not None and not cells.has_cell_type(t):
                    raise ConfigError(f"{key}: {cells.no_cell_type(t)}")
                in_cell_types(key, t, "which the DE stage runs for (the held-out truth needs its DE)")
                targets.append((key, t))
            if cells is not None:
                skip = {control, DMSO, *POSITIVE_CONTROLS}
                measured = [c for c in cells.compounds
                            if c not in skip and all(cells.n(t, c) > 0 for t in hold["cell_types"])]
                if hold["draw"] > len(measured):
                    raise ConfigError(f"split.holdout.draw: {hold['draw']} compounds asked, but only {len(measured)} "
                                      f"(besides the controls) are measured in all of {', '.join(hold['cell_types'])} "
                                      f"in {cells.where}")
    elif id_map is not None:
        path, id_cell_types = id_map
        for t in id_cell_types:
            if t not in first:
                raise ConfigError(f"cell_types: lacks `{t}`, a target cell type of {path} "
                                  f"(split.mode id_map), which the DE stage must run for")
    if cells is not None:
        for key, t in targets:
            if cells.n(t, control) == 0:
                raise ConfigError(f"{key}: cell type `{t}` has no `{control}` cells (de.negative_control) "
                                  f"in {cells.where} to contrast with")

    for i, t in enumerate(config["blend"]["inner"]["cell_types"]):
        key = f"blend.inner.cell_types[{i}]"
        if cells is not None and not cells.has_cell_type(t):
            raise ConfigError(f"{key}: {cells.no_cell_type(t)}")
        in_cell_types(key, t, "the cell types of de_train, where the inner hold-out is drawn")

    drop = config["filter"]["drop_compounds"]
    for i, c in enumerate(drop):
        if c == control:
            raise ConfigError(f"filter.drop_compounds[{i}]: `{c}` is the negative control (de.negative_control), "
                              f"which every contrast needs")
    if cells is not None:
        for i, c in enumerate(drop):
            if not cells.has_compound(c):
                hint = " (a study without positive controls: drop_compounds: [])" if c in POSITIVE_CONTROLS else ""
                raise ConfigError(f"filter.drop_compounds[{i}]: {cells.no_compound(c)}{hint}")
        min_cells = config["filter"]["min_cells"]
        # What pgen-filter counts: the split's training cells (the listed hold-out pairs are not
        # among them; a drawn hold-out is unknown here, so this is an upper bound), per compound;
        # the negative control is never dropped, drop_compounds go anyway.
        per_compound = {}
        for (t, c), n in cells.pairs.items():
            if (t, c) not in held and c != control and c not in drop:
                per_compound[c] = per_compound.get(c, 0) + n
        if per_compound and min_cells > max(per_compound.values()):
            largest = max(sorted(per_compound), key=lambda c: per_compound[c])
            raise ConfigError(f"filter.min_cells: {min_cells} drops every compound: the largest, `{largest}`, has "
                              f"{per_compound[largest]} training cells in {cells.where}")
