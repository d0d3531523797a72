"""From scratch vs linear probe vs full fine-tuning, k in {1, 5, 10, 25}, 5 seeds, 2 datasets.

Transfer task on each dataset: pretrain a CNN on classes 0-4 (cached), then train on k shots of
classes 5-9. Each method tunes its learning rate over the same 3-value grid on the validation
split (10 examples per class); the table reports test accuracy at the selected rate.

  python -m lowres_jax.sweep --config=configs/ablations/transfer_basics.py \
      --workdir=workdirs/transfer_basics --results=results/transfer_basics

The committed results/transfer_basics.md is the output of exactly that command.
"""

import os

from lowres_jax.config import load_module
from lowres_jax.sweep import axis, product

_HERE = os.path.dirname(os.path.abspath(__file__))
default_config = load_module(os.path.join(_HERE, "..", "default.py"))

TITLE = "Transfer basics: from scratch vs linear probe vs fine-tuning (test accuracy)"
BASELINE = "scratch"
TUNED = ("optim.lr",)
NAME_KEYS = ("data.name", "method", "data.shots", "optim.lr", "seed")
SHOTS = (1, 5, 10, 25)
SEEDS = range(5)

METHODS = {
    "scratch": {"method": "scratch", "init.kind": "scratch", "freeze": ""},
    "linear_probe": {"method": "linear_probe", "init.kind": "source", "freeze": "^(?!head/)"},
    "finetune": {"method": "finetune", "init.kind": "source", "freeze": ""},
}
# The same budget for every method: three learning rates, chosen on validation accuracy.
LEARNING_RATES = {
    "scratch": (0.01, 0.03, 0.1),
    "linear_probe": (0.03, 0.1, 0.3),
    "finetune": (0.003, 0.01, 0.03),
}
DATASETS = {
    "digits": {"data.name": "digits", "source.data.name": "digits"},
    # Half-width CNN on the 28x28 images: a quarter of the convolution FLOPs, so the whole grid
    # (360 runs) fits in 17 minutes on 2 CPU cores (986 s measured, JAX 0.10.2).
    "fashion_mnist": {"data.name": "fashion_mnist", "source.data.name": "fashion_mnist",
                      "model.width": 16, "source.model.width": 16,
                      "source.train.duration": "1500 steps", "train.augment": ("crop", "flip"),
                      "source.train.augment": ("crop", "flip")},
}


def get_config():
  config = default_config.get_config("stages=finetune")
  config.train.duration = "200 steps"
  config.eval.every = 0
  config.checkpoint_every = 100
  return config


def get_sweep():
  runs = []
  for name, method in METHODS.items():
    runs += product(list(DATASETS.values()), [method], axis("optim.lr", LEARNING_RATES[name]),
                    axis("data.shots", SHOTS), axis("seed", SEEDS))
  return runs
