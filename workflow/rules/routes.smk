# The routes: the registry, the blends and the submitted route. Included by common.smk.


# The route registry: every route that writes results{variant}/predictions/<name>.parquet, with
# the config sections its prediction depends on (a sweep row setting one of them gets its own
# prediction; otherwise it shares the main run's), whether it also has an inner-hold-out run
# (results{variant}/inner/predictions/<name>.parquet, so blends can fit weights over it) and
# whether it is drawn in the p-value histogram. "{model}" entries exist once per trained model
# (train.models); "{external}" once, named by external.name, where external.cells is set. Blends
# (config blend.blends) are routes too, derived from these. A new route is its rule file plus
# one line here.
class Route:
    def __init__(self, sections=(), inner=False, values=False):
        self.sections, self.inner, self.values = tuple(sections), inner, values


MODEL_SECTIONS = ("train.common", "train.device", "train.precision", "train.{model}")  # rule train_model
GENERATE_JOB_SECTIONS = (*MODEL_SECTIONS, "sizes", *LIMMA_KEYS, "generate.emit", "generate.seed", "generate.reference", "generate.source", "generate.write_cells")  # rule generate
BASELINES = ("zero", "global_mean", "mean_cell_type", "mean_compound")  # pgen-baseline's kinds (crate::baseline::BASELINES)
ROUTE_REGISTRY = {
    **{name: Route(inner=True) for name in BASELINES},  # workflow/rules/score.smk
    "xgb": Route(sections=JOB_SECTIONS["xgb"], inner=True, values=True),  # workflow/rules/regress.smk
    "forest": Route(sections=JOB_SECTIONS["forest"], inner=True, values=True),  # workflow/rules/regress.smk
    "{model}": Route(sections=[*GENERATE_JOB_SECTIONS, "generate.combine"]),  # workflow/rules/generate.smk: run 0
    "{model}_avg": Route(sections=[*GENERATE_JOB_SECTIONS, "generate"], values=True),  # generate.smk: the runs combined
    "{external}": Route(sections=JOB_SECTIONS["external"], values=True),  # workflow/rules/external.smk: another model's cells
}
# Names a route cannot take: other outputs of results/predictions, scores/ and submission/.
RESERVED_NAMES = ("submission", "leaderboard", "scores", "inner", "ceiling")
# The leaderboard settings a route's clip, score and submission depend on (beside its own).
CLIP_SECTIONS = ("leaderboard.metric", "leaderboard.clip", "leaderboard.clip_without_inner")


def base_routes(cfg):
    """{route: Route with its sections filled in} for the models of `cfg`, in registry order."""
    routes = {name: spec for name, spec in ROUTE_REGISTRY.items() if "{" not in name}
    for m in cfg["train"]["models"]:
        for name, spec in ROUTE_REGISTRY.items():
            if "{model}" in name:
                # generate.inner_holdout (main config only) gives them inner-hold-out runs.
                inner = spec.inner or config["generate"]["inner_holdout"]
                routes[name.replace("{model}", m)] = Route([s.replace("{model}", m) for s in spec.sections], inner, spec.values)
    if cfg["external"]["cells"] is not None:
        external = cfg["external"]["name"]
        if external in routes or external in RESERVED_NAMES:
            raise WorkflowError(f"config: external.name: `{external}` is taken by a route or output; pick another")
        routes[external] = ROUTE_REGISTRY["{external}"]
    return routes


def blends_of(cfg):
    """The configured blends whose routes `cfg` has; a blend over a generative route is
    skipped, with a note, when its model is not in train.models."""
    base, names = base_routes(cfg), []
    for name, spec in cfg["blend"]["blends"].items():
        if name in base or name in RESERVED_NAMES:
            raise WorkflowError(f"config: blend.blends.{name}: the name is taken by a route or output; pick another")
        missing = [r for r in spec["routes"] if r not in base]
        if missing and all(r.removesuffix("_avg") in ("dgd", "nbvae") for r in missing):
            note_once(f"blend {name} skipped: routes {missing} need train.models {cfg['train']['models']} to include their model")
        elif missing:
            raise WorkflowError(f"config: blend.blends.{name}.routes: {missing} are not routes (routes: {', '.join(base)})")
        else:
            names.append(name)
    return names


def inner_routes(cfg):
    """The base routes of `cfg` with an inner-hold-out run (the generative ones only with
    generate.inner_holdout)."""
    return [r for r, spec in base_routes(cfg).items() if spec.inner]


def inner_blends_of(cfg):
    """The blends of `cfg` whose routes all have an inner-hold-out run: the blend gets one too
    (its members' inner runs blended with its weights), on which its clip is chosen."""
    inner = inner_routes(cfg)
    return [b for b in blends_of(cfg) if all(r in inner for r in cfg["blend"]["blends"][b]["routes"])]


def has_inner_run(cfg, route):
    """Whether `route` has an inner-hold-out prediction (its clip is chosen on it)."""
    return route in inner_routes(cfg) or route in inner_blends_of(cfg)


def routes_of(cfg):
    """{route: config sections its prediction depends on}: the base routes, then the blends."""
    routes = {name: spec.sections for name, spec in base_routes(cfg).items()}
    for name in blends_of(cfg):
        members = cfg["blend"]["blends"][name]["routes"]
        routes[name] = (f"blend.blends.{name}", *(s for r in members for s in routes[r]))
    return routes


def leaderboard_route(cfg=None):
    """The route to submit: config leaderboard.submit, else the best-scoring one (with a truth),
    else xgb (no truth to rank by, e.g. the real Kaggle id_map)."""
    cfg = config if cfg is None else cfg
    submit, routes = cfg["leaderboard"]["submit"], routes_of(cfg)
    if submit is not None and submit not in routes:
        raise ValueError(f"leaderboard.submit: `{submit}` is not one of the routes {list(routes)}")
    if submit is None and not has_truth():
        return "xgb"
    return submit


def route_error(cfg):
    """What is wrong with the blends and the submitted route of `cfg` against its routes (one
    line, for a config error before any job instead of a traceback when a job's params are
    built), or None."""
    try:
        for name in blends_of(cfg):
            spec = cfg["blend"]["blends"][name]
            inner = inner_routes(cfg)
            fitted_over = [r for r in spec["routes"] if r not in inner]
            if spec.get("weights") is None and fitted_over:
                return f"blend.blends.{name}.weights: null (fitted) works over {inner} only; give weights for {fitted_over}"
        leaderboard_route(cfg)
    except (WorkflowError, ValueError) as e:
        return str(e).removeprefix("config: ")
    return None


ROUTES = list(routes_of(config))
