"""Adaptation methods compared on k-shot fortunes from all-MiniLM-L6-v2.

The text task of configs/text_fortunes.py (8 categories, 32 tokens, 50 AdamW steps of batch
16, class-mean head), k in {4, 8, 16} texts per category, 5 seeds, 16 validation texts per
category, the 1,480-text test split. Fourteen methods (configs/methods.py), each with the same
tuning budget: none. Every trained method runs at learning rate 1e-4, its own strength at the
published default; the fitted probes at L2 1e-3.

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
NOTES = ""
BASELINE = "finetune"
TUNED = ("optim.lr", "head_l2")
NAME_KEYS = ("method", "data.shots", "optim.lr", "head_l2", "seed")
SHOTS = (4, 8, 16)
SEEDS = range(5)
# One setting per method, the same for all (the 90-minute budget holds one run per method, k
# and seed): the larger rate of text_fortunes' fine-tuning grid, and the probes' L2.
RATES = (1e-4,)
PROBE_L2 = (1e-3,)


def get_config():
  config = text_config.get_config("method=finetune")
  config.keep_checkpoints = 0  # MiniLM states are 270 MB each; the table is what is kept.
  return config


def get_sweep():
  return methods.sweep_runs(get_config(), SHOTS, SEEDS, RATES, PROBE_L2, {"lora": {
      "adapt.lora_targets": r"attention/(query|key|value|out)$"}})
