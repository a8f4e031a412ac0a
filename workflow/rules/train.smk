# Stage: the generative models (candle): train the conditional DGD and/or NB-VAE on the split's
# training cells (its validation cells for early stopping), then score them by the NB
# log-likelihood of the validation cells against the group-mean NB baseline.

if MODELS:

    rule train_model:
        """Rerunning after an interruption (e.g. a cluster time limit) continues from
        last.safetensors when the settings and cells are unchanged."""
        input:
            counts=rules.filter.output.counts,
            obs=rules.filter.output.obs,
            validation=rules.filter.output.validation,
            exe=binary("pgen-train"),
        output:
            model=f"{MODEL_DIR}/{{model}}/model.safetensors",
            meta=f"{MODEL_DIR}/{{model}}/model.json",
            history=f"{MODEL_DIR}/{{model}}/history.csv",
            loss=f"{MODEL_DIR}/{{model}}/loss.png",
            latent=f"{MODEL_DIR}/{{model}}/latent.png",
        params:
            args=lambda wildcards: train_params(wildcards.model),
            out_dir=lambda wildcards: f"{MODEL_DIR}/{wildcards.model}",
            log_level=config["log_level"],
        wildcard_constraints:
            model="|".join(MODELS),
        threads: rule_threads("train")
        resources:
            mem_mb=rule_resources("train", "mem_mb", 8000),
            runtime=rule_resources("train", "runtime", 240),
        log:
            "logs/train/{model}.log",
        benchmark:
            "benchmarks/train/{model}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "RUST_LOG={params.log_level} {input.exe} --model {wildcards.model} --counts {input.counts}"
            " --obs {input.obs} --validation {input.validation} --out-dir {params.out_dir}"
            " --resume auto {params.args} --threads {threads} > {log} 2>&1"

    rule loglik:
        """Mean NB log-likelihood of the validation cells (DGD: latents fitted with the decoder
        frozen; VAE: encoder mean) and of the per-gene group-mean NB baseline."""
        input:
            model=rules.train_model.output.model,
            meta=rules.train_model.output.meta,
            counts=rules.filter.output.counts,
            obs=rules.filter.output.obs,
            validation=rules.filter.output.validation,
            exe=binary("pgen-loglik"),
        output:
            table=f"{STAGE['scores']}/loglik/{{model}}.csv",
            plot=f"{STAGE['scores']}/loglik/{{model}}.png",
        params:
            model_dir=lambda wildcards: f"{MODEL_DIR}/{wildcards.model}",
            args=loglik_params(),
            log_level=config["log_level"],
        wildcard_constraints:
            model="|".join(MODELS),
        threads: rule_threads("train")
        log:
            "logs/loglik/{model}.log",
        benchmark:
            "benchmarks/loglik/{model}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "RUST_LOG={params.log_level} {input.exe} --model {params.model_dir}"
            " --counts {input.counts} --obs {input.obs} --cells {input.validation}"
            " --baseline-counts {input.counts} --baseline-obs {input.obs}"
            " {params.args} --threads {threads}"
            " --out-table {output.table} --plot {output.plot} --title {wildcards.model} > {log} 2>&1"
