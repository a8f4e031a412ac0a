# Stage: simulate a Kaggle-format data set (only used when config input.source is simulate).


rule simulate:
    input:
        exe=binary("pgen-simulate"),
    output:
        **{key: f"{SIM_DIR}/{name}" for key, name in SIM_FILES.items()},
    params:
        args=job_params("simulate"),
        out_dir=lambda wildcards, output: os.path.dirname(output.info),
    threads: rule_threads("simulate")
    resources:
        **rule_resources("simulate", 4000, 30),
    log:
        "logs/simulate.log",
    benchmark:
        "benchmarks/simulate.tsv"
    conda:
        "../../envs/perturbgen.yaml"
    shell:
        "{input.exe} {params.args}"
        " --threads {threads} --out {params.out_dir} > {log} 2>&1"
