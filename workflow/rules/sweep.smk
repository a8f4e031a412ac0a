# Stage: hyperparameter sweeps (config sweeps, workflow/scripts/sweeps.py). Each row's routes
# run in results/sweeps/<sweep>/<row>/ where its columns change them (the rules above, with
# {variant} = /sweeps/<sweep>/<row>); this rule gathers the rows into one table and plot.


if SWEEPS:
    if not has_truth():
        raise WorkflowError("config: sweeps: a sweep compares scores, so its targets need a truth (split.mode holdout, or input.source simulate)")

    rule sweep_table:
        """MRRMSE of every route, each model's validation log-likelihood and the run time of the
        row's own jobs, per sweep row."""
        input:
            unpack(sweep_inputs),
        output:
            table=f"results/sweeps/{{sweep}}/sweep.csv",
            plot=report(f"results/sweeps/{{sweep}}/sweep.png", category="sweeps", subcategory="{sweep}", caption="../report/sweep.rst"),
        params:
            rows=sweep_rows,
        wildcard_constraints:
            sweep="|".join(re.escape(s) for s in SWEEPS),
        threads: 1
        resources:
            **rule_resources("sweep_table"),
        log:
            "logs/sweeps/{sweep}.log",
        benchmark:
            "benchmarks/sweeps/{sweep}.tsv"
        conda:
            "../../envs/python.yaml"
        script:
            "../scripts/sweep_table.py"
