# Helpers for workflow/rules/train.smk (no rules here).

MODELS = list(config["train"]["models"])
MODEL_DIR = STAGE["models"]


def train_args(model):
    """pgen-train flags from config['train'] (shared keys, then the model's own section)."""
    t = config["train"]
    settings = {**t["common"], **t.get(model, {})}
    args = []
    for key, value in settings.items():
        if value is None:
            continue
        flag = f"--{key.replace('_', '-')}"
        if key == "covariates":
            for c in value:
                args += ["--covariate", c]
        elif isinstance(value, list):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return shlex.join(args)
