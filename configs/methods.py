"""The adaptation methods the methods ablations compare, each as overrides of a run config.

Every method is an option of the one trainer (lowres_jax/train/adapt/): probes on frozen
features (fitted in closed form or by L-BFGS on embeddings computed once), full fine-tuning,
and fine-tuning with one method added. The ablations (configs/ablations/methods_*.py) tune
each method once (lowres_jax/tune_once.py) with the same number of trials: four learning
rates, or two rates times two values of the method's own strength (``search_spaces``).

  python -m lowres_jax.main --config=configs/image_efficientnet.py \\
      --config.adapt.methods=l2sp --config.adapt.l2sp=0.1 --workdir=workdirs/l2sp
"""

from lowres_jax.search import choices
from lowres_jax.train.adapt import BITFIT_FREEZE

PROBES = ("linear_probe", "ridge_probe", "class_means")
TRAINED = ("finetune", "lpft", "l2sp", "delta", "bss", "sam", "ema", "wise_ft", "bitfit", "lora",
           "llrd")
METHODS = PROBES + TRAINED

# Each method's own hyperparameters at their published defaults: what a run of the method
# gets unless an ablation's search overrides them.
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


# Each method's own strength: its published default and one neighbour, searched jointly with
# two learning rates (2 x 2 = four trials, the count every other method gets). Bounded where
# the key stops meaning anything, so an edge pick never grows into a decay of 1.
STRENGTHS = {
    "l2sp": {"adapt.l2sp": choices(0.01, 0.1)},
    "delta": {"adapt.delta": choices(0.001, 0.01)},
    "bss": {"adapt.bss": choices(1e-4, 1e-3)},
    "sam": {"adapt.sam_rho": choices(0.02, 0.05)},
    "ema": {"adapt.ema_decay": choices(0.9, 0.95, within=(0.0, 0.999))},
    "lpft": {"adapt.lpft_probe": choices(0.25, 0.5, within=(0.05, 0.95))},
    "llrd": {"adapt.layer_decay": choices(0.75, 0.9, within=(0.05, 1.0))},
}
# Methods that train a small part of the network (biases, low-rank adapters) take larger
# steps: their four rates start where fine-tuning's end in the middle.
SMALL_PART = ("bitfit", "lora")


def search_spaces(rates: tuple, probe_l2: tuple, ridge_l2: tuple) -> dict[str, dict]:
  """Every method's search space, four trials each (nearest class mean has nothing to tune).

  ``rates``: fine-tuning's four learning rates, ascending; methods with a strength search
  the middle two of them, methods in SMALL_PART the four from the second one up, a step
  beyond the top one (the grid's own ratio)."""
  if len(rates) != 4 or list(rates) != sorted(rates):
    raise ValueError(f"search_spaces needs four ascending learning rates, got {rates}")
  higher = (*rates[1:], float(f"{rates[3] * rates[3] / rates[2]:.3g}"))
  spaces: dict[str, dict] = {"linear_probe": {"head_l2": choices(*probe_l2)},
                             "ridge_probe": {"head_l2": choices(*ridge_l2)}}
  for method in TRAINED:
    if method in STRENGTHS:
      spaces[method] = {"optim.lr": choices(*rates[1:3]), **STRENGTHS[method]}
    else:
      spaces[method] = {"optim.lr": choices(*(higher if method in SMALL_PART else rates))}
  return spaces


def sweep_runs(base, shots_levels, seeds, specific: dict[str, dict] | None = None) -> list[dict]:
  """Every method x k x seed, as override dicts of ``base`` (a fine-tuning config): the keys
  a method changes are reset to ``base``'s values for the others, and the tuned keys come
  from the method's pick. ``specific``: more overrides per method (which layers LoRA adapts
  in this model)."""
  reset = {"optim.lr": base.optim.lr, "head_l2": base.head_l2,
           "train.duration": base.train.duration, "head_init": base.head_init,
           "optim.weight_decay": base.optim.weight_decay}
  specific = specific or {}
  return [{**reset, **overrides(method), **specific.get(method, {}),
           "data.shots": shots, "seed": seed}
          for method in METHODS for shots in shots_levels for seed in seeds]
