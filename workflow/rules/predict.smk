# Stage: trained models applied to new targets without retraining (config `predict`; `snakemake
# predict`; docs/predict.md). pgen-predict makes the same library calls as the sizes and generate
# jobs, on the run's own training cells, pseudo-bulk and settings, for the pairs of
# predict.targets: nothing upstream reruns (the split, filter and models stay as they are).
# Outputs: results/predict/<targets file name>/<model>/run<k>.parquet (signed −log10 P) and
# run<k>.h5ad (with limma's logFC, P.Value, adj.P.Val as layers), run<k>_sizes.csv and
# run<k>_pseudobulk.parquet for k < generate.n_runs, and prediction.parquet, the runs combined.

rule predict:
    """Every model's prediction for the pairs of predict.targets."""
    input:
        predict_inputs,


if PREDICT_TARGETS is not None:

    rule predict_run:
        input:
            model=lambda wildcards: f"{PREDICT_MODELS[wildcards.model]}/model.safetensors",
            meta=lambda wildcards: f"{PREDICT_MODELS[wildcards.model]}/model.json",
            targets=PREDICT_TARGETS,
            counts=rules.split.output.train_counts,
            obs=rules.split.output.train_obs,
            pseudobulk=rules.pseudobulk_train.output[0],
            # The model's cells: generate.source controls starts from the target cell types' controls.
            cells_counts=MODEL_CELLS["counts"],
            cells_obs=MODEL_CELLS["obs"],
            script=LIMMA_SCRIPT,
            exe=binary("pgen-predict"),
            # generate settings set to auto: the inner hold-out's pick for the workflow's model.
            **predict_calibration_input(),
        output:
            prediction=f"{PREDICT_DIR}/{{targets}}/{{model}}/run{{run}}.parquet",
            h5ad=f"{PREDICT_DIR}/{{targets}}/{{model}}/run{{run}}.h5ad",
            sizes=f"{PREDICT_DIR}/{{targets}}/{{model}}/run{{run}}_sizes.csv",
            pseudobulk=f"{PREDICT_DIR}/{{targets}}/{{model}}/run{{run}}_pseudobulk.parquet",
            **({"cells": f"{PREDICT_DIR}/{{targets}}/{{model}}/run{{run}}_cells.parquet", "cells_obs": f"{PREDICT_DIR}/{{targets}}/{{model}}/run{{run}}_cells_obs.parquet"} if config["generate"]["write_cells"] else {}),
        params:
            args=predict_args,
            calibration=calibration_flag,
            model_dir=lambda wildcards, input: os.path.dirname(input.model),
            device=config["train"]["device"],
        wildcard_constraints:
            targets=re.escape(PREDICT_SET),
            model="|".join(re.escape(m) for m in PREDICT_MODELS),
            run=r"\d+",
        threads: rule_threads("predict")
        resources:
            **rule_resources("predict", 8000, 60),
        log:
            "logs/predict/{targets}/{model}/run{run}.log",
        benchmark:
            "benchmarks/predict/{targets}/{model}/run{run}.tsv"
        conda:
            "../../envs/limma.yaml"
        shell:
            "{input.exe} --model {params.model_dir} --targets {input.targets}"
            " --counts {input.counts} --obs {input.obs} --pseudobulk {input.pseudobulk}"
            " --cells-counts {input.cells_counts} --cells-obs {input.cells_obs}"
            " --run {wildcards.run} --device {params.device} {params.args} {params.calibration} --script {input.script}"
            " --threads {threads} --out {output.prediction} --out-h5ad {output.h5ad} --out-sizes {output.sizes}"
            " --out-pseudobulk {output.pseudobulk} > {log} 2>&1"

    rule predict_combined:
        """The runs' predictions combined (generate.combine), as route <model>_avg combines the
        generate runs."""
        input:
            runs=predict_runs,
            exe=binary("pgen-blend"),
        output:
            f"{PREDICT_DIR}/{{targets}}/{{model}}/prediction.parquet",
        params:
            runs=lambda wildcards, input: shlex.join(f"--prediction=run{k}={p}" for k, p in enumerate(input.runs)),
            method=config["generate"]["combine"],
        wildcard_constraints:
            targets=re.escape(PREDICT_SET),
            model="|".join(re.escape(m) for m in PREDICT_MODELS),
        threads: 1
        resources:
            **rule_resources("combine"),
        log:
            "logs/predict/{targets}/{model}/combined.log",
        benchmark:
            "benchmarks/predict/{targets}/{model}/combined.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "{input.exe} combine {params.runs} --method {params.method} --out {output} > {log} 2>&1"
