# Shared configuration handling and helper functions (no rules here): the config (config.smk),
# the paths (paths.smk), the routes (routes.smk), the sweeps' variants (variants.smk).

include: "config.smk"
include: "paths.smk"
include: "routes.smk"


def binary(name):
    """Path of a pgen-* executable; ancient() so a rebuild does not rerun everything."""
    return ancient(os.path.join(BIN_DIR, name))


def rule_threads(name):
    return config["threads"].get(name, 1)


def rule_resources(name, mem_mb=2000, runtime=30):
    """A rule's cluster resources: config resources.<name> (mem_mb, runtime in minutes, and any
    executor resource such as gpu, gres, slurm_partition, slurm_extra) over the given defaults."""
    return {"mem_mb": mem_mb, "runtime": runtime, **config["resources"].get(name, {})}


# The paths config_checks.py reads (it also runs on its own, in rule check_config) are these.
assert (CONFIG_CHECKS.INGEST_OBS, CONFIG_CHECKS.SIM_DIR) == (INGEST_FILES["obs"], SIM_DIR)


def check_config_params():
    """Rule check_config's params: the input that ingest reads (recorded with the result). The
    checked config keys are not params: after the first run, every parse checks them against
    the ingested cells itself."""
    return {"source": json.dumps(CONFIG_CHECKS.source_identity(config, stamp=False), sort_keys=True)}


_route_error = route_error(config)
if _route_error:
    raise WorkflowError(f"config: {_route_error}")


# The config against the cells (pairs, cell types, compounds, min_cells), whenever they can be
# read now; otherwise rule check_config does the same right after ingest.
try:
    CONFIG_CHECKS.check(config, PGEN_CONFIG, CONFIG_CHECKS.parse_time_obs(config), CONFIG_CHECKS.parse_time_id_map(config))
except CONFIG_CHECKS.ConfigError as _e:
    raise WorkflowError(f"config: {_e}") from None


include: "variants.smk"
