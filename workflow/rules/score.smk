# Stage: predictions without a model (the baselines), each route's clip, its scores against the
# truth and its submission, and the scores table.


rule baseline:
    """OP3's baselines (pgen-baseline): zero, the global mean, the target cell type's mean, the
    compound's mean; means over de_train without its positive controls, as the regressors fit."""
    input:
        targets=rules.split.output.targets,
        de_train=rules.de_train_fit.output[0],
        exe=binary("pgen-baseline"),
    output:
        at(f"{STAGE['predictions']}/{{baseline}}.parquet"),
    params:
        kind=lambda wildcards: wildcards.baseline.replace("_", "-"),
    wildcard_constraints:
        baseline="|".join(BASELINES),
    threads: 1
    localrule: True
    resources:
        **rule_resources("baseline"),
    log:
        "logs/baseline/{baseline}.log",
    benchmark:
        "benchmarks/baseline/{baseline}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --kind {params.kind} --targets {input.targets}"
        " --de-train {input.de_train} --out {output} > {log} 2>&1"


rule clip:
    """A route's clip: the candidate (leaderboard.clip) scoring best by leaderboard.metric on its
    inner-hold-out run."""
    input:
        prediction=lambda wildcards: at(f"{INNER_PREDICTIONS}/{wildcards.route}.parquet", route_owner(wildcards.variant, wildcards.route)),
        truth=f"{INNER}/truth.parquet",
        exe=binary("pgen-score"),
    output:
        f"{STAGE['scores']}/clip/{{route}}.txt",
    params:
        candidates=lambda wildcards: ",".join("none" if c is None else repr(float(c)) for c in cfg_of(wildcards)["leaderboard"]["clip"]),
        metric=lambda wildcards: cfg_of(wildcards)["leaderboard"]["metric"],
    wildcard_constraints:
        route="|".join(ALL_ROUTES),
    threads: 1
    localrule: True
    resources:
        **rule_resources("score"),
    log:
        "logs{variant}/clip/{route}.log",
    benchmark:
        "benchmarks{variant}/clip/{route}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --prediction {input.prediction} --truth {input.truth}"
        " --choose-clip {params.candidates} --metric {params.metric} --out-clip {output} > {log} 2>&1"


rule score:
    input:
        unpack(clip_inputs),
        truth=rules.de_truth.output[0],
        exe=binary("pgen-score"),
    output:
        table=f"{STAGE['scores']}/{{route}}.csv",
        plot=report(f"{STAGE['scores']}/{{route}}.png", category="scores", subcategory="routes", labels={"route": "{route}", "run": "{variant}"}, caption="../report/score.rst"),
    params:
        clip=clip_flag,
    wildcard_constraints:
        route="|".join(ALL_ROUTES),
    threads: 1
    localrule: True
    resources:
        **rule_resources("score"),
    log:
        "logs{variant}/score/{route}.log",
    benchmark:
        "benchmarks{variant}/score/{route}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --prediction {input.prediction} --truth {input.truth} {params.clip}"
        " --out-table {output.table} --plot {output.plot} --title {wildcards.route} > {log} 2>&1"


rule submission:
    input:
        unpack(clip_inputs),
        targets=rules.split.output.targets,
        exe=binary("pgen-score"),
    output:
        f"{STAGE['submission']}/{{route}}.csv",
    params:
        clip=clip_flag,
    wildcard_constraints:
        route="|".join(ALL_ROUTES),
    threads: 1
    localrule: True
    resources:
        **rule_resources("score"),
    log:
        "logs{variant}/submission/{route}.log",
    benchmark:
        "benchmarks{variant}/submission/{route}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --prediction {input.prediction} {params.clip}"
        " --id-map {input.targets} --submission {output} > {log} 2>&1"


rule scores_table:
    """One row per route and baseline (each route's score from the run owning it), and the noise
    ceiling where it is on: every metric, ranked by leaderboard.metric."""
    input:
        unpack(scores_table_inputs),
        exe=binary("pgen-leaderboard"),
    output:
        f"{STAGE['scores']}/scores.csv",
    params:
        args=scores_table_args,
    threads: 1
    localrule: True
    resources:
        **rule_resources("leaderboard"),
    log:
        "logs{variant}/scores_table.log",
    benchmark:
        "benchmarks{variant}/scores_table.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} {params.args} --out-table {output} > {log} 2>&1"
