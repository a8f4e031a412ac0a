# Stage: the official DE recipe (scripts/limma_de.R), one job per cell type, then merged into
# one table in the de_train layout. "train" gives de_train; "truth" the targets' true DE. Each
# also as AnnData (.h5ad: X = the same values, layers = limma's logFC, AveExpr, t, P.Value,
# adj.P.Val), for volcano plots and scanpy.

rule limma_train:
    input:
        pseudobulk=rules.pseudobulk_train.output[0],
        script=LIMMA_SCRIPT,
        exe=binary("pgen-limma"),
    output:
        table=f"{STAGE['de']}/train/{{cell_type}}.parquet",
        h5ad=f"{STAGE['de']}/train/{{cell_type}}.h5ad",
    params:
        name=lambda wildcards: shlex.quote(CELL_TYPES[wildcards.cell_type]),
        targets=optional_flag("--targets", "targets"),
        args=job_params("limma"),
    wildcard_constraints:
        cell_type="|".join(CELL_TYPES),
    threads: rule_threads("limma")
    resources:
        **rule_resources("limma", 4000, 60),
    log:
        "logs/limma_train/{cell_type}.log",
    benchmark:
        "benchmarks/limma_train/{cell_type}.tsv"
    conda:
        "../../envs/limma.yaml"
    shell:
        "{input.exe} --pseudobulk {input.pseudobulk}"
        " --cell-type {params.name} {params.args}"
        " {params.targets} --script {input.script} --threads {threads}"
        " --out {output.table} --out-h5ad {output.h5ad} > {log} 2>&1"


# The targets' true DE: the same recipe on the pseudo-bulk with their real cells, kept to the
# target pairs (--targets).
use rule limma_train as limma_truth with:
    input:
        pseudobulk=rules.pseudobulk_truth.output[0],
        targets=rules.split.output.targets,
        script=LIMMA_SCRIPT,
        exe=binary("pgen-limma"),
    output:
        table=f"{STAGE['de']}/truth/{{cell_type}}.parquet",
        h5ad=f"{STAGE['de']}/truth/{{cell_type}}.h5ad",
    log:
        "logs/limma_truth/{cell_type}.log",
    benchmark:
        "benchmarks/limma_truth/{cell_type}.tsv"


rule de_train:
    input:
        tables=expand(f"{STAGE['de']}/train/{{cell_type}}.parquet", cell_type=list(CELL_TYPES)),
        exe=binary("pgen-merge-de"),
    output:
        f"{STAGE['de']}/de_train.parquet",
    params:
        drop="",
    threads: 1
    resources:
        **rule_resources("de_train"),
    log:
        "logs/de_train.log",
    benchmark:
        "benchmarks/de_train.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} {input.tables} {params.drop} --out {output} > {log} 2>&1"


use rule de_train as de_truth with:
    input:
        tables=lambda wildcards: expand(f"{STAGE['de']}/truth/{{cell_type}}.parquet", cell_type=target_cell_type_slugs()),
        exe=binary("pgen-merge-de"),
    output:
        f"{STAGE['de']}/truth.parquet",
    log:
        "logs/de_truth.log",
    benchmark:
        "benchmarks/de_truth.tsv"


# The de_train rows the regressors fit: with filter.regressors (the write-up's choice), without
# the rows of filter.drop_compounds (the positive controls); de_train itself keeps them, as the
# official table does.
use rule de_train as de_train_fit with:
    input:
        tables=de_train_path(),
        exe=binary("pgen-merge-de"),
    output:
        f"{STAGE['de']}/de_train_fit.parquet",
    params:
        drop=shlex.join(a for c in config["filter"]["drop_compounds"] for a in ("--drop-compound", c)) if config["filter"]["regressors"] else "",
    log:
        "logs/de_train_fit.log",
    benchmark:
        "benchmarks/de_train_fit.tsv"


# de_train and the truth as AnnData: the per-cell-type .h5ad merged in the parquet tables' row
# order; uns/route names the table.
rule de_train_h5ad:
    input:
        tables=expand(f"{STAGE['de']}/train/{{cell_type}}.h5ad", cell_type=list(CELL_TYPES)),
        exe=binary("pgen-merge-de"),
    output:
        f"{STAGE['de']}/de_train.h5ad",
    params:
        route="de_train",
    threads: 1
    resources:
        # the five layers in and out: ~1 GB at Kaggle size (614 pairs x 18,211 genes)
        **rule_resources("de_train_h5ad", 4000),
    log:
        "logs/de_train_h5ad.log",
    benchmark:
        "benchmarks/de_train_h5ad.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} {input.tables} --route {params.route} --out-h5ad {output} > {log} 2>&1"


use rule de_train_h5ad as de_truth_h5ad with:
    input:
        tables=lambda wildcards: expand(f"{STAGE['de']}/truth/{{cell_type}}.h5ad", cell_type=target_cell_type_slugs()),
        exe=binary("pgen-merge-de"),
    output:
        f"{STAGE['de']}/truth.h5ad",
    params:
        route="truth",
    log:
        "logs/de_truth_h5ad.log",
    benchmark:
        "benchmarks/de_truth_h5ad.tsv"
