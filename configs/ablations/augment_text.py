"""EDA-style augmentation on k-shot fortunes with all-MiniLM-L6-v2.

The text task of configs/text_fortunes.py (8 categories, 32 tokens, 50 AdamW steps of batch 16
from the class-mean head, learning rate 1e-4, the rate results/methods_text.md ran every
method at), k in {1, 5, 10} examples per category, 5 seeds, 16 validation texts per category,
the 1,480-text test split. The ops run inside the jitted step on the token ids
(lowres_jax/data/text_augment.py), each content token at rate 0.1 (EDA's alpha):

- ``none``;
- ``eda``: random deletion, swap and insertion (a copy of a token of the same text) together,
  EDA's three operations that need no synonym dictionary;
- ``mask``: tokens replaced by the tokenizer's [MASK];
- ``eda_mask``: all four.

One setting per set (no tuning); four sets to fit the 90-minute budget beside the others.

  python -m lowres_jax.sweep --config=configs/ablations/augment_text.py \\
      --workdir=workdirs/augment_text --results=results/augment_text
"""

import os

from lowres_jax.config import load_module

_HERE = os.path.dirname(os.path.abspath(__file__))
text_config = load_module(os.path.join(_HERE, "..", "text_fortunes.py"))

TITLE = "EDA-style augmentation: all-MiniLM-L6-v2 on k-shot fortunes (test accuracy, 8 categories)"
NOTES = """
(to be written from the table)
"""
BASELINE = "none"
TUNED = ("optim.lr",)
NAME_KEYS = ("method", "data.shots", "seed")
SHOTS = (1, 5, 10)
SEEDS = range(5)

SETS = {
    "none": (),
    "eda": ("token_delete", "token_swap", "token_insert"),
    "mask": ("token_mask",),
    "eda_mask": ("token_delete", "token_swap", "token_insert", "token_mask"),
}


def get_config():
  config = text_config.get_config("method=finetune")
  config.optim.lr = 1e-4
  config.keep_checkpoints = 0  # The table is what is kept.
  return config


def get_sweep():
  return [{"method": name, "train.augment": ops, "data.shots": shots, "seed": seed}
          for name, ops in SETS.items() for shots in SHOTS for seed in SEEDS]
