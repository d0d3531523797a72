"""A seconds-long sweep for tests: 2 methods x 2 shots x 2 learning rates x 3 seeds on digits.

The data dir and cache dir come from the environment so tests can point them at tmp paths.
"""

import os

from lowres_jax.config import load_module
from lowres_jax.sweep import axis, product

_HERE = os.path.dirname(os.path.abspath(__file__))
default_config = load_module(os.path.join(_HERE, "..", "..", "configs", "default.py"))

TITLE = "tiny sweep"
BASELINE = "scratch"
TUNED = ("optim.lr",)


def get_config():
  config = default_config.get_config("tiny=1,init=source,stages=finetune")
  for c in (config, config.source):
    c.data.data_dir = os.environ["LOWRES_TEST_DATA_DIR"]
    c.cache_dir = os.environ["LOWRES_TEST_CACHE_DIR"]
  config.train.duration = "20 steps"
  config.eval.every = 0
  return config


def get_sweep():
  methods = [{"method": "scratch", "init.kind": "scratch"}, {"method": "finetune", "init.kind": "source"}]
  return product(methods, axis("optim.lr", (0.02, 0.05)), axis("data.shots", (2, 5)),
                 axis("seed", range(3)))
