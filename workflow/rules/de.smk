# Stage: the official DE recipe (scripts/limma_de.R), one job per cell type, then merged into
# one table in the de_train layout. "train" gives de_train; "truth" the targets' true DE.

LIMMA_PARAMS = dict(
    design=shlex.quote(config["de"]["design"]),
    control=shlex.quote(config["de"]["negative_control"]),
    rscript=shlex.quote(config["de"]["rscript"]),
    log_level=config["log_level"],
)


rule limma_train:
    input:
        pseudobulk=rules.pseudobulk_train.output[0],
        script=workflow.source_path("../../scripts/limma_de.R"),
        exe=binary("pgen-limma"),
    output:
        f"{STAGE['de']}/train/{{cell_type}}.parquet",
    params:
        name=lambda wildcards: shlex.quote(CELL_TYPES[wildcards.cell_type]),
        **LIMMA_PARAMS,
    wildcard_constraints:
        cell_type="|".join(CELL_TYPES),
    threads: rule_threads("limma")
    resources:
        mem_mb=rule_resources("limma", "mem_mb", 4000),
        runtime=rule_resources("limma", "runtime", 60),
    log:
        "logs/limma_train/{cell_type}.log",
    benchmark:
        "benchmarks/limma_train/{cell_type}.tsv"
    conda:
        "../../envs/limma.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} --pseudobulk {input.pseudobulk}"
        " --cell-type {params.name} --design {params.design} --negative-control {params.control}"
        " --rscript {params.rscript} --script {input.script} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule limma_truth:
    input:
        pseudobulk=rules.pseudobulk_truth.output[0],
        targets=rules.split.output.targets,
        script=workflow.source_path("../../scripts/limma_de.R"),
        exe=binary("pgen-limma"),
    output:
        f"{STAGE['de']}/truth/{{cell_type}}.parquet",
    params:
        name=lambda wildcards: shlex.quote(CELL_TYPES[wildcards.cell_type]),
        **LIMMA_PARAMS,
    wildcard_constraints:
        cell_type="|".join(CELL_TYPES),
    threads: rule_threads("limma")
    resources:
        mem_mb=rule_resources("limma", "mem_mb", 4000),
        runtime=rule_resources("limma", "runtime", 60),
    log:
        "logs/limma_truth/{cell_type}.log",
    benchmark:
        "benchmarks/limma_truth/{cell_type}.tsv"
    conda:
        "../../envs/limma.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} --pseudobulk {input.pseudobulk}"
        " --cell-type {params.name} --design {params.design} --negative-control {params.control}"
        " --targets {input.targets} --rscript {params.rscript} --script {input.script}"
        " --threads {threads} --out {output} > {log} 2>&1"


rule de_train:
    input:
        tables=expand(f"{STAGE['de']}/train/{{cell_type}}.parquet", cell_type=list(CELL_TYPES)),
        exe=binary("pgen-merge-de"),
    output:
        f"{STAGE['de']}/de_train.parquet",
    params:
        log_level=config["log_level"],
    log:
        "logs/de_train.log",
    benchmark:
        "benchmarks/de_train.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} {input.tables} --out {output} > {log} 2>&1"


rule de_truth:
    input:
        tables=lambda wildcards: expand(f"{STAGE['de']}/truth/{{cell_type}}.parquet", cell_type=target_cell_type_slugs()),
        exe=binary("pgen-merge-de"),
    output:
        f"{STAGE['de']}/truth.parquet",
    params:
        log_level=config["log_level"],
    log:
        "logs/de_truth.log",
    benchmark:
        "benchmarks/de_truth.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} {input.tables} --out {output} > {log} 2>&1"


rule de_train_fit:
    """The de_train rows the regressors fit: with filter.regressors (the write-up's choice),
    without the rows of filter.drop_compounds (the positive controls); de_train itself keeps
    them, as the official table does."""
    input:
        de_train=de_train_path(),
        exe=binary("pgen-merge-de"),
    output:
        f"{STAGE['de']}/de_train_fit.parquet",
    params:
        drop=shlex.join(a for c in config["filter"]["drop_compounds"] for a in ("--drop-compound", c)) if config["filter"]["regressors"] else "",
        log_level=config["log_level"],
    log:
        "logs/de_train_fit.log",
    benchmark:
        "benchmarks/de_train_fit.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} {input.de_train} {params.drop} --out {output} > {log} 2>&1"
