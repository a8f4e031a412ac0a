"""Hyperparameter sweeps: a Paramspace TSV (one column per dotted config key, one row per
setting) read into named rows of config overrides. Loaded by workflow/rules/common.smk; the
Snakemake side (row configs, which stages a row owns) lives there.

A sweep may vary what comes after the shared upstream stages (ingest, split, filter,
pseudo-bulk, limma): the sections in SWEEPABLE. Every other key would change a stage all rows
share, so it is refused with the reason.
"""
import copy
import re

import yaml

# Config sections a sweep column may set (dotted prefixes) and the stage each one feeds.
SWEEPABLE = {
    "train": "the generative models (pgen-train, pgen-loglik, pgen-generate)",
    "xgb": "pgen-xgb",
    "forest": "pgen-forest",
    "sizes": "pgen-sizes",
    "generate": "pgen-generate",
    "blend.blends": "pgen-blend",
    "leaderboard": "pgen-leaderboard",
}
# A column of the TSV that names the row's folder instead of Paramspace's `key~value_…` pattern.
NAME_COLUMN = "name"
ROW_NAME = re.compile(r"^[A-Za-z0-9_.~+=-]+$")
# A row's folder name: most file systems allow 255 bytes per path component.
MAX_NAME_BYTES = 200


class SweepError(Exception):
    """A bad sweep file: one line naming the file, the row or column and what was expected."""


def _is_under(key, prefix):
    return key == prefix or key.startswith(prefix + ".")


def check_column(path, column):
    """A column header must be a dotted key under a sweepable section."""
    if column == NAME_COLUMN:
        return
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", column):
        raise SweepError(f"{path}: column `{column}`: expected a dotted config key such as xgb.eta or train.common.latent_dim")
    if column == "generate.write_cells":
        raise SweepError(f"{path}: column `{column}`: which files a generation job writes is the same for every row; set it in the main config")
    if column in ("generate.inner_holdout", "generate.inner_models"):
        raise SweepError(f"{path}: column `{column}`: whether the models are trained for the inner hold-out is the same for every row; set it in the main config")
    if not any(_is_under(column, p) for p in SWEEPABLE):
        section = column.split(".")[0]
        raise SweepError(
            f"{path}: column `{column}`: `{section}` is shared by every row of a sweep (it feeds the stages before the "
            f"routes); a sweep varies {', '.join(f'{p}.*' for p in SWEEPABLE)} — use a config file per `{section}` setting"
        )


def parse_value(text):
    """A TSV cell as YAML (0.1 → float, [dgd, nbvae] → list, null → None, dgd → str)."""
    return yaml.safe_load(text)


def read_rows(path):
    """[(row name, {dotted key: value})] of a Paramspace TSV, in file order."""
    import pandas as pd
    from snakemake.utils import Paramspace

    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except FileNotFoundError:
        raise SweepError(f"{path}: no such sweep file (config sweeps)") from None
    except pd.errors.ParserError as e:
        raise SweepError(f"{path}: not a tab-separated table ({str(e).strip()})") from None
    if table.empty or not len(table.columns):
        raise SweepError(f"{path}: expected a header of config keys and at least one row")
    # pandas renames a repeated header `xgb.eta` to `xgb.eta.1`: read the header itself.
    with open(path, newline="") as fh:
        header = next((line.rstrip("\r\n").split("\t") for line in fh if not line.startswith("#")), [])
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise SweepError(f"{path}: column `{repeated[0]}` is given more than once")
    for column in table.columns:
        if column.startswith("Unnamed:") or not column.strip():
            raise SweepError(f"{path}: a column has no header (expected a dotted config key)")
        check_column(path, column)
    keys = [c for c in table.columns if c != NAME_COLUMN]
    if not keys:
        raise SweepError(f"{path}: no config-key columns (only `{NAME_COLUMN}`)")
    values = table[keys]
    for i, row in values.iterrows():
        for key in keys:
            if row[key].strip() == "":
                raise SweepError(f"{path}: row {i + 1}, column `{key}`: empty value (write null for the default)")
    if NAME_COLUMN in table.columns:
        names = list(table[NAME_COLUMN])
    else:
        # Paramspace's own instance names, key~value joined by "_" (the folder of each row), with
        # each key shortened to its shortest unique dotted suffix (Paramspace needs identifiers).
        short = dict(zip(keys, short_names(keys)))
        names = list(Paramspace(values.rename(columns=short), filename_params="*", param_sep="~").instance_patterns)
    for i, name in enumerate(names):
        if name in (".", "..") or len(name.encode()) > MAX_NAME_BYTES:
            raise SweepError(f"{path}: row {i + 1}: `{name[:40]}` cannot name a folder (`.`, `..` or over {MAX_NAME_BYTES} bytes; set a `{NAME_COLUMN}` column)")
        if not ROW_NAME.match(name):
            raise SweepError(f"{path}: row {i + 1}: folder name `{name}` has characters other than letters, digits and . ~ + = - _ (set a `{NAME_COLUMN}` column)")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SweepError(f"{path}: rows named {dupes} more than once (rows must differ)")
    rows = []
    for (i, row), name in zip(values.iterrows(), names):
        overrides = {}
        for key in keys:
            try:
                overrides[key] = parse_value(row[key])
            except yaml.YAMLError as e:
                raise SweepError(f"{path}: row {i + 1}, column `{key}`: not a YAML value ({one_line(e)})") from None
        rows.append((name, overrides))
    return rows


def short_names(keys):
    """Each dotted key's shortest unique suffix, as an identifier (train.common.latent_dim →
    latent_dim; train.dgd.decoder_lr next to train.nbvae.decoder_lr → dgd_decoder_lr)."""
    out = []
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = parts[-n:]
            if sum(k.split(".")[-n:] == suffix for k in keys) == 1:
                break
        out.append("_".join(suffix))
    return out


def one_line(e):
    return " ".join(str(e).split())


def apply_overrides(config, overrides):
    """A deep copy of `config` with each dotted key set (lists of strings given as one string,
    e.g. train.models = dgd, become one-item lists where the config holds a list)."""
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise SweepError(f"column `{key}`: `{part}` is not a section")
        if isinstance(node.get(parts[-1]), list) and isinstance(value, str):
            value = [value]
        node[parts[-1]] = value
    return out



def lookup(config, key):
    """The value of dotted `key` in `config` (None where a section lacks it)."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
