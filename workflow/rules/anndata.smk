# Stage: every route's prediction as AnnData (docs/anndata.md): results/predictions/<route>.h5ad
# beside its parquet. obs = the target pairs with their compound's metadata, var = the genes,
# X = the parquet's signed −log10 P; where the route ran limma (forest, run 0 of each generative
# model, the external route) also limma's logFC, AveExpr, t, P.Value and adj.P.Val as layers (the
# statistics the stage wrote beside its prediction); uns = the route's name and the config
# sections its prediction depends on.


rule prediction_h5ad:
    """A route's prediction as AnnData (pgen-anndata)."""
    input:
        unpack(route_de_stats),
        prediction=lambda wildcards: prediction_path(wildcards.variant, wildcards.route),
        exe=binary("pgen-anndata"),
    output:
        f"{STAGE['predictions']}/{{route}}.h5ad",
    params:
        args=route_settings,
    wildcard_constraints:
        route="|".join(re.escape(r) for r in ALL_ROUTES),
    threads: 1
    localrule: True
    resources:
        **rule_resources("anndata", 4000, 30),
    log:
        "logs{variant}/prediction_h5ad/{route}.log",
    benchmark:
        "benchmarks{variant}/prediction_h5ad/{route}.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} --prediction {input.prediction} --route {wildcards.route} {params.args}"
        " --threads {threads} --out {output} > {log} 2>&1"
