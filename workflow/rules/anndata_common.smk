# Helpers for workflow/rules/anndata.smk (no rules here).

def route_de_stats(wildcards):
    """limma's statistics of the route's prediction, where its stage ran limma: the forest
    route, run 0 of a generative model (its route <model> is that run), or the external route;
    else nothing."""
    cfg, route = cfg_of(wildcards), wildcards.route
    if route == "forest":
        return {"de": at(f"{RUN}/forest/de.h5ad", route_owner(wildcards.variant, route))}
    if route in cfg["train"]["models"]:
        sections = [s.replace("{model}", route) for s in GENERATE_JOB_SECTIONS]
        return {"de": at(f"{GENERATE_DIR}/{route}/run0_de.h5ad", owner(wildcards.variant, sections))}
    if cfg["external"]["cells"] is not None and route == cfg["external"]["name"]:
        return {"de": at(f"{RUN}/external/{route}_de.h5ad", route_owner(wildcards.variant, route))}
    return {}


def route_settings(wildcards, input):
    """--de and one --setting SECTION=JSON per config section the route's prediction depends on."""
    cfg = cfg_of(wildcards)
    args = ["--de", input.de] if "de" in input.keys() else []
    for section in ROUTES_OF[wildcards.variant][wildcards.route]:
        args.append(f"--setting={section}={json.dumps(SWEEP_MODULE.lookup(cfg, section), sort_keys=True)}")
    return shlex.join(args)
