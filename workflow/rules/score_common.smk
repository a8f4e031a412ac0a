# Helpers for workflow/rules/score.smk (no rules here).


def clip_inputs(wildcards):
    """The route's prediction (from the run owning it) and its clip file, where it has an
    inner-hold-out run."""
    v, route = wildcards.variant, wildcards.route
    files = {"prediction": prediction_path(v, route)}
    if has_inner_run(cfg_of(wildcards), route):
        files["clip"] = clip_path(v, route)
    return files


def clip_flag(wildcards, input):
    if "clip" in input.keys():
        return f"--clip-file {shlex.quote(input.clip)}"
    bound = cfg_of(wildcards)["leaderboard"]["clip_without_inner"]
    return "--clip " + ("none" if bound is None else repr(float(bound)))


def scores_table_inputs(wildcards):
    v = wildcards.variant
    files = {f"score_{r}": score_path(v, r) for r in ROUTES_OF[v]}
    if ceiling_table():
        files["ceiling"] = ceiling_table()
    return files


def scores_table_args(wildcards, input):
    """The routes' score tables, the ceiling's as a reference, the ranking metric."""
    v = wildcards.variant
    args = ["--metric", VARIANTS[v]["leaderboard"]["metric"]]
    args += [f"--score={r}={input[f'score_{r}']}" for r in ROUTES_OF[v]]
    if "ceiling" in input.keys():
        args += [f"--reference=ceiling={input.ceiling}"]
    return shlex.join(args)
