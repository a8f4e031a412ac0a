# Stage: another model's generated cells as a route (config `external`; docs/metrics.md
# "Scoring another model's cells"). The cells of an .h5ad (CPA, scGen, scVI, …) are checked,
# the target pairs' cells summed per cell type × plate × well, and those samples join the target
# cell types' real training samples in limma exactly as the generative routes' do with
# generate.reference: real → results/predictions/<external.name>.parquet, scored, submitted and
# on the leaderboard like every route.

# Every external route some run (the main one or a sweep row) scores.
EXTERNAL_ROUTES = list(dict.fromkeys(c["external"]["name"] for c in VARIANTS.values() if c["external"]["cells"] is not None))

for _v, _c in VARIANTS.items():
    _cells = _c["external"]["cells"]
    if _cells is not None and not os.path.isfile(_cells):
        raise WorkflowError(f"config: external.cells: no such file `{_cells}`" + (f" (run {_v})" if _v else ""))

if EXTERNAL_ROUTES:

    rule external_route:
        """Route external.name: the .h5ad's cells → pseudo-bulk → limma (pgen-external)."""
        input:
            cells=lambda wildcards: cfg_of(wildcards)["external"]["cells"],
            pseudobulk=rules.pseudobulk_train.output[0],
            targets=rules.split.output.targets,
            script=LIMMA_SCRIPT,
            exe=binary("pgen-external"),
        output:
            prediction=f"{STAGE['predictions']}/{{external}}.parquet",
            pseudobulk=f"{RUN}/external/{{external}}_pseudobulk.parquet",
            # limma's statistics, for the route's .h5ad (workflow/rules/anndata.smk).
            de=temp(f"{RUN}/external/{{external}}_de.h5ad"),
        params:
            args=lambda wildcards: job_params("external", cfg_of(wildcards)),
        wildcard_constraints:
            external="|".join(re.escape(n) for n in EXTERNAL_ROUTES),
        threads: rule_threads("external")
        resources:
            **rule_resources("external", 8000, 60),
        log:
            "logs{variant}/external/{external}.log",
        benchmark:
            "benchmarks{variant}/external/{external}.tsv"
        conda:
            "../../envs/limma.yaml"
        shell:
            "{input.exe} --cells {input.cells} --pseudobulk {input.pseudobulk} --targets {input.targets}"
            " {params.args} --script {input.script} --threads {threads}"
            " --out {output.prediction} --out-pseudobulk {output.pseudobulk} --out-de-h5ad {output.de} > {log} 2>&1"
