# Figures per target pair for the route to trust: predicted vs true signed -log10 P (the genes
# with the largest |truth| named) and the truth's volcano plot, from the truth's .h5ad. The
# route is leaderboard.submit when set; otherwise pgen-target-plots reads the best one from the
# first data row of scores.csv (sorted best first) when the job runs, so every route's
# prediction is an input. The main run only: a sweep row's routes may live in other runs.


rule target_figures:
    input:
        truth=rules.de_truth_h5ad.output[0],
        scores=at(f"{STAGE['scores']}/scores.csv"),
        predictions=target_figures_predictions(),
        exe=binary("pgen-target-plots"),
    output:
        directory(at(TARGET_FIGURES)),
    params:
        route=target_figures_route_flag,
        folder=lambda wildcards, input: os.path.dirname(input.predictions[0]),
    threads: 1
    localrule: True
    resources:
        **rule_resources("target_figures"),
    log:
        "logs/target_figures.log",
    benchmark:
        "benchmarks/target_figures.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --truth {input.truth} {params.route} --predictions {params.folder}"
        " --out-dir {output} > {log} 2>&1"
