# Shared configuration handling and helper functions (no rules here).
import os
import shlex

import yaml
from snakemake.utils import validate


def _coerce_cli_strings(cfg, schema, root):
    """`--config key='{a: 1}'` hands nested values over as strings (YAML BaseLoader):
    turn them back into integers/booleans/null where the schema allows no string."""
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    if isinstance(cfg, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in cfg.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                cfg[key] = _coerce_cli_strings(value, sub, root)
        return cfg
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
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
    return cfg


with open(workflow.source_path("../schemas/config.schema.yaml")) as _fh:
    _SCHEMA = yaml.safe_load(_fh)
_coerce_cli_strings(config, _SCHEMA, _SCHEMA)
validate(config, schema="../schemas/config.schema.yaml")

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


def all_targets():
    """Final outputs of the workflow (extend as stages are added)."""
    return list(INGEST_FILES.values())


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
    for key in ("cells", "genes", "compounds"):
        if sim.get(key) is not None:
            args += [f"--{key}", str(sim[key])]
    return shlex.join(args)


def kaggle_path(name):
    return os.path.join(config["input"]["kaggle_dir"], name)


def ingest_inputs(wildcards):
    """Counts/obs/excluded/genes inputs for ingest, from the simulation or the Kaggle folder."""
    src = config["input"]["source"]
    if src == "simulate":
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
    if config["input"].get("genes"):
        files["genes"] = config["input"]["genes"]
    return files


def optional_flag(flag, key):
    """Input function for params: '--flag path' if the rule has input `key`, else ''."""

    def fn(wildcards, input):
        return f"{flag} {shlex.quote(input[key])}" if key in input.keys() else ""

    return fn
