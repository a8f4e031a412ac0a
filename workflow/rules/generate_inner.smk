# Stage: the generative inner hold-out (generate.inner_holdout). Every model is trained once more
# without the cells of the inner hold-out's pairs (results/inner/targets.csv: measured pairs drawn
# from de_train, on which blends fit their weights) — or, with generate.inner_models: shared, the
# models themselves are trained without them (train.smk) — and those pairs' sizes and cells are
# predicted and generated like the targets'. The generative routes then have inner-hold-out runs
# (results{variant}/inner/predictions/<route>.parquet): their clips, and fitted blends over them,
# are chosen on measured pairs rather than on the targets.

if MODELS and config["generate"]["inner_holdout"]:

    use rule filter as filter_inner with:
        input:
            counts=rules.split.output.train_counts,
            obs=rules.split.output.train_obs,
            validation=rules.split.output.validation,
            pairs=rules.inner_split.output.targets,
            checked=ancient(rules.check_config.output[0]),
            exe=binary("pgen-filter"),
        output:
            **INNER_FILTER,
        params:
            args=lambda wildcards, input: f"{job_params('filter')} --drop-pairs {shlex.quote(input.pairs)}",
        log:
            "logs/filter_inner.log",
        benchmark:
            "benchmarks/filter_inner.tsv"

if MODELS and config["generate"]["inner_holdout"] and not SHARED_INNER_MODELS:

    use rule train_model as train_model_inner with:
        input:
            counts=rules.filter_inner.output.counts,
            obs=rules.filter_inner.output.obs,
            validation=rules.filter_inner.output.validation,
            exe=binary("pgen-train"),
        output:
            model=f"{INNER_MODEL_DIR}/{{model}}/model.safetensors",
            meta=f"{INNER_MODEL_DIR}/{{model}}/model.json",
            history=f"{INNER_MODEL_DIR}/{{model}}/history.csv",
            loss=f"{INNER_MODEL_DIR}/{{model}}/loss.png",
            latent=f"{INNER_MODEL_DIR}/{{model}}/latent.png",
        params:
            args=train_params,
            out_dir=lambda wildcards: at(f"{INNER_MODEL_DIR}/{wildcards.model}", wildcards.variant),
        log:
            "logs{variant}/train_inner/{model}.log",
        benchmark:
            "benchmarks{variant}/train_inner/{model}.tsv"

