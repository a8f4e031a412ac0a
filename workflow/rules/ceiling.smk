# Stage: the noise ceiling, how well the measurement predicts itself. Every pseudo-bulk sample's
# cells (the truth's: training cells plus the targets' real cells) are split into two halves
# (pgen-pseudobulk --half, seeded by ceiling.seed), the official limma recipe runs on each half,
# kept to the target pairs, and the first half's DE is scored against the second's with the
# routes' metrics. Each half has half the cells (weaker p-values than the full truth), so the
# ceiling is conservative: a route may score better. Main run only; sweep rows share it.

wildcard_constraints:
    half="first|second",


# Not `use rule pseudobulk_truth`: that rule's command has no place for --half, and giving it one
# (a params entry) would make Snakemake rerun every existing truth pseudo-bulk and all after it.
rule pseudobulk_half:
    input:
        counts=rules.split.output.train_counts,
        obs=rules.split.output.train_obs,
        **truth_cells(),
        exe=binary("pgen-pseudobulk"),
    output:
        f"{STAGE['pseudobulk']}/ceiling/{{half}}.parquet",
    params:
        args=job_params("pseudobulk_half"),
    threads: rule_threads("pseudobulk")
    resources:
        **rule_resources("pseudobulk", 8000, 30),
    log:
        "logs/ceiling/pseudobulk_{half}.log",
    benchmark:
        "benchmarks/ceiling/pseudobulk_{half}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --counts {input.counts} --obs {input.obs}"
        " --counts {input.truth_counts} --obs {input.truth_obs}"
        " --half {wildcards.half} {params.args}"
        " --threads {threads} --out {output} > {log} 2>&1"


# A half's DE: the truth's recipe (limma_truth) on the half's pseudo-bulk, kept to the targets.
use rule limma_truth as limma_half with:
    input:
        pseudobulk=rules.pseudobulk_half.output[0],
        targets=rules.split.output.targets,
        script=LIMMA_SCRIPT,
        exe=binary("pgen-limma"),
    output:
        table=f"{STAGE['de']}/ceiling/{{half}}/{{cell_type}}.parquet",
        h5ad=temp(f"{STAGE['de']}/ceiling/{{half}}/{{cell_type}}.h5ad"),  # limma_truth's AnnData twin: not kept
    log:
        "logs/ceiling/limma_{half}/{cell_type}.log",
    benchmark:
        "benchmarks/ceiling/limma_{half}/{cell_type}.tsv"


use rule de_truth as de_half with:
    input:
        tables=lambda wildcards: expand(f"{STAGE['de']}/ceiling/{wildcards.half}/{{cell_type}}.parquet", cell_type=target_cell_type_slugs()),
        exe=binary("pgen-merge-de"),
    output:
        f"{STAGE['de']}/ceiling/{{half}}.parquet",
    log:
        "logs/ceiling/de_{half}.log",
    benchmark:
        "benchmarks/ceiling/de_{half}.tsv"


# The first half's DE as the prediction, the second's as the truth (which half plays which part
# does not matter: RMSE is symmetric).
rule ceiling_score:
    """Under a metric on the ±4-clipped truth (leaderboard.metric *_clip4) the first half is
    clipped to ±4 as well: a measurement beyond the truth's clip can only add error there, and
    the routes get their clip too."""
    input:
        prediction=at(f"{STAGE['de']}/ceiling/first.parquet"),
        truth=at(f"{STAGE['de']}/ceiling/second.parquet"),
        exe=binary("pgen-score"),
    output:
        table=at(f"{STAGE['scores']}/ceiling.csv"),
        plot=report(at(f"{STAGE['scores']}/ceiling.png"), category="scores", subcategory="ceiling", labels={"route": "ceiling", "run": ""}, caption="../report/ceiling.rst"),
    params:
        clip="--clip 4.0" if config["leaderboard"]["metric"].endswith("_clip4") else "--clip none",
    threads: 1
    localrule: True
    resources:
        **rule_resources("score"),
    log:
        "logs/ceiling/score.log",
    benchmark:
        "benchmarks/ceiling/score.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --prediction {input.prediction} --truth {input.truth}"
        " {params.clip} --out-table {output.table} --plot {output.plot} --title ceiling > {log} 2>&1"
