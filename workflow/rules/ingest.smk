# Stage: validate the raw counts, drop excluded (obs_id, gene) pairs, cache as parquet.


rule ingest:
    input:
        unpack(ingest_inputs),
        exe=binary("pgen-ingest"),
    output:
        counts=INGEST_FILES["counts"],
        obs=INGEST_FILES["obs"],
        summary=INGEST_FILES["summary"],
        qc=INGEST_FILES["qc"],
    params:
        cells=ingest_cells_args,
        excluded=optional_flag("--excluded", "excluded"),
        genes=optional_flag("--genes", "genes"),
        log_level=config["log_level"],
    threads: rule_threads("ingest")
    resources:
        mem_mb=rule_resources("ingest", "mem_mb", 16000),
        runtime=rule_resources("ingest", "runtime", 60),
    log:
        "logs/ingest.log",
    benchmark:
        "benchmarks/ingest.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "RUST_LOG={params.log_level} {input.exe}"
        " {params.cells} {params.excluded} {params.genes}"
        " --threads {threads}"
        " --out-counts {output.counts} --out-obs {output.obs}"
        " --summary {output.summary} --qc-plot {output.qc} > {log} 2>&1"
