# Stage: predictions without a model (zero baseline), scores against the truth, submissions.


rule baseline_zero:
    input:
        targets=rules.split.output.targets,
        de_train=de_train_path(),
        exe=binary("pgen-baseline"),
    output:
        f"{STAGE['predictions']}/zero.parquet",
    params:
        log_level=config["log_level"],
    log:
        "logs/baseline_zero.log",
    benchmark:
        "benchmarks/baseline_zero.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} --kind zero --targets {input.targets}"
        " --de-train {input.de_train} --out {output} > {log} 2>&1"


rule score:
    input:
        prediction=f"{STAGE['predictions']}/{{route}}.parquet",
        truth=rules.de_truth.output[0],
        exe=binary("pgen-score"),
    output:
        table=f"{STAGE['scores']}/{{route}}.csv",
        plot=f"{STAGE['scores']}/{{route}}.png",
    params:
        log_level=config["log_level"],
    wildcard_constraints:
        route="|".join(ROUTES),
    log:
        "logs/score/{route}.log",
    benchmark:
        "benchmarks/score/{route}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} --prediction {input.prediction} --truth {input.truth}"
        " --out-table {output.table} --plot {output.plot} --title {wildcards.route} > {log} 2>&1"


rule submission:
    input:
        prediction=f"{STAGE['predictions']}/{{route}}.parquet",
        targets=rules.split.output.targets,
        exe=binary("pgen-score"),
    output:
        f"{STAGE['submission']}/{{route}}.csv",
    params:
        log_level=config["log_level"],
    wildcard_constraints:
        route="|".join(ROUTES),
    log:
        "logs/submission/{route}.log",
    benchmark:
        "benchmarks/submission/{route}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} --prediction {input.prediction}"
        " --id-map {input.targets} --submission {output} > {log} 2>&1"


rule scores_table:
    """One row per route: its MRRMSE on the targets."""
    input:
        expand(f"{STAGE['scores']}/{{route}}.csv", route=ROUTES),
    output:
        f"{STAGE['scores']}/scores.csv",
    log:
        "logs/scores_table.log",
    benchmark:
        "benchmarks/scores_table.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    script:
        "../scripts/scores_table.py"
