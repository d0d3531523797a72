"""The benchmark grid of launch/bench_sweep.py: 3 methods x 3 shot levels x 5 seeds on digits.

  python launch/bench_sweep.py    # times this grid as a bash loop and as one sweep
"""

import importlib.util
import os

from lowres_jax.sweep import axis, product

_DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "default.py")
_spec = importlib.util.spec_from_file_location("default_config", _DEFAULT)
default_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(default_config)

TITLE = "Benchmark grid (digits transfer, default learning rates)"
BASELINE = "scratch"
METHODS = [
    {"method": "scratch", "init": "", "freeze": ""},
    {"method": "linear_probe", "init": "source", "freeze": "^(?!head/)", "optim.lr": 0.1},
    {"method": "finetune", "init": "source", "freeze": ""},
]


def get_config():
  config = default_config.get_config()
  config.train.duration = "200 steps"
  config.eval.every = 0
  config.checkpoint_every = 100
  return config


def get_sweep():
  return product(METHODS, axis("data.shots", (1, 5, 10)), axis("seed", range(5)))
