"""Choosing what to label: selection strategies at label budgets on Fashion-MNIST, ImageNet
EfficientNet-Lite0.

Each run labels ``budget`` examples in all (10, 20, 50 or 100 over the 10 classes) chosen from
2,000 unlabelled training images (drawn with the seed; lowres_jax/train/selection.py) by a
strategy reading the pretrained backbone's ``pre_logits`` of the candidates
(lowres_jax/data/select.py), then fine-tunes like configs/image_efficientnet.py (32x32 RGB
inside the step, 100 SGD steps of batch 32 at learning rate 0.01, crop and flip), 5 seeds, the
10,000-image test split. There is no validation split (one setting per cell, nothing to
choose), so the budget is every label a run sees.

- ``random``: uniform over the candidates;
- ``stratified``: the same count from every class (an oracle: it reads the labels);
- ``kcenter``: k-center greedy in feature space (the coreset of Sener & Savarese 2018);
- ``typiclust``: k-means into ``budget`` clusters, the most typical point of each (Hacohen et
  al. 2022);
- ``max_entropy``: 4 rounds of uncertainty sampling: a quarter of the budget at random, then
  each round a logistic probe on the labelled features and the candidates of highest
  predictive entropy (label, train, select again; the probe stands in for the fine-tuned model
  so a round costs seconds).

  python -m lowres_jax.sweep --config=configs/ablations/select_image.py \\
      --workdir=workdirs/select_image --results=results/select_image
"""

import os

from lowres_jax.config import load_module

_HERE = os.path.dirname(os.path.abspath(__file__))
image_config = load_module(os.path.join(_HERE, "..", "image_efficientnet.py"))

TITLE = ("Label-budget selection: ImageNet EfficientNet-Lite0 on Fashion-MNIST "
         "(test accuracy, 10 classes)")
NOTES = """
- **TypiClust is ahead of random at 10 and 20 labels, not at 50 or 100**:
  - Against random: +10.5 ± 7.1* at 10, +8.8 ± 6.9* at 20, +1.8 ± 6.5 (n.s.) at 50,
    -3.7 ± 6.9 (n.s.) at 100.
  - It has the best mean at 10, 20 and 50 labels (44.8, 53.9, 60.3); the class-stratified
    oracle at 100 (67.1). No leader is significantly ahead of its runner-up, so no strategy
    beats the oracle significantly in any column.
  - The oracle itself beats random at 10 and 20 labels (+7.7 ± 6.7*, +8.7 ± 7.2*), not at
    50 or 100.
- **k-center greedy has the worst mean at every budget**: -11.8 ± 13.0 (n.s.) at 10 labels,
  then -15.8*, -17.3* and -20.5* points vs random at 20, 50 and 100.
- **Max-entropy (4 rounds, logistic probe) hurts at 20 labels** (-12.4 ± 4.3*); at 10, 50
  and 100 it is not significantly different from random (-2.8, -6.9, -3.3).
- Caveats:
  - 2,000 candidates per seed, not the 60,000-image training split.
  - The features are the ImageNet backbone's on 32x32 upsampled grey images.
  - Max-entropy's rounds read a probe, not the fine-tuned network.
  - One setting per cell; 20 paired tests, none corrected for multiple comparisons.
- **Time**: 100 runs in 2,776 s of wall time (sweep.json), on 2 cores shared with other work
  for part of it. Embedding the 2,000 candidates takes seconds per seed, and they are
  cached across strategies and budgets.
"""
BASELINE = "random"
TUNED = ("optim.lr",)
COLUMN = "budget"
NAME_KEYS = ("method", "data.selection.budget", "seed")
BUDGETS = (10, 20, 50, 100)
STRATEGIES = ("random", "stratified", "kcenter", "typiclust", "max_entropy")
SEEDS = range(5)
ROUNDS = 4


def get_config():
  config = image_config.get_config("shots=10")
  config.data.shots, config.data.val_per_class = 0, 0
  config.data.selection.pool_size = 2000
  config.keep_checkpoints = 0  # The table is what is kept.
  return config


def get_sweep():
  return [{"method": strategy, "data.selection.strategy": strategy,
           "data.selection.rounds": ROUNDS if strategy == "max_entropy" else 1,
           "data.selection.budget": budget, "seed": seed}
          for strategy in STRATEGIES for budget in BUDGETS for seed in SEEDS]
