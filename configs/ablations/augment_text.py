"""EDA-style augmentation on k-shot fortunes with all-MiniLM-L6-v2.

The text task of configs/text_fortunes.py (8 categories, 32 tokens, 50 AdamW steps of batch 16
from the class-mean head), k in {1, 5, 10} examples per category, 5 seeds, 16 validation texts
per category, the 1,480-text test split. The ops run inside the jitted step on the token ids
(lowres_jax/data/text_augment.py), each content token at rate 0.1 (EDA's alpha):

- ``none``;
- ``eda``: random deletion, swap and insertion (a copy of a token of the same text) together,
  EDA's three operations that need no synonym dictionary;
- ``mask``: tokens replaced by the tokenizer's [MASK];
- ``eda_mask``: all four.

Tune once, then test on fresh seeds: every set searches its learning rate (``SEARCH``: the
four half-decade rates text_fortunes searches for fine-tuning, grown past an edge pick) at 5
shots on seeds 100-101 by validation accuracy; every k then runs on seeds 0-4 at that pick.
The augmentation rate stays at 0.1 (EDA's alpha) for every set.

  python -m lowres_jax.sweep --config=configs/ablations/augment_text.py \\
      --workdir=workdirs/augment_text --results=results/augment_text
"""

import os

from lowres_jax.config import load_module
from lowres_jax.search import choices

_HERE = os.path.dirname(os.path.abspath(__file__))
text_config = load_module(os.path.join(_HERE, "..", "text_fortunes.py"))

TITLE = "EDA-style augmentation: all-MiniLM-L6-v2 on k-shot fortunes (test accuracy, 8 categories)"
NOTES = """
- **No token-level augmentation helps fine-tuning MiniLM on fortunes, and most hurt with few
  labels**:
  - At 5 shots every set is significantly below none: EDA -4.0 ± 1.1*, mask -2.9 ± 2.4*, all
    four -3.0 ± 2.0*.
  - At 1 shot all four ops cost -5.6 ± 4.7*.
  - At 10 shots every set is within 1.3 points of none (n.s.).
- WordPiece-level deletion, swap and insertion break words into fragments, which EDA's
  word-level ops do not. The mean-pooled sentence encoder already maps paraphrases close
  together, so the noise adds little a pretrained encoder does not know.
- These are the ops that need no synonym dictionary (none offline here). Synonym replacement,
  EDA's fourth op, is not measured.
- Caveats: rate 0.1 per token only (EDA's default alpha), 50 steps, one setting per set.
- **Time**: 39 minutes of wall time (sweep.json), half of it beside the test suite on the
  same 2 cores.
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
# The same budget for every set: four learning rates, chosen at 5 shots on seeds 100-101; an
# edge pick grows the space by the same ratio (lowres_jax/tune_once.py).
SEARCH = {name: {"optim.lr": choices(1e-5, 3e-5, 1e-4, 3e-4)} for name in SETS}
TUNE = {"cell": {"data.shots": 5}, "seeds": (100, 101), "trials": 4, "extensions": 2}


def get_config():
  config = text_config.get_config("method=finetune")
  config.keep_checkpoints = 0  # The table is what is kept.
  return config


def get_sweep():
  return [{"method": name, "train.augment": ops, "data.shots": shots, "seed": seed}
          for name, ops in SETS.items() for shots in SHOTS for seed in SEEDS]
