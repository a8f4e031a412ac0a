# Helpers for workflow/rules/train.smk (no rules here).

MODELS = ALL_MODELS  # every model some run (the main one or a sweep row) trains

# generate.inner_models: shared — the models are trained once, without the inner hold-out's
# pairs' cells, and serve the inner hold-out and the targets alike (generate_inner.smk).
SHARED_INNER_MODELS = config["generate"]["inner_holdout"] and config["generate"]["inner_models"] == "shared"
# The cells the models train on, whose latents generate.source: controls starts from.
MODEL_CELLS = INNER_FILTER if SHARED_INNER_MODELS else {k: getattr(rules.filter.output, k) for k in ("counts", "obs", "validation")}


def set_keys(params):
    """The keys of a model's settings that are set: null means unset (the model's own default),
    so a key added to the settings in a later version does not rerun trained models."""
    return {k: v for k, v in (params or {}).items() if v is not None}


def train_params(wildcards):
    """pgen-train's `--params`: the shared settings and the model's own (the other model's keys
    stay out, so that changing them does not rerun this one), the device and the precision."""
    t, model = cfg_of(wildcards)["train"], wildcards.model
    return section_params("train", common=set_keys(t["common"]), device=t["device"], precision=t["precision"], models=[model], **{model: set_keys(t.get(model))})


def loglik_params(wildcards):
    t = cfg_of(wildcards)["train"]
    return section_params("train", device=t["device"], loglik_fit_steps=t["loglik_fit_steps"], models=[])


def trained_model(wildcards):
    """The model a job of this run uses: the run's own when its sweep row changes the model's
    training settings, else the main run's."""
    d = at(f"{MODEL_DIR}/{wildcards.model}", model_owner(wildcards.variant, wildcards.model))
    return {"model": f"{d}/model.safetensors", "meta": f"{d}/model.json"}


def training_resources():
    """train_model's resources; with train.device cuda[:N], one GPU (resources.train can set
    gres/slurm_extra/slurm_partition instead)."""
    res = rule_resources("train", 8000, 240)
    if config["train"]["device"].startswith("cuda") and not {"gpu", "gres", "slurm_extra"} & set(res):
        res["gpu"] = 1
    return res
