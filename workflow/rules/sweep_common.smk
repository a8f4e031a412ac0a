# Helpers for workflow/rules/sweep.smk (no rules here).


def sweep_inputs(wildcards):
    """Per row: its scores table, each trained model's validation log-likelihood and transfer
    probe (from the run owning the model) and the inner-hold-out predictions of the routes that have one (what
    a setting should be chosen on: the scored pairs are the test set)."""
    files = {"inner_truth": f"{INNER}/truth.parquet"}
    for row in SWEEPS[wildcards.sweep]:
        v = sweep_variant(wildcards.sweep, row)
        files[f"scores~{row}"] = at(f"{STAGE['scores']}/scores.csv", v)
        for route in inner_routes(VARIANTS[v]):
            if route in ROUTES_OF[v]:
                files[f"inner~{row}~{route}"] = at(f"{INNER_PREDICTIONS}/{route}.parquet", route_owner(v, route))
        for m in VARIANTS[v]["train"]["models"]:
            files[f"loglik~{row}~{m}"] = at(f"{STAGE['scores']}/loglik/{m}.csv", model_owner(v, m, "train.loglik_fit_steps"))
            if has_truth():
                files[f"probe~{row}~{m}"] = at(f"{STAGE['scores']}/probe/{m}.csv", model_owner(v, m, "sizes", "generate.seed", "de.negative_control"))
    return files


def sweep_rows(wildcards):
    """The rows' settings and folders, for the script (JSON; a change reruns the table)."""
    rows = []
    for row in SWEEPS[wildcards.sweep]:
        v = sweep_variant(wildcards.sweep, row)
        settings = {k: SWEEP_MODULE.lookup(VARIANTS[v], k) for k in VARIANT_KEYS[v]}
        rows.append({"row": row, "settings": settings, "routes": list(ROUTES_OF[v]), "benchmarks": f"benchmarks{v}"})
    return json.dumps(rows, sort_keys=True)
