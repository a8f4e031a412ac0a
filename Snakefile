# perturbgen: simulate or read the Kaggle single-cell perturbation data, then ingest it.
# Stages (one rules file each under workflow/rules/): simulate -> ingest
# (to come: filter -> split -> pseudobulk -> limma -> score).
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


localrules:
    all,


rule all:
    input:
        all_targets(),
    default_target: True
