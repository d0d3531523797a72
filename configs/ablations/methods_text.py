"""Adaptation methods compared on k-shot fortunes from all-MiniLM-L6-v2.

The text task of configs/text_fortunes.py (8 categories, 32 tokens, 50 AdamW steps of batch
16, class-mean head), k in {4, 8, 16} texts per category, 5 seeds, 16 validation texts per
category, the 1,480-text test split. Fourteen methods (configs/methods.py), tuned once
with the same budget: each searches four settings (``methods.search_spaces``: four learning
rates; two rates times two values of its own strength; four L2 penalties for the fitted
probes) at 8 shots on seeds 100-101 by validation accuracy, a pick at an edge growing its
space outward up to twice; every k then runs on seeds 0-4 at the pick.

- probes on the frozen sentence embeddings, embedded once per text: ``linear_probe``
  (logistic regression by L-BFGS), ``ridge_probe`` (closed form), ``class_means``;
- ``finetune``: every weight, from the class-mean head;
- fine-tuning plus one method: ``lpft``, ``l2sp``, ``delta`` (on the pooled embedding),
  ``bss``, ``sam``, ``ema``, ``wise_ft`` (EMA and WiSE-FT report the variant chosen on
  validation, the final weights among them), ``bitfit``, ``lora`` (rank 8 on the query, key,
  value and output projections), ``llrd`` (layer decay 0.75 over the embeddings and 6 layers).

  python -m lowres_jax.sweep --config=configs/ablations/methods_text.py \\
      --workdir=workdirs/methods_text --results=results/methods_text
"""

import os

from lowres_jax.config import load_module

_HERE = os.path.dirname(os.path.abspath(__file__))
text_config = load_module(os.path.join(_HERE, "..", "text_fortunes.py"))
methods = load_module(os.path.join(_HERE, "..", "methods.py"))

TITLE = "Adaptation methods: all-MiniLM-L6-v2 on k-shot fortunes (test accuracy, 8 categories)"
NOTES = """
- Rerun under the tune-once protocol; notes follow from its rows.
"""
BASELINE = "finetune"
NAME_KEYS = ("method", "data.shots", "seed")
SHOTS = (4, 8, 16)
SEEDS = range(5)
SEARCH = methods.search_spaces(rates=(1e-5, 3e-5, 1e-4, 3e-4), probe_l2=(1e-4, 1e-3, 1e-2, 1e-1),
                               ridge_l2=(1e-3, 1e-2, 1e-1, 1.0))
TUNE = {"cell": {"data.shots": 8}, "seeds": (100, 101), "trials": 4, "extensions": 2}


def get_config():
  config = text_config.get_config("method=finetune")
  config.keep_checkpoints = 0  # MiniLM states are 270 MB each; the table is what is kept.
  return config


def get_sweep():
  return methods.sweep_runs(get_config(), SHOTS, SEEDS, {"lora": {
      "adapt.lora_targets": r"attention/(query|key|value|out)$"}})
