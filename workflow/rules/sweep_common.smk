# Helpers for workflow/rules/sweep.smk (no rules here).


def sweep_inputs(wildcards):
    """Per row: its scores table and each trained model's validation log-likelihood (from the
    run owning the model)."""
    files = {}
    for row in SWEEPS[wildcards.sweep]:
        v = sweep_variant(wildcards.sweep, row)
        files[f"scores~{row}"] = at(f"{STAGE['scores']}/scores.csv", v)
        for m in VARIANTS[v]["train"]["models"]:
            files[f"loglik~{row}~{m}"] = at(f"{STAGE['scores']}/loglik/{m}.csv", model_owner(v, m, "train.loglik_fit_steps"))
    return files


def sweep_rows(wildcards):
    """The rows' settings and folders, for the script (JSON; a change reruns the table)."""
    rows = []
    for row in SWEEPS[wildcards.sweep]:
        v = sweep_variant(wildcards.sweep, row)
        settings = {k: SWEEP_MODULE.lookup(VARIANTS[v], k) for k in VARIANT_KEYS[v]}
        rows.append({"row": row, "settings": settings, "routes": list(ROUTES_OF[v]), "benchmarks": f"benchmarks{v}"})
    return json.dumps(rows, sort_keys=True)
