# Stage: the generation route (SPEC §4). Size forests predict how many cells each target group
# (target cell type × plate × well of its compound) has and their median scale; each trained
# model generates those cells from its prior (generate.n_runs runs with their own seeds, run in
# parallel as separate jobs); the generated groups join the real training samples of their cell
# types in limma → the targets' DE. Route <model> is run 0, <model>_avg all runs combined.

if MODELS:

    rule sizes:
        input:
            counts=rules.split.output.train_counts,
            obs=rules.split.output.train_obs,
            targets=rules.split.output.targets,
            exe=binary("pgen-sizes"),
        output:
            table=f"{GENERATE_DIR}/sizes.csv",
            plot=report(f"{GENERATE_DIR}/sizes.png", category="generation", caption="../report/sizes.rst"),
        params:
            args=section_params("sizes"),
            exclude=size_forest_exclusions(),
            log_level=config["log_level"],
        threads: rule_threads("sizes")
        log:
            "logs/sizes.log",
        benchmark:
            "benchmarks/sizes.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "RUST_LOG={params.log_level} {input.exe} --counts {input.counts} --obs {input.obs}"
            " --targets {input.targets} {params.exclude} {params.args} --threads {threads}"
            " --out {output.table} --plot {output.plot} > {log} 2>&1"

    rule generate:
        input:
            model=rules.train_model.output.model,
            meta=rules.train_model.output.meta,
            sizes=rules.sizes.output.table,
            pseudobulk=rules.pseudobulk_train.output[0],
            targets=rules.split.output.targets,
            script=workflow.source_path("../../scripts/limma_de.R"),
            exe=binary("pgen-generate"),
        output:
            prediction=f"{GENERATE_DIR}/{{model}}/run{{run}}.parquet",
            pseudobulk=f"{GENERATE_DIR}/{{model}}/run{{run}}_pseudobulk.parquet",
        params:
            args=section_params("generate", emit=config["generate"]["emit"], seed=config["generate"]["seed"], reference=config["generate"]["reference"]),
            model_dir=lambda wildcards: f"{MODEL_DIR}/{wildcards.model}",
            device=config["train"]["device"],
            **LIMMA_PARAMS,
        wildcard_constraints:
            model="|".join(MODELS),
            run=r"\d+",
        threads: rule_threads("generate")
        resources:
            mem_mb=rule_resources("generate", "mem_mb", 8000),
            runtime=rule_resources("generate", "runtime", 60),
        log:
            "logs/generate/{model}/run{run}.log",
        benchmark:
            "benchmarks/generate/{model}/run{run}.tsv"
        conda:
            "../../envs/limma.yaml"
        shell:
            "RUST_LOG={params.log_level} {input.exe} --model {params.model_dir} --sizes {input.sizes}"
            " --pseudobulk {input.pseudobulk} --targets {input.targets} --run {wildcards.run}"
            " --device {params.device} {params.args} --design {params.design}"
            " --negative-control {params.control} --rscript {params.rscript} --script {input.script}"
            " --threads {threads} --out {output.prediction} --out-pseudobulk {output.pseudobulk} > {log} 2>&1"

    rule generated_route:
        """Route <model>: one generation run (run 0), as the write-up did."""
        input:
            runs=lambda wildcards: generation_runs(wildcards.model, 1),
            exe=binary("pgen-blend"),
        output:
            prediction=f"{STAGE['predictions']}/{{model}}.parquet",
        params:
            runs=lambda wildcards, input: shlex.join(f"--prediction=run{k}={p}" for k, p in enumerate(input.runs)),
            method=config["generate"]["combine"],
            report="",
            log_level=config["log_level"],
        wildcard_constraints:
            model="|".join(MODELS),
        log:
            "logs/generated_route/{model}.log",
        benchmark:
            "benchmarks/generated_route/{model}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "RUST_LOG={params.log_level} {input.exe} combine {params.runs} --method {params.method}"
            " {params.report} --out {output.prediction} > {log} 2>&1"

    use rule generated_route as averaged_route with:
        input:
            runs=lambda wildcards: generation_runs(wildcards.model, config["generate"]["n_runs"]),
            truth=rules.de_truth.output[0] if has_truth() else [],
            exe=binary("pgen-blend"),
        output:
            prediction=f"{STAGE['predictions']}/{{model}}_avg.parquet",
            **replicate_outputs(),
        params:
            runs=lambda wildcards, input: shlex.join(f"--prediction=run{k}={p}" for k, p in enumerate(input.runs)),
            method=config["generate"]["combine"],
            report=replicate_args,
            log_level=config["log_level"],
        log:
            "logs/averaged_route/{model}.log",
        benchmark:
            "benchmarks/averaged_route/{model}.tsv"