if MODELS and config["generate"]["inner_holdout"]:

    use rule sizes as sizes_inner with:
        input:
            counts=rules.split.output.train_counts,
            obs=rules.split.output.train_obs,
            targets=rules.inner_split.output.targets,
            exe=binary("pgen-sizes"),
        output:
            table=f"{INNER_GENERATE_DIR}/sizes.csv",
            plot=f"{INNER_GENERATE_DIR}/sizes.png",
        log:
            "logs{variant}/sizes_inner.log",
        benchmark:
            "benchmarks{variant}/sizes_inner.tsv"

    use rule generate as generate_inner with:
        input:
            unpack(trained_inner_model),
            unpack(calibration_input),
            sizes=lambda wildcards: at(f"{INNER_GENERATE_DIR}/sizes.csv", owner(wildcards.variant, ["sizes"])),
            pseudobulk=rules.pseudobulk_train.output[0],
            targets=rules.inner_split.output.targets,
            cells_counts=rules.filter_inner.output.counts,
            cells_obs=rules.filter_inner.output.obs,
            script=LIMMA_SCRIPT,
            exe=binary("pgen-generate"),
        output:
            prediction=f"{INNER_GENERATE_DIR}/{{model}}/run{{run}}.parquet",
            pseudobulk=f"{INNER_GENERATE_DIR}/{{model}}/run{{run}}_pseudobulk.parquet",
            de=f"{INNER_GENERATE_DIR}/{{model}}/run{{run}}_de.h5ad",
        params:
            args=generate_params,
            calibration=calibration_flag,
            cells="",
            model_dir=lambda wildcards, input: os.path.dirname(input.model),
            device=lambda wildcards: cfg_of(wildcards)["train"]["device"],
        log:
            "logs{variant}/generate_inner/{model}/run{run}.log",
        benchmark:
            "benchmarks{variant}/generate_inner/{model}/run{run}.tsv"

    use rule generated_route as generated_route_inner with:
        localrule: True
        input:
            runs=lambda wildcards: inner_generation_runs(wildcards, 1),
            exe=binary("pgen-blend"),
        output:
            prediction=f"{INNER_PREDICTIONS}/{{model}}.parquet",
        log:
            "logs{variant}/generated_route_inner/{model}.log",
        benchmark:
            "benchmarks{variant}/generated_route_inner/{model}.tsv"

    use rule generated_route as averaged_route_inner with:
        localrule: True
        input:
            runs=lambda wildcards: inner_generation_runs(wildcards, cfg_of(wildcards)["generate"]["n_runs"]),
            exe=binary("pgen-blend"),
        output:
            prediction=f"{INNER_PREDICTIONS}/{{model}}_avg.parquet",
        log:
            "logs{variant}/averaged_route_inner/{model}.log",
        benchmark:
            "benchmarks{variant}/averaged_route_inner/{model}.tsv"

    # generate settings set to auto: each candidate generates the inner pairs once (run 0's
    # seed), and pgen-calibrate picks the best against their measured DE.
    use rule generate as generate_candidate_inner with:
        input:
            unpack(trained_inner_model),
            sizes=lambda wildcards: at(f"{INNER_GENERATE_DIR}/sizes.csv", owner(wildcards.variant, ["sizes"])),
            pseudobulk=rules.pseudobulk_train.output[0],
            targets=rules.inner_split.output.targets,
            cells_counts=rules.filter_inner.output.counts,
            cells_obs=rules.filter_inner.output.obs,
            script=LIMMA_SCRIPT,
            exe=binary("pgen-generate"),
        output:
            prediction=f"{INNER_GENERATE_DIR}/{{model}}/candidates/{{candidate}}/run{{run}}.parquet",
            pseudobulk=temp(f"{INNER_GENERATE_DIR}/{{model}}/candidates/{{candidate}}/run{{run}}_pseudobulk.parquet"),
            de=temp(f"{INNER_GENERATE_DIR}/{{model}}/candidates/{{candidate}}/run{{run}}_de.h5ad"),
        params:
            args=candidate_generate_params,
            calibration="",
            cells="",
            model_dir=lambda wildcards, input: os.path.dirname(input.model),
            device=lambda wildcards: cfg_of(wildcards)["train"]["device"],
        wildcard_constraints:
            model="|".join(MODELS),
            candidate=r"[a-z_]+\.[a-z_]+\.[a-z_]+",
            run="0",
        log:
            "logs{variant}/generate_candidate_inner/{model}/{candidate}/run{run}.log",
        benchmark:
            "benchmarks{variant}/generate_candidate_inner/{model}/{candidate}/run{run}.tsv"

    rule calibration:
        """The generate settings set to auto, chosen on the inner hold-out (pgen-calibrate)."""
        input:
            candidates=calibration_candidate_paths,
            truth=f"{INNER}/truth.parquet",
            exe=binary("pgen-calibrate"),
        output:
            pick=f"{INNER_GENERATE_DIR}/{{model}}/calibration.json",
            table=f"{STAGE['scores']}/calibration/{{model}}.csv",
            plot=report(f"{STAGE['scores']}/calibration/{{model}}.png", category="generation", caption="../report/calibration.rst"),
        params:
            args=calibration_args,
        wildcard_constraints:
            model="|".join(MODELS),
        threads: 1
        localrule: True
        resources:
            **rule_resources("score"),
        log:
            "logs{variant}/calibration/{model}.log",
        benchmark:
            "benchmarks{variant}/calibration/{model}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "{input.exe} {params.args} --truth {input.truth}"
            " --out {output.pick} --out-table {output.table} --plot {output.plot}"
            " --title '{wildcards.model}: generation settings on the inner hold-out' > {log} 2>&1"
