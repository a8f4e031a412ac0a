# Stage: predictions without a model (zero baseline), scores against the truth, submissions.


rule baseline_zero:
    input:
        targets=rules.split.output.targets,
        de_train=de_train_path(),
        exe=binary("pgen-baseline"),
    output:
        at(f"{STAGE['predictions']}/zero.parquet"),
    threads: 1
    resources:
        **rule_resources("baseline"),
    log:
        "logs/baseline_zero.log",
    benchmark:
        "benchmarks/baseline_zero.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --kind zero --targets {input.targets}"
        " --de-train {input.de_train} --out {output} > {log} 2>&1"


rule score:
    input:
        prediction=f"{STAGE['predictions']}/{{route}}.parquet",
        truth=rules.de_truth.output[0],
        exe=binary("pgen-score"),
    output:
        table=f"{STAGE['scores']}/{{route}}.csv",
        plot=report(f"{STAGE['scores']}/{{route}}.png", category="scores", subcategory="routes", labels={"route": "{route}", "run": "{variant}"}, caption="../report/score.rst"),
    wildcard_constraints:
        route="|".join(ALL_ROUTES),
    threads: 1
    resources:
        **rule_resources("score"),
    log:
        "logs{variant}/score/{route}.log",
    benchmark:
        "benchmarks{variant}/score/{route}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --prediction {input.prediction} --truth {input.truth}"
        " --out-table {output.table} --plot {output.plot} --title {wildcards.route} > {log} 2>&1"


rule submission:
    input:
        prediction=f"{STAGE['predictions']}/{{route}}.parquet",
        targets=rules.split.output.targets,
        exe=binary("pgen-score"),
    output:
        f"{STAGE['submission']}/{{route}}.csv",
    wildcard_constraints:
        route="|".join(ALL_ROUTES),
    threads: 1
    resources:
        **rule_resources("score"),
    log:
        "logs{variant}/submission/{route}.log",
    benchmark:
        "benchmarks{variant}/submission/{route}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --prediction {input.prediction}"
        " --id-map {input.targets} --submission {output} > {log} 2>&1"


rule scores_table:
    """One row per route: its MRRMSE on the targets (each route's score from the run owning it)."""
    input:
        lambda wildcards: [score_path(wildcards.variant, r) for r in ROUTES_OF[wildcards.variant]],
    output:
        f"{STAGE['scores']}/scores.csv",
    threads: 1
    log:
        "logs{variant}/scores_table.log",
    benchmark:
        "benchmarks{variant}/scores_table.tsv"
    conda:
        "../../envs/python.yaml"
    script:
        "../scripts/scores_table.py"
