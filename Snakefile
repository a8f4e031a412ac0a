# perturbgen: simulate or read the Kaggle single-cell perturbation data, then ingest it.
# Stages (one rules file each under workflow/rules/):
#   simulate -> ingest -> split -> pseudobulk (every cell) -> limma (R) -> routes -> score
#                             split -> filter (positive controls out) -> train (DGD / NB-VAE)
#                                                                     -> log-likelihood score
#                             split -> sizes (forests) -> generate (runs) -> limma -> routes
#   another model's generated cells (.h5ad, config external) -> pseudobulk -> limma -> route
#   a trained model + new targets (config predict) -> sizes -> generate -> limma (snakemake predict)
#                             pseudobulk of two halves of every sample -> limma -> noise ceiling
#
#   scripts/demo                  # set up and run this workflow on the demo simulation
#   .venv/bin/snakemake -c2       # the same, once scripts/setup has run
#   .venv/bin/snakemake --profile profiles/slurm   # on a SLURM cluster
#   .venv/bin/snakemake --report report.html       # the plots with captions, one HTML file

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# `snakemake --report report.html`: the plots marked report() on the rules' outputs, with the
# captions of workflow/report/.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


shell.prefix(SHELL_PREFIX)


# {variant}: "" for the main run, /sweeps/<sweep>/<row> for a sweep row (workflow/rules/common.smk).
wildcard_constraints:
    variant=VARIANT_PATTERN,


include: "workflow/rules/simulate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/filter.smk"
include: "workflow/rules/pseudobulk.smk"
include: "workflow/rules/de.smk"
include: "workflow/rules/score_common.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/ceiling.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/regress_common.smk"
include: "workflow/rules/regress.smk"
include: "workflow/rules/train_common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate_common.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/predict_common.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/sweep_common.smk"
include: "workflow/rules/sweep.smk"


localrules:
    all,
    predict,


rule all:
    input:
        all_targets(),
    default_target: True
