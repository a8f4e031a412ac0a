# Stage: sum counts per plate x well x cell type. "train" from the training cells; "truth" from
# the training cells plus the target pairs' real cells (their DE needs the same DMSO samples).


rule pseudobulk_train:
    input:
        counts=rules.split.output.train_counts,
        obs=rules.split.output.train_obs,
        exe=binary("pgen-pseudobulk"),
    output:
        f"{STAGE['pseudobulk']}/train.parquet",
    threads: rule_threads("pseudobulk")
    resources:
        **rule_resources("pseudobulk", 8000, 30),
    log:
        "logs/pseudobulk_train.log",
    benchmark:
        "benchmarks/pseudobulk_train.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --counts {input.counts} --obs {input.obs}"
        " --threads {threads} --out {output} > {log} 2>&1"


rule pseudobulk_truth:
    input:
        counts=rules.split.output.train_counts,
        obs=rules.split.output.train_obs,
        **truth_cells(),
        exe=binary("pgen-pseudobulk"),
    output:
        f"{STAGE['pseudobulk']}/truth.parquet",
    threads: rule_threads("pseudobulk")
    resources:
        **rule_resources("pseudobulk", 8000, 30),
    log:
        "logs/pseudobulk_truth.log",
    benchmark:
        "benchmarks/pseudobulk_truth.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --counts {input.counts} --obs {input.obs}"
        " --counts {input.truth_counts} --obs {input.truth_obs}"
        " --threads {threads} --out {output} > {log} 2>&1"
