# Stage: regression routes on the DE values (XGBoost per gene), blends of routes (weights given
# or fitted on an inner hold-out drawn from the training pairs), and the leaderboard.

rule xgb:
    input:
        targets=rules.split.output.targets,
        de_train=rules.de_train_fit.output[0],
        exe=binary("pgen-xgb"),
    output:
        f"{STAGE['predictions']}/xgb.parquet",
    params:
        args=section_params("xgb"),
        log_level=config["log_level"],
    threads: rule_threads("xgb")
    resources:
        mem_mb=rule_resources("xgb", "mem_mb", 4000),
        runtime=rule_resources("xgb", "runtime", 120),
    log:
        "logs/xgb.log",
    benchmark:
        "benchmarks/xgb.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "OMP_WAIT_POLICY=passive RUST_LOG={params.log_level} {input.exe} --de-train {input.de_train}"
        " --targets {input.targets} {params.args} --threads {threads} --out {output} > {log} 2>&1"


rule forest:
    """Random forests on the training pseudo-bulk predict the target pairs' wells; limma (R)
    computes their DE against each target cell type's real samples."""
    input:
        pseudobulk=rules.pseudobulk_train.output[0],
        targets=rules.split.output.targets,
        script=workflow.source_path("../../scripts/limma_de.R"),
        exe=binary("pgen-forest"),
    output:
        prediction=f"{STAGE['predictions']}/forest.parquet",
        pseudobulk="results/forest/predicted_pseudobulk.parquet",
    params:
        args=section_params("forest"),
        **LIMMA_PARAMS,
    threads: rule_threads("forest")
    resources:
        mem_mb=rule_resources("forest", "mem_mb", 8000),
        runtime=rule_resources("forest", "runtime", 240),
    log:
        "logs/forest.log",
    benchmark:
        "benchmarks/forest.tsv"
    conda:
        "../../envs/limma.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} --pseudobulk {input.pseudobulk} --targets {input.targets}"
        " {params.args} --design {params.design} --negative-control {params.control}"
        " --rscript {params.rscript} --script {input.script} --threads {threads}"
        " --out-pseudobulk {output.pseudobulk} --out {output.prediction} > {log} 2>&1"


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
        cell_types=shlex.join(a for ct in config["blend"]["inner"]["cell_types"] for a in ("--cell-type", ct)),
        draw=config["blend"]["inner"]["draw"],
        seed=config["blend"]["inner"]["seed"],
        log_level=config["log_level"],
    log:
        "logs/inner_split.log",
    benchmark:
        "benchmarks/inner_split.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} split --de-train {input.de_train}"
        " --targets {input.targets} {params.cell_types} --draw {params.draw} --seed {params.seed}"
        " --out-train {output.train} --out-targets {output.targets} --out-truth {output.truth} > {log} 2>&1"


rule xgb_inner:
    input:
        targets=rules.inner_split.output.targets,
        de_train=rules.inner_split.output.train,
        exe=binary("pgen-xgb"),
    output:
        f"{INNER}/predictions/xgb.parquet",
    params:
        args=section_params("xgb"),
        log_level=config["log_level"],
    threads: rule_threads("xgb")
    resources:
        mem_mb=rule_resources("xgb", "mem_mb", 4000),
        runtime=rule_resources("xgb", "runtime", 120),
    log:
        "logs/xgb_inner.log",
    benchmark:
        "benchmarks/xgb_inner.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "OMP_WAIT_POLICY=passive RUST_LOG={params.log_level} {input.exe} --de-train {input.de_train}"
        " --targets {input.targets} {params.args} --threads {threads} --out {output} > {log} 2>&1"


rule forest_inner:
    """forest on the inner hold-out: its pairs are in the training pseudo-bulk, and pgen-forest
    drops every target pair's samples before fitting."""
    input:
        pseudobulk=rules.pseudobulk_train.output[0],
        targets=rules.inner_split.output.targets,
        script=workflow.source_path("../../scripts/limma_de.R"),
        exe=binary("pgen-forest"),
    output:
        f"{INNER}/predictions/forest.parquet",
    params:
        args=section_params("forest"),
        **LIMMA_PARAMS,
    threads: rule_threads("forest")
    resources:
        mem_mb=rule_resources("forest", "mem_mb", 8000),
        runtime=rule_resources("forest", "runtime", 240),
    log:
        "logs/forest_inner.log",
    benchmark:
        "benchmarks/forest_inner.tsv"
    conda:
        "../../envs/limma.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} --pseudobulk {input.pseudobulk} --targets {input.targets}"
        " {params.args} --design {params.design} --negative-control {params.control}"
        " --rscript {params.rscript} --script {input.script} --threads {threads} --out {output} > {log} 2>&1"


rule zero_inner:
    input:
        targets=rules.inner_split.output.targets,
        de_train=rules.inner_split.output.train,
        exe=binary("pgen-baseline"),
    output:
        f"{INNER}/predictions/zero.parquet",
    params:
        log_level=config["log_level"],
    log:
        "logs/zero_inner.log",
    benchmark:
        "benchmarks/zero_inner.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} --kind zero --targets {input.targets}"
        " --de-train {input.de_train} --out {output} > {log} 2>&1"


if BLENDS:

    rule blend:
        input:
            unpack(blend_inputs),
            exe=binary("pgen-blend"),
        output:
            prediction=f"{STAGE['predictions']}/{{blend}}.parquet",
            weights=f"{STAGE['predictions']}/{{blend}}.weights.csv",
        params:
            args=blend_args,
            log_level=config["log_level"],
        wildcard_constraints:
            blend="|".join(BLENDS),
        log:
            "logs/blend/{blend}.log",
        benchmark:
            "benchmarks/blend/{blend}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "RUST_LOG={params.log_level} {input.exe} apply {params.args}"
            " --out {output.prediction} --out-weights {output.weights} > {log} 2>&1"


rule leaderboard:
    """Every route's MRRMSE as a bar plot, and the chosen route's submission."""
    input:
        scores=expand(f"{STAGE['scores']}/{{route}}.csv", route=ROUTES) if has_truth() else [],
        submissions=expand(f"{STAGE['submission']}/{{route}}.csv", route=ROUTES),
        **value_inputs(),
        exe=binary("pgen-leaderboard"),
    output:
        **leaderboard_outputs(),
    params:
        scores=lambda wildcards, input: shlex.join(f"--score={r}={p}" for r, p in zip(ROUTES, input.scores)),
        submissions=lambda wildcards, input: shlex.join(f"--submission={r}={p}" for r, p in zip(ROUTES, input.submissions)),
        submit=f"--submit {shlex.quote(leaderboard_route())}" if leaderboard_route() else "",
        plot=lambda wildcards, output: f"--plot {shlex.quote(output.plot)}" if "plot" in output.keys() else "",
        values=value_args,
        log_level=config["log_level"],
    log:
        "logs/leaderboard.log",
    benchmark:
        "benchmarks/leaderboard.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} {params.scores} {params.submissions} {params.submit}"
        " {params.plot} {params.values} --out-submission {output.submission} > {log} 2>&1"
