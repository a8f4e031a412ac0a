# Stage: drop positive-control cells and compounds with too few cells.


rule filter:
    input:
        counts=INGEST_FILES["counts"],
        obs=INGEST_FILES["obs"],
        exe=binary("pgen-filter"),
    output:
        counts=f"{STAGE['filter']}/counts.parquet",
        obs=f"{STAGE['filter']}/obs.parquet",
        removed=f"{STAGE['filter']}/removed.csv",
    params:
        drop=shlex.join(a for c in config["filter"]["drop_compounds"] for a in ("--drop-compound", c)),
        min_cells=config["filter"]["min_cells"],
        control=shlex.quote(config["de"]["negative_control"]),
        log_level=config["log_level"],
    threads: rule_threads("filter")
    log:
        "logs/filter.log",
    benchmark:
        "benchmarks/filter.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe} --counts {input.counts} --obs {input.obs}"
        " {params.drop} --min-cells {params.min_cells} --negative-control {params.control}"
        " --threads {threads} --out-counts {output.counts} --out-obs {output.obs}"
        " --removed {output.removed} > {log} 2>&1"
