# Helpers for workflow/rules/regress.smk (no rules here).

INNER = "results/inner"
for _name in BLENDS:
    if _name in ("zero", "xgb", "forest", *GENERATIVE_ROUTES, "submission", "leaderboard", "scores"):
        raise ValueError(f"blend name `{_name}` is taken by a route or output; pick another")


# Routes whose inner-hold-out prediction exists (rules in regress.smk): blends can fit weights over them.
INNER_ROUTES = ["xgb", "forest", "zero"]


def blend_spec(name):
    spec = config["blend"]["blends"][name]

    if spec.get("weights") is None:
        missing = [r for r in spec["routes"] if r not in INNER_ROUTES]
        if missing:
            raise ValueError(f"blend {name}: weights can only be fitted over {INNER_ROUTES}; give weights for {missing}")
    elif len(spec.get("weights")) != len(spec["routes"]):
        raise ValueError(f"blend {name}: {len(spec['weights'])} weights for {len(spec['routes'])} routes")
    return spec


def blend_inputs(wildcards):
    spec = blend_spec(wildcards.blend)
    files = {f"pred_{r}": f"{STAGE['predictions']}/{r}.parquet" for r in spec["routes"]}
    if spec.get("weights") is None:
        files.update({f"inner_{r}": f"{INNER}/predictions/{r}.parquet" for r in spec["routes"]})
        files["inner_truth"] = rules.inner_split.output.truth
    return files


def blend_args(wildcards, input):
    spec = blend_spec(wildcards.blend)
    args = []
    for r in spec["routes"]:
        args.extend(["--prediction", f"{r}={input[f'pred_{r}']}"])
    if spec.get("weights") is None:
        args.extend(["--fit-truth", input["inner_truth"]])
        for r in spec["routes"]:
            args.extend(["--fit-prediction", f"{r}={input[f'inner_{r}']}"])
    else:
        args.extend(["--weights", ",".join(str(w) for w in spec.get("weights"))])
    return shlex.join(args)


def leaderboard_route():
    """The route to submit: config leaderboard.submit, else the best-scoring one (with a truth),
    else xgb (no truth to rank by, e.g. the real Kaggle id_map)."""
    submit = config["leaderboard"]["submit"]
    if submit is not None and submit not in ROUTES:
        raise ValueError(f"leaderboard.submit: `{submit}` is not one of the routes {ROUTES}")
    if submit is None and not has_truth():
        return "xgb"
    return submit


def leaderboard_outputs():
    out = {"submission": f"{STAGE['submission']}/submission.csv"}
    if has_truth():
        out["plot"] = f"{STAGE['scores']}/leaderboard.png"
        out["values_plot"] = f"{STAGE['scores']}/pvalues.png"
    return out


# Tables in the p-value histogram (pgen-leaderboard --values): the truth, the regression routes
# and each model's averaged generation route.
VALUE_ROUTES = ["xgb", "forest", *(r for r in GENERATIVE_ROUTES if r.endswith("_avg"))]


def value_inputs():
    if not has_truth():
        return {}
    files = {"truth": rules.de_truth.output[0]}
    files.update({f"values_{r}": f"{STAGE['predictions']}/{r}.parquet" for r in VALUE_ROUTES})
    return files


def value_args(wildcards, input, output):
    if "values_plot" not in output.keys():
        return ""
    args = [f"--values=truth={input.truth}", *(f"--values={r}={input[f'values_{r}']}" for r in VALUE_ROUTES)]
    return shlex.join([*args, "--values-plot", output.values_plot])

