# Stage: validate the raw counts, drop excluded (obs_id, gene) pairs, cache as parquet.


rule ingest:
    input:
        unpack(ingest_inputs),
        exe=binary("pgen-ingest"),
    output:
        counts=INGEST_FILES["counts"],
        obs=INGEST_FILES["obs"],
        summary=INGEST_FILES["summary"],
        qc=report(INGEST_FILES["qc"], category="QC", caption="../report/qc.rst"),
    params:
        cells=ingest_cells_args,
        settings=json.dumps({"columns": config["input"]["columns"], "h5ad_counts": config["input"]["h5ad"]["counts"]}, sort_keys=True),
        excluded=optional_flag("--excluded", "excluded"),
        genes=optional_flag("--genes", "genes"),
    threads: rule_threads("ingest")
    resources:
        **rule_resources("ingest", 16000, 60),
    log:
        "logs/ingest.log",
    benchmark:
        "benchmarks/ingest.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe}"
        " {params.cells} {params.excluded} {params.genes}"
        " --threads {threads}"
        " --out-counts {output.counts} --out-obs {output.obs}"
        " --summary {output.summary} --qc-plot {output.qc} > {log} 2>&1"


rule check_config:
    """The config's cell types, compounds, hold-out pairs and min_cells against the ingested
    cells: what the workflow already checks when it loads if the cells can be read then (not for
    a fresh simulation), with the same one-line message `config: <key>: <reason>`. split and
    filter take its result as an ancient() input: a rerun after a config change does not rerun
    them."""
    input:
        obs=INGEST_FILES["obs"],
        **({"id_map": id_map_path()} if config["split"]["mode"] == "id_map" else {}),
        exe=binary("pgen-config"),
    output:
        CONFIG_CHECKS.RECORD,
    params:
        **check_config_params(),
    threads: 1
    localrule: True
    resources:
        **rule_resources("check_config"),
    log:
        "logs/check_config.log",
    benchmark:
        "benchmarks/check_config.tsv"
    conda:
        "../../envs/python.yaml"
    script:
        "../scripts/check_config.py"
