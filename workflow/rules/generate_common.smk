# Helpers for workflow/rules/generate.smk (no rules here).

GENERATE_DIR = "results/generate"


def size_forest_exclusions():
    """Compounds whose wells are not compound wells for the size forests: the negative control
    and the positive controls (filter.drop_compounds)."""
    names = [config["de"]["negative_control"], *config["filter"]["drop_compounds"]]
    args = [a for c in dict.fromkeys(names) for a in ("--exclude-compound", c)]
    # The target cell types' measured control wells, for generate.reference: generated.
    return shlex.join([*args, "--negative-control", config["de"]["negative_control"]])


def generation_runs(model, n):
    return [f"{GENERATE_DIR}/{model}/run{k}.parquet" for k in range(n)]


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
