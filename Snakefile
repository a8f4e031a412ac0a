# perturbgen: simulate or read the Kaggle single-cell perturbation data, then ingest it.
# Stages (one rules file each under workflow/rules/):
#   simulate -> ingest -> split -> pseudobulk (every cell) -> limma (R) -> routes -> score
#                             split -> filter (positive controls out) -> train (DGD / NB-VAE)
#                                                                     -> log-likelihood score
#                             split -> sizes (forests) -> generate (runs) -> limma -> routes
#
#   scripts/demo                  # set up and run this workflow on the demo simulation
#   .venv/bin/snakemake -c2       # the same, once scripts/setup has run
#   .venv/bin/snakemake --profile profiles/slurm   # on a SLURM cluster

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/filter.smk"
include: "workflow/rules/pseudobulk.smk"
include: "workflow/rules/de.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/regress_common.smk"
include: "workflow/rules/regress.smk"
include: "workflow/rules/train_common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate_common.smk"
include: "workflow/rules/generate.smk"


localrules:
    all,


rule all:
    input:
        all_targets(),
    default_target: True
