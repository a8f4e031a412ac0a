# Helpers for workflow/rules/regress.smk (no rules here).


def blend_spec(cfg, name):
    spec = cfg["blend"]["blends"][name]

    if spec.get("weights") is None:
        inner = inner_routes(cfg)
        missing = [r for r in spec["routes"] if r not in inner]
        if missing:
            raise ValueError(f"blend {name}: weights can only be fitted over {inner}; give weights for {missing}")
    elif len(spec.get("weights")) != len(spec["routes"]):
        raise ValueError(f"blend {name}: {len(spec['weights'])} weights for {len(spec['routes'])} routes")
    return spec


def blend_inputs(wildcards):
    """The member routes' predictions (and inner-hold-out runs when the weights are fitted), each
    from the run that owns it."""
    v = wildcards.variant
    spec = blend_spec(VARIANTS[v], wildcards.blend)
    files = {f"pred_{r}": prediction_path(v, r) for r in spec["routes"]}
    if wildcards.blend in inner_blends_of(VARIANTS[v]):
        files.update({f"inner_{r}": at(f"{INNER_PREDICTIONS}/{r}.parquet", route_owner(v, r)) for r in spec["routes"]})
    if spec.get("weights") is None:
        files["inner_truth"] = rules.inner_split.output.truth
    return files


def blend_args(wildcards, input, output):
    spec = blend_spec(cfg_of(wildcards), wildcards.blend)
    args = []
    for r in spec["routes"]:
        args.extend(["--prediction", f"{r}={input[f'pred_{r}']}"])
    if "inner" in output.keys():
        for r in spec["routes"]:
            args.extend(["--fit-prediction", f"{r}={input[f'inner_{r}']}"])
        args.extend(["--out-inner", output.inner])
    if spec.get("weights") is None:
        args.extend(["--fit-truth", input["inner_truth"]])
    else:
        args.extend(["--weights", ",".join(str(w) for w in spec.get("weights"))])
    return shlex.join(args)


def leaderboard_outputs():
    out = {"submission": f"{STAGE['submission']}/submission.csv"}
    if has_truth():
        out["plot"] = report(f"{STAGE['scores']}/leaderboard.png", category="scores", caption="../report/leaderboard.rst")
        out["values_plot"] = report(f"{STAGE['scores']}/pvalues.png", category="scores", caption="../report/pvalues.rst")
    return out


def value_routes(variant):
    """Routes in the p-value histogram (pgen-leaderboard --values): the registry's `values` ones."""
    cfg = VARIANTS[variant]
    return [r for r, spec in base_routes(cfg).items() if spec.values]


def leaderboard_inputs(wildcards):
    """Each route's score and submission (from the run owning it) and, with a truth, the
    p-value histogram's tables."""
    v = wildcards.variant
    routes = list(ROUTES_OF[v])
    files = {f"submission_{r}": submission_path(v, r) for r in routes}
    if has_truth():
        files.update({f"score_{r}": score_path(v, r) for r in routes})
        files["truth"] = rules.de_truth.output[0]
        files.update({f"values_{r}": prediction_path(v, r) for r in value_routes(v)})
        if ceiling_table():
            files["ceiling"] = ceiling_table()
    return files


def leaderboard_args(wildcards, input, output):
    v = wildcards.variant
    routes = list(ROUTES_OF[v])
    args = [f"--submission={r}={input[f'submission_{r}']}" for r in routes]
    args += ["--metric", VARIANTS[v]["leaderboard"]["metric"]]
    submit = leaderboard_route(VARIANTS[v])
    if submit:
        args += ["--submit", submit]
    if "plot" in output.keys():
        args += [f"--score={r}={input[f'score_{r}']}" for r in routes]
        if "ceiling" in input.keys():
            args += [f"--reference=ceiling={input.ceiling}"]
        args += ["--plot", output.plot]
        args += [f"--values=truth={input.truth}", *(f"--values={r}={input[f'values_{r}']}" for r in value_routes(v))]
        args += ["--values-plot", output.values_plot]
    return shlex.join(args)
