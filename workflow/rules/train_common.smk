# Helpers for workflow/rules/train.smk (no rules here).

MODELS = list(config["train"]["models"])
MODEL_DIR = STAGE["models"]


def train_params(model):
    """pgen-train's `--params`: the shared settings and `model`'s own (the other model's keys
    stay out, so that changing them does not rerun this one), and the device."""
    t = config["train"]
    return section_params("train", common=t["common"], device=t["device"], models=[model], **{model: t.get(model) or {}})


def loglik_params():
    t = config["train"]
    return section_params("train", device=t["device"], loglik_fit_steps=t["loglik_fit_steps"], models=[])
