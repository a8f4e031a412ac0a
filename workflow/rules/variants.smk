# Sweep rows as variants of the config. Included by common.smk, after the config checks.


# Sweeps (config `sweeps`: {name: Paramspace TSV}, workflow/scripts/sweeps.py): each row is a
# variant of this config with its own folder results/sweeps/<name>/<row>/ for the stages its
# columns change; every other stage (and everything before the routes) is the main run's.
SWEEP_MODULE = _load_script_module("sweeps")
VARIANTS = {"": config}  # variant -> its config
VARIANT_KEYS = {"": ()}  # variant -> the dotted keys its sweep row sets
SWEEPS = {}  # sweep name -> its row names, in file order


def _sweep_row_config(where, overrides):
    """The main config with a sweep row's values, validated like the main config."""
    try:
        cfg = SWEEP_MODULE.apply_overrides(config, overrides)
    except SWEEP_MODULE.SweepError as e:
        raise WorkflowError(f"config: {where}: {e}") from None
    _coerce_cli_strings(cfg, _schema_doc("config.schema.yaml"))
    try:
        validate(cfg, schema="../schemas/config.schema.yaml")
    except WorkflowError as e:
        raise WorkflowError(f"config: {where}: {CONFIG_CHECKS.schema_error_line(e)}") from None
    typed_error = _check_typed_sections(cfg)
    if typed_error:
        raise WorkflowError(f"config: {where}: {typed_error}")
    error = route_error(cfg)
    if error:
        raise WorkflowError(f"config: {where}: {error}")
    return cfg


def sweep_variant(sweep, row):
    """The {variant} of a sweep row: its folder under results/ (and logs/, benchmarks/)."""
    return os.sep + os.path.join("sweeps", sweep, row)


def _load_sweeps():
    for name, path in config["sweeps"].items():
        try:
            rows = SWEEP_MODULE.read_rows(path)
        except SWEEP_MODULE.SweepError as e:
            raise WorkflowError(f"config: sweeps.{name}: {e}") from None
        SWEEPS[name] = [row for row, _ in rows]
        for row, overrides in rows:
            variant = sweep_variant(name, row)
            VARIANTS[variant] = _sweep_row_config(f"sweeps.{name}: {path}, row `{row}`", overrides)
            VARIANT_KEYS[variant] = tuple(overrides)


def cfg_of(wildcards):
    """The config of the run a job belongs to (the main run's or a sweep row's)."""
    return VARIANTS[wildcards.variant]


def owner(variant, sections):
    """The variant whose folder holds a stage depending on the dotted config `sections`: the
    main run's ("") when the sweep row's values equal the main config's in all of them, else
    the first sweep row (in file order, over every sweep) with the same values in all of them —
    the row itself unless an earlier row already runs that stage with these settings (rows that
    differ only in later stages share one model, one set of generation runs, …)."""
    if not variant:
        return ""
    values = [SWEEP_MODULE.lookup(VARIANTS[variant], s) for s in sections]
    for other, cfg in VARIANTS.items():
        if [SWEEP_MODULE.lookup(cfg, s) for s in sections] == values:
            return other
    return variant


def route_owner(variant, route):
    return owner(variant, ROUTES_OF[variant][route])


def model_owner(variant, model, *extra):
    return owner(variant, [s.replace("{model}", model) for s in (*MODEL_SECTIONS, *extra)])


def prediction_path(variant, route):
    """Where `route`'s prediction for `variant` is (the main run's when the row leaves it alone)."""
    return at(f"{STAGE['predictions']}/{route}.parquet", route_owner(variant, route))


def clip_owner(variant, route):
    """The run owning a route's clip, score and submission: its prediction's owner, or the
    sweep row itself when the row changes the leaderboard's metric or clips."""
    return owner(variant, (*ROUTES_OF[variant][route], *CLIP_SECTIONS))


def clip_path(variant, route):
    return at(f"{STAGE['scores']}/clip/{route}.txt", clip_owner(variant, route))


def score_path(variant, route):
    return at(f"{STAGE['scores']}/{route}.csv", clip_owner(variant, route))


def submission_path(variant, route):
    return at(f"{STAGE['submission']}/{route}.csv", clip_owner(variant, route))


_load_sweeps()
ROUTES_OF = {v: routes_of(c) for v, c in VARIANTS.items()}
ALL_ROUTES = list(dict.fromkeys(r for routes in ROUTES_OF.values() for r in routes))
ALL_MODELS = list(dict.fromkeys(m for c in VARIANTS.values() for m in c["train"]["models"]))
ALL_BLENDS = list(dict.fromkeys(b for c in VARIANTS.values() for b in blends_of(c)))
ALL_INNER_BLENDS = list(dict.fromkeys(b for c in VARIANTS.values() for b in inner_blends_of(c)))

VARIANT_PATTERN = "(?:{})".format("|".join(re.escape(v) for v in VARIANTS))
