# Stage: the generative models (candle): train the conditional DGD and/or NB-VAE on the split's
# training cells (its validation cells for early stopping), then score them by the NB
# log-likelihood of the validation cells against the group-mean NB baseline.

if MODELS:

    rule train_model:
        """Rerunning after an interruption (e.g. a cluster time limit) continues from
        last.safetensors when the settings and cells are unchanged."""
        input:
            counts=MODEL_CELLS["counts"],
            obs=MODEL_CELLS["obs"],
            validation=MODEL_CELLS["validation"],
            exe=binary("pgen-train"),
        output:
            model=f"{MODEL_DIR}/{{model}}/model.safetensors",
            meta=f"{MODEL_DIR}/{{model}}/model.json",
            history=f"{MODEL_DIR}/{{model}}/history.csv",
            loss=report(f"{MODEL_DIR}/{{model}}/loss.png", category="models", subcategory="{model}", caption="../report/loss.rst"),
            latent=report(f"{MODEL_DIR}/{{model}}/latent.png", category="models", subcategory="{model}", caption="../report/latent.rst"),
        params:
            args=train_params,
            out_dir=lambda wildcards: at(f"{MODEL_DIR}/{wildcards.model}", wildcards.variant),
        wildcard_constraints:
            model="|".join(MODELS),
        threads: rule_threads("train")
        resources:
            **training_resources(),
        log:
            "logs{variant}/train/{model}.log",
        benchmark:
            "benchmarks{variant}/train/{model}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "{input.exe} --model {wildcards.model} --counts {input.counts}"
            " --obs {input.obs} --validation {input.validation} --out-dir {params.out_dir}"
            " --resume auto {params.args} --threads {threads} > {log} 2>&1"

    rule loglik:
        """Mean NB log-likelihood of the validation cells (DGD: latents fitted with the decoder
        frozen; VAE: encoder mean) and of the per-gene group-mean NB baseline."""
        input:
            unpack(trained_model),
            counts=MODEL_CELLS["counts"],
            obs=MODEL_CELLS["obs"],
            validation=MODEL_CELLS["validation"],
            exe=binary("pgen-loglik"),
        output:
            table=f"{STAGE['scores']}/loglik/{{model}}.csv",
            plot=report(f"{STAGE['scores']}/loglik/{{model}}.png", category="models", subcategory="{model}", caption="../report/loglik.rst"),
        params:
            model_dir=lambda wildcards, input: os.path.dirname(input.model),
            args=loglik_params,
        wildcard_constraints:
            model="|".join(MODELS),
        threads: rule_threads("train")
        resources:
            **rule_resources("loglik", 4000, 60),
        log:
            "logs{variant}/loglik/{model}.log",
        benchmark:
            "benchmarks{variant}/loglik/{model}.tsv"
        conda:
            "../../envs/perturbgen.yaml"
        shell:
            "{input.exe} --model {params.model_dir}"
            " --counts {input.counts} --obs {input.obs} --cells {input.validation}"
            " --baseline-counts {input.counts} --baseline-obs {input.obs}"
            " {params.args} --threads {threads}"
            " --out-table {output.table} --plot {output.plot} --title {wildcards.model} > {log} 2>&1"
