"""The adaptation methods the methods ablations compare, each as overrides of a run config.

Every method is an option of the one trainer (lowres_jax/train/methods.py): probes on frozen
features (fitted in closed form or by L-BFGS on embeddings computed once), full fine-tuning,
and fine-tuning with one method added. The ablations (configs/ablations/methods_*.py) give
each method the same tuning budget: two values of one hyperparameter, chosen on validation.

  python -m lowres_jax.main --config=configs/image_efficientnet.py \\
      --config.adapt.methods=l2sp --config.adapt.l2sp=0.1 --workdir=workdirs/l2sp
"""

from lowres_jax.train.methods import BITFIT_FREEZE

PROBES = ("linear_probe", "ridge_probe", "class_means")
TRAINED = ("finetune", "lpft", "l2sp", "delta", "bss", "sam", "ema", "wise_ft", "bitfit", "lora",
           "llrd")
METHODS = PROBES + TRAINED

# Each method's own hyperparameters at their published defaults (one value each, so that every
# method spends its tuning budget on the learning rate alike).
SETTINGS = {
    # L2-SP's alpha for the pretrained part and beta for the new head (Li et al. 2018).
    "l2sp": {"adapt.l2sp": 0.1, "adapt.l2sp_head": 0.01},
    "delta": {"adapt.delta": 0.01},          # TLlib's DELTA trade-off.
    "bss": {"adapt.bss": 0.001},             # TLlib's BSS trade-off, k = 1.
    "sam": {"adapt.sam_rho": 0.05},          # SAM's default radius.
    "ema": {"adapt.ema_decay": 0.95},        # ~20-step horizon: these runs are 50-100 steps.
    "lpft": {"adapt.lpft_probe": 0.5},       # Half the steps probing, half fine-tuning.
    "llrd": {"adapt.layer_decay": 0.75},
    "lora": {"adapt.lora_rank": 8, "adapt.lora_alpha": 16.0},
    "wise_ft": {"adapt.wise_ft": (0.25, 0.5, 0.75)},
}


def overrides(method: str) -> dict:
  """Config overrides that make a fine-tuning config run ``method``."""
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; known: {METHODS}")
  frozen = {"linear_probe": "logistic", "ridge_probe": "ridge", "class_means": "class_means"}
  result = {"method": method, "adapt.methods": (), "freeze": "", **SETTINGS.get(method, {})}
  if method in frozen:
    result.update({"train.duration": "0 steps", "head_init": frozen[method]})
  elif method == "bitfit":
    result["freeze"] = BITFIT_FREEZE
  elif method == "l2sp":  # L2-SP's penalty takes the place of weight decay.
    result.update({"adapt.methods": ("l2sp",), "optim.weight_decay": 0.0})
  elif method != "finetune":
    result["adapt.methods"] = (method,)
  return result


def tuning_grid(method: str, rates, probe_l2) -> list[dict]:
  """The method's two tuned values (one for nearest class mean, which has none)."""
  if method in ("linear_probe", "ridge_probe"):
    return [{"head_l2": value} for value in probe_l2]
  if method == "class_means":
    return [{}]
  return [{"optim.lr": value} for value in rates]


def sweep_runs(base, shots_levels, seeds, rates, probe_l2,
               specific: dict[str, dict] | None = None) -> list[dict]:
  """Every method x tuned value x k x seed, as override dicts of ``base`` (a fine-tuning
  config): the keys a method changes are reset to ``base``'s values for the others.
  ``specific``: more overrides per method (which layers LoRA adapts in this model)."""
  reset = {"optim.lr": base.optim.lr, "head_l2": base.head_l2,
           "train.duration": base.train.duration, "head_init": base.head_init,
           "optim.weight_decay": base.optim.weight_decay}
  specific = specific or {}
  return [{**reset, **overrides(method), **specific.get(method, {}), **tuned,
           "data.shots": shots, "seed": seed}
          for method in METHODS for tuned in tuning_grid(method, rates, probe_l2)
          for shots in shots_levels for seed in seeds]
