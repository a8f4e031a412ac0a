# Helpers for workflow/rules/regress.smk (no rules here).

INNER = "results/inner"
BLENDS = list(config["blend"]["blends"])
for _name in BLENDS:
    if _name in ("zero", "xgb", "forest", "submission", "leaderboard", "scores"):
        raise ValueError(f"blend name `{_name}` is taken by a route or output; pick another")


def xgb_args():
    """pgen-xgb flags from config['xgb'], shell-quoted."""
    x = config["xgb"]
    args = []
    for key in ("rounds", "eta", "max_depth", "min_child_weight", "subsample", "colsample_bytree", "lambda", "alpha", "gamma", "tree_method", "seed", "base_score"):
        args.extend([f"--{key.replace('_', '-')}", str(x[key])])
    if x["cell_type_scale"]:
        args.append("--cell-type-scale")
    for feature in x["features"]:
        args.extend(["--feature", feature])
    for name, value in x["params"].items():
        args.extend(["--param", f"{name}={value}"])
    return shlex.join(args)


def forest_args():
    """pgen-forest flags from config['forest'] (forest parameters only; limma's come from config['de'])."""
    f = config["forest"]
    args = ["--target", f["target"], "--components", str(f["components"])]
    for key in ("n_trees", "m_fraction", "min_samples_leaf", "seed"):
        args.extend([f"--{key.replace('_', '-')}", str(f[key])])
    for key in ("m", "max_depth"):
        if f[key] is not None:
            args.extend([f"--{key.replace('_', '-')}", str(f[key])])
    for feature in f["features"]:
        args.extend(["--feature", feature])
    return shlex.join(args)


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
    return out

