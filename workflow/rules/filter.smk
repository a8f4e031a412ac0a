# Stage: the cells the generative models train on (the write-up's filter): the split's training
# cells without the positive controls and compounds with too few cells, and the validation ids
# narrowed to them. The DE stage keeps every cell (SPEC §3): it reads the split directly.


rule filter:
    input:
        counts=rules.split.output.train_counts,
        obs=rules.split.output.train_obs,
        validation=rules.split.output.validation,
        checked=ancient(rules.check_config.output[0]),
        exe=binary("pgen-filter"),
    output:
        counts=f"{STAGE['filter']}/counts.parquet",
        obs=f"{STAGE['filter']}/obs.parquet",
        removed=f"{STAGE['filter']}/removed.csv",
        validation=f"{STAGE['filter']}/validation_ids.txt",
    params:
        args=job_params("filter"),
    threads: rule_threads("filter")
    resources:
        **rule_resources("filter", 16000, 60),
    log:
        "logs/filter.log",
    benchmark:
        "benchmarks/filter.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --counts {input.counts} --obs {input.obs}"
        " {params.args} --threads {threads} --out-counts {output.counts} --out-obs {output.obs}"
        " --removed {output.removed} --ids {input.validation} --out-ids {output.validation} > {log} 2>&1"
