# Stage: regression routes on the DE values (XGBoost per gene), random forests on the
# pseudo-bulk, blends of routes (weights given or fitted on an inner hold-out drawn from the
# training pairs), and the leaderboard. Each route also runs on the inner hold-out
# (`use rule … with:` the inner pairs) for the blends' fitted weights.


rule xgb:
    input:
        targets=rules.split.output.targets,
        de_train=rules.de_train_fit.output[0],
        exe=binary("pgen-xgb"),
    output:
        f"{STAGE['predictions']}/xgb.parquet",
    params:
        args=lambda wildcards: job_params("xgb", cfg_of(wildcards)),
    threads: rule_threads("xgb")
    resources:
        **rule_resources("xgb", 4000, 120),
    log:
        "logs{variant}/xgb.log",
    benchmark:
        "benchmarks{variant}/xgb.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --de-train {input.de_train}"
        " --targets {input.targets} {params.args} --threads {threads} --out {output} > {log} 2>&1"


rule forest:
    """Random forests on the training pseudo-bulk predict the target pairs' wells; limma (R)
    computes their DE against each target cell type's real samples."""
    input:
        pseudobulk=rules.pseudobulk_train.output[0],
        targets=rules.split.output.targets,
        script=LIMMA_SCRIPT,
        exe=binary("pgen-forest"),
    output:
        prediction=f"{STAGE['predictions']}/forest.parquet",
        pseudobulk=f"{RUN}/forest/predicted_pseudobulk.parquet",
        # limma's statistics, for the route's .h5ad (workflow/rules/anndata.smk).
        de=temp(f"{RUN}/forest/de.h5ad"),
    params:
        args=lambda wildcards: job_params("forest", cfg_of(wildcards)),
    threads: rule_threads("forest")
    resources:
        **rule_resources("forest", 8000, 240),
    log:
        "logs{variant}/forest.log",
    benchmark:
        "benchmarks{variant}/forest.tsv"
    conda:
        "../../envs/limma.yaml"
    shell:
        "{input.exe} --pseudobulk {input.pseudobulk} --targets {input.targets}"
        " {params.args} --script {input.script} --threads {threads}"
        " --out-pseudobulk {output.pseudobulk} --out-de-h5ad {output.de} --out {output.prediction} > {log} 2>&1"


rule inner_split:
    """Inner hold-out for fitting blend weights: pairs drawn from de_train only."""
    input:
        de_train=rules.de_train_fit.output[0],
        targets=rules.split.output.targets,
        exe=binary("pgen-blend"),
    output:
        train=f"{INNER}/de_train.parquet",
        targets=f"{INNER}/targets.csv",
        truth=f"{INNER}/truth.parquet",
    params:
        args=job_params("inner_split"),
    threads: 1
    localrule: True
    resources:
        **rule_resources("inner_split"),
    log:
        "logs/inner_split.log",
    benchmark:
        "benchmarks/inner_split.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} split --de-train {input.de_train}"
        " --targets {input.targets} {params.args}"
        " --out-train {output.train} --out-targets {output.targets} --out-truth {output.truth} > {log} 2>&1"


use rule xgb as xgb_inner with:
    input:
        targets=rules.inner_split.output.targets,
        de_train=rules.inner_split.output.train,
        exe=binary("pgen-xgb"),
    output:
        f"{INNER_PREDICTIONS}/xgb.parquet",
    log:
        "logs{variant}/xgb_inner.log",
    benchmark:
        "benchmarks{variant}/xgb_inner.tsv"


# The inner pairs are in the training pseudo-bulk: pgen-forest drops every target pair's
# samples before fitting.
use rule forest as forest_inner with:
    input:
        pseudobulk=rules.pseudobulk_train.output[0],
        targets=rules.inner_split.output.targets,
        script=LIMMA_SCRIPT,
        exe=binary("pgen-forest"),
    output:
        prediction=f"{INNER_PREDICTIONS}/forest.parquet",
        pseudobulk=f"{RUN}/inner/forest/predicted_pseudobulk.parquet",
        de=temp(f"{RUN}/inner/forest/de.h5ad"),
    log:
        "logs{variant}/forest_inner.log",
    benchmark:
        "benchmarks{variant}/forest_inner.tsv"


use rule baseline as baseline_inner with:
    localrule: True
    input:
        targets=rules.inner_split.output.targets,
        de_train=rules.inner_split.output.train,
        exe=binary("pgen-baseline"),
    output:
        at(f"{INNER_PREDICTIONS}/{{baseline}}.parquet"),
    log:
        "logs/baseline_inner/{baseline}.log",
    benchmark:
        "benchmarks/baseline_inner/{baseline}.tsv"


# A blend over routes that all have an inner-hold-out run gets one too (--out-inner: their inner
# runs blended with its weights), for its clip; a blend over a generative route has none.
if ALL_BLENDS:

    rule blend:
        input:
            unpack(blend_inputs),
            exe=binary("pgen-blend"),
        output:
            prediction=f"{STAGE['predictions']}/{{blend}}.parquet",
            weights=f"{STAGE['predictions']}/{{blend}}.weights.csv",
            inner=f"{INNER_PREDICTIONS}/{{blend}}.parquet",
        params:
            args=blend_args,
            settings=lambda wildcards: json.dumps(blend_spec(cfg_of(wildcards), wildcards.blend), sort_keys=True),
        wildcard_constraints:
            blend="|".join(ALL_INNER_BLENDS) or "^$",
        threads: 1
        localrule: True
        resources:
            **rule_resources("blend"),
        log:
            "logs{variant}/blend/{blend}.log",
        benchmark:
            "benchmarks{variant}/blend/{blend}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "{input.exe} apply {params.args}"
            " --out {output.prediction} --out-weights {output.weights} > {log} 2>&1"

    use rule blend as blend_without_inner with:
        localrule: True
        output:
            prediction=f"{STAGE['predictions']}/{{blend}}.parquet",
            weights=f"{STAGE['predictions']}/{{blend}}.weights.csv",
        wildcard_constraints:
            blend="|".join(b for b in ALL_BLENDS if b not in ALL_INNER_BLENDS) or "^$",


rule leaderboard:
    """Every route's and baseline's metrics as one figure (ranked by leaderboard.metric), the
    p-value histogram, and the chosen route's submission (each route's files from the run
    owning it)."""
    input:
        unpack(leaderboard_inputs),
        exe=binary("pgen-leaderboard"),
    output:
        **leaderboard_outputs(),
    params:
        args=leaderboard_args,
        settings=lambda wildcards: json.dumps({"routes": list(ROUTES_OF[wildcards.variant]), "submit": leaderboard_route(cfg_of(wildcards))}),
    threads: 1
    localrule: True
    resources:
        **rule_resources("leaderboard"),
    log:
        "logs{variant}/leaderboard.log",
    benchmark:
        "benchmarks{variant}/leaderboard.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} {params.args} --out-submission {output.submission} > {log} 2>&1"
