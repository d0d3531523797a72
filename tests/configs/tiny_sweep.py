"""A seconds-long sweep for tests: 2 methods x 2 shots x 2 learning rates x 3 seeds on digits.

The data dir and cache dir come from the environment so tests can point them at tmp paths.
"""

import importlib.util
import os

from lowres_jax.sweep import axis, product

_DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "default.py")
_spec = importlib.util.spec_from_file_location("default_config", _DEFAULT)
default_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(default_config)

TITLE = "tiny sweep"
BASELINE = "scratch"
TUNED = ("optim.lr",)


def get_config():
  config = default_config.get_config("tiny=1,init=source")
  for c in (config, config.source):
    c.data.data_dir = os.environ["LOWRES_TEST_DATA_DIR"]
    c.cache_dir = os.environ["LOWRES_TEST_CACHE_DIR"]
  config.train.duration = "20 steps"
  config.eval.every = 0
  return config


def get_sweep():
  methods = [{"method": "scratch", "init": ""}, {"method": "finetune", "init": "source"}]
  return product(methods, axis("optim.lr", (0.02, 0.05)), axis("data.shots", (2, 5)),
                 axis("seed", range(3)))
