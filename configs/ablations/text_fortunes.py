"""k-shot fortunes with all-MiniLM-L6-v2: zero-shot, nearest class mean, a logistic probe,
full fine-tuning, SetFit, and the same encoder from scratch.

Eight Debian fortune categories with 200+ entries each (configs/text_fortunes.py), k in
{4, 8, 16, 32} examples per category, 5 seeds, 16 validation examples per category, the
1,480-text test split of those categories. Each method picks its tuned value on validation
accuracy (the learning rate; the probe's L2 penalty) and the table reports test accuracy there:

- ``zero_shot``: cosine similarity to "A quote about {category}." (no labelled example; the
  same number at every k and seed);
- ``class_means``: nearest class mean of the k-shot embeddings;
- ``linear_probe``: logistic regression on the frozen embeddings, L2 in {1e-4, 1e-3, 1e-2};
- ``finetune``: 50 AdamW steps of batch 16, all weights, from the class-mean head;
- ``setfit``: 50 steps of SetFit's pair loss on the encoder, then the logistic head (L2 1e-3)
  fitted on the tuned embeddings;
- ``scratch``: the MiniLM architecture randomly initialised, trained like ``finetune``.

Protocol fitted to the 90-minute budget on the 2-core CPU: 32 tokens, 50 steps of batch 16
(3 epochs at k = 32, 25 at k = 4). Frozen methods share one embedding of each text
(lowres_jax/train/features.py), so they cost seconds; the trained ones are vmapped 10 runs
(2 rates x 5 seeds) to a group.

  python -m lowres_jax.sweep --config=configs/ablations/text_fortunes.py \\
      --workdir=workdirs/text_fortunes --results=results/text_fortunes
"""

import os

from lowres_jax.config import load_module

_HERE = os.path.dirname(os.path.abspath(__file__))
text_config = load_module(os.path.join(_HERE, "..", "text_fortunes.py"))

TITLE = "Few-shot fortunes with all-MiniLM-L6-v2 (test accuracy, 8 categories)"
NOTES = ""
BASELINE = "scratch"
TUNED = ("optim.lr", "head_l2")
NAME_KEYS = ("method", "data.shots", "optim.lr", "head_l2", "seed")
SHOTS = (4, 8, 16, 32)
SEEDS = range(5)

TUNING = {  # method: (override key, values) chosen on validation accuracy.
    "zero_shot": ("optim.lr", (3e-5,)),  # Nothing trains: a one-value grid.
    "class_means": ("optim.lr", (3e-5,)),
    "linear_probe": ("head_l2", (1e-4, 1e-3, 1e-2)),
    "finetune": ("optim.lr", (3e-5, 1e-4)),
    "setfit": ("optim.lr", (3e-5, 1e-4)),
    "scratch": ("optim.lr", (3e-4, 1e-3)),
}


def get_config():
  config = text_config.get_config("method=finetune")
  config.keep_checkpoints = 0  # 120 trained MiniLM states would fill ~30 GB; the table is kept.
  return config


def get_sweep():
  runs = []
  for method, (key, values) in TUNING.items():
    base = text_config.get_config(f"method={method}")
    for value in values:
      for shots in SHOTS:
        for seed in SEEDS:
          runs.append({
              "method": method, "data.shots": shots, "seed": seed,
              "optim.lr": base.optim.lr, "head_l2": base.head_l2, key: value,
              "train.duration": base.train.duration, "train.loss": base.train.loss,
              "head_init": base.head_init, "head_refit": base.head_refit,
              "init.kind": base.init.kind, "init.path": base.init.path})
  return runs
