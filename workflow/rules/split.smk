# Stage: choose the target pairs (id_map or hold-out) and the validation cells. A checkpoint:
# the cell types of the targets decide which truth DE jobs exist.


checkpoint split:
    input:
        counts=INGEST_FILES["counts"],
        obs=INGEST_FILES["obs"],
        id_map=id_map_path() if config["split"]["mode"] == "id_map" else [],
        checked=ancient(rules.check_config.output[0]),
        exe=binary("pgen-split"),
    output:
        train_counts=f"{STAGE['split']}/train_counts.parquet",
        train_obs=f"{STAGE['split']}/train_obs.parquet",
        holdout_counts=f"{STAGE['split']}/holdout_counts.parquet",
        holdout_obs=f"{STAGE['split']}/holdout_obs.parquet",
        targets=f"{STAGE['split']}/targets.csv",
        validation=f"{STAGE['split']}/validation_ids.txt",
    params:
        targets=lambda wildcards, input: f"--id-map {shlex.quote(input.id_map)}" if input.id_map else "",
        args=job_params("split"),
    threads: rule_threads("split")
    resources:
        **rule_resources("split", 16000, 60),
    log:
        "logs/split.log",
    benchmark:
        "benchmarks/split.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --counts {input.counts} --obs {input.obs}"
        " {params.targets} {params.args} --threads {threads}"
        " --out-train-counts {output.train_counts} --out-train-obs {output.train_obs}"
        " --out-holdout-counts {output.holdout_counts} --out-holdout-obs {output.holdout_obs}"
        " --out-targets {output.targets} --out-validation {output.validation} > {log} 2>&1"


rule ingest_truth:
    """The simulator's withheld test cells, validated and cached like the training cells."""
    input:
        counts=f"{SIM_DIR}/{SIM_FILES['test']}",
        obs=f"{SIM_DIR}/{SIM_FILES['test_obs']}",
        genes=f"{SIM_DIR}/{SIM_FILES['genes']}",
        exe=binary("pgen-ingest"),
    output:
        counts="results/ingest_truth/counts.parquet",
        obs="results/ingest_truth/obs.parquet",
    threads: rule_threads("ingest")
    resources:
        **rule_resources("ingest", 16000, 60),
    log:
        "logs/ingest_truth.log",
    benchmark:
        "benchmarks/ingest_truth.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --counts {input.counts} --obs {input.obs}"
        " --genes {input.genes} --threads {threads}"
        " --out-counts {output.counts} --out-obs {output.obs} > {log} 2>&1"
