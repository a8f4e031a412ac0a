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
            args=lambda wildcards: job_params("sizes", cfg_of(wildcards)),
            exclude=size_forest_exclusions(),
        threads: rule_threads("sizes")
        resources:
            **rule_resources("sizes", 4000, 60),
        log:
            "logs{variant}/sizes.log",
        benchmark:
            "benchmarks{variant}/sizes.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "{input.exe} --counts {input.counts} --obs {input.obs}"
            " --targets {input.targets} {params.exclude} {params.args} --threads {threads}"
            " --out {output.table} --plot {output.plot} > {log} 2>&1"

    rule generate:
        input:
            unpack(trained_model),
            # generate settings set to auto: the inner hold-out's pick (generate_inner.smk).
            unpack(calibration_input),
            sizes=lambda wildcards: at(f"{GENERATE_DIR}/sizes.csv", owner(wildcards.variant, ["sizes"])),
            pseudobulk=rules.pseudobulk_train.output[0],
            targets=rules.split.output.targets,
            # The model's cells: generate.source controls starts from the target cell types' controls.
            cells_counts=MODEL_CELLS["counts"],
            cells_obs=MODEL_CELLS["obs"],
            script=LIMMA_SCRIPT,
            exe=binary("pgen-generate"),
            # generate settings set to auto: the inner hold-out's pick (generate_inner.smk).
        output:
            prediction=f"{GENERATE_DIR}/{{model}}/run{{run}}.parquet",
            pseudobulk=f"{GENERATE_DIR}/{{model}}/run{{run}}_pseudobulk.parquet",
            # limma's statistics of the run, for its route's .h5ad (workflow/rules/anndata.smk); kept, not
            # temp(): a route rebuilt later (e.g. generate.combine changed) must not regenerate run 0.
            de=f"{GENERATE_DIR}/{{model}}/run{{run}}_de.h5ad",
            **generated_cells_outputs(),
        params:
            args=generate_params,
            calibration=calibration_flag,
            cells=generated_cells_args,
            model_dir=lambda wildcards, input: os.path.dirname(input.model),
            device=lambda wildcards: cfg_of(wildcards)["train"]["device"],
        wildcard_constraints:
            model="|".join(MODELS),
            run=r"\d+",
        threads: rule_threads("generate")
        resources:
            **rule_resources("generate", 8000, 60),
        log:
            "logs{variant}/generate/{model}/run{run}.log",
        benchmark:
            "benchmarks{variant}/generate/{model}/run{run}.tsv"
        conda:
            "../../envs/limma.yaml"
        shell:
            "{input.exe} --model {params.model_dir} --sizes {input.sizes}"
            " --pseudobulk {input.pseudobulk} --targets {input.targets} --run {wildcards.run}"
            " --cells-counts {input.cells_counts} --cells-obs {input.cells_obs}"
            " --device {params.device} {params.args} {params.calibration} --script {input.script}"
            " --threads {threads} --out {output.prediction} --out-pseudobulk {output.pseudobulk}"
            " --out-de-h5ad {output.de} {params.cells} > {log} 2>&1"

    rule probe:
        """Does the model carry a compound's effect to a cell type it never saw treated with it?
        The model's log fold change for each target pair (the cell type's own controls decoded
        with the target's covariates) against the truth, next to the other cell types' mean."""
        input:
            unpack(trained_model),
            sizes=lambda wildcards: at(f"{GENERATE_DIR}/sizes.csv", owner(wildcards.variant, ["sizes"])),
            cells_counts=MODEL_CELLS["counts"],
            cells_obs=MODEL_CELLS["obs"],
            truth=rules.de_truth_h5ad.output[0],
            train=rules.de_train_h5ad.output[0],
            exe=binary("pgen-probe"),
        output:
            table=f"{STAGE['scores']}/probe/{{model}}.csv",
            plot=report(f"{STAGE['scores']}/probe/{{model}}.png", category="generation", caption="../report/probe.rst"),
        params:
            model_dir=lambda wildcards, input: os.path.dirname(input.model),
            negative_control=lambda wildcards: shlex.quote(cfg_of(wildcards)["de"]["negative_control"]),
            seed=lambda wildcards: cfg_of(wildcards)["generate"]["seed"],
            device=lambda wildcards: cfg_of(wildcards)["train"]["device"],
        wildcard_constraints:
            model="|".join(MODELS),
        threads: rule_threads("generate")
        resources:
            **rule_resources("generate", 8000, 60),
        log:
            "logs{variant}/probe/{model}.log",
        benchmark:
            "benchmarks{variant}/probe/{model}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "{input.exe} --model {params.model_dir} --cells-counts {input.cells_counts} --cells-obs {input.cells_obs}"
            " --sizes {input.sizes} --truth {input.truth} --train {input.train}"
            " --negative-control {params.negative_control} --seed {params.seed} --device {params.device}"
            " --threads {threads} --out {output.table} --plot {output.plot} > {log} 2>&1"

    rule generated_route:
        """Route <model>: one generation run (run 0), as the write-up did."""
        input:
            runs=lambda wildcards: generation_runs(wildcards, 1),
            exe=binary("pgen-blend"),
        output:
            prediction=f"{STAGE['predictions']}/{{model}}.parquet",
        params:
            runs=lambda wildcards, input: shlex.join(f"--prediction=run{k}={p}" for k, p in enumerate(input.runs)),
            method=lambda wildcards: cfg_of(wildcards)["generate"]["combine"],
            report="",
        wildcard_constraints:
            model="|".join(MODELS),
        threads: 1
        localrule: True
        resources:
            **rule_resources("combine"),
        log:
            "logs{variant}/generated_route/{model}.log",
        benchmark:
            "benchmarks{variant}/generated_route/{model}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "{input.exe} combine {params.runs} --method {params.method}"
            " {params.report} --out {output.prediction} > {log} 2>&1"

    use rule generated_route as averaged_route with:
        localrule: True
        input:
            runs=lambda wildcards: generation_runs(wildcards, cfg_of(wildcards)["generate"]["n_runs"]),
            truth=rules.de_truth.output[0] if has_truth() else [],
            exe=binary("pgen-blend"),
        output:
            prediction=f"{STAGE['predictions']}/{{model}}_avg.parquet",
            **replicate_outputs(),
        params:
            runs=lambda wildcards, input: shlex.join(f"--prediction=run{k}={p}" for k, p in enumerate(input.runs)),
            method=lambda wildcards: cfg_of(wildcards)["generate"]["combine"],
            report=replicate_args,
        log:
            "logs{variant}/averaged_route/{model}.log",
        benchmark:
            "benchmarks{variant}/averaged_route/{model}.tsv"
