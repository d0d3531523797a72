"""A seconds-long tune-once sweep for tests: two methods tuned at 2 shots on seeds 10-11, then
2 and 5 shots on seeds 0-1 at the picks; the rate grid is narrow so a pick at its edge grows.

The data dir and cache dir come from the environment so tests can point them at tmp paths.
"""

import os

from lowres_jax.config import load_module
from lowres_jax.search import choices, log_grid
from lowres_jax.sweep import axis, product

_HERE = os.path.dirname(os.path.abspath(__file__))
tiny_sweep = load_module(os.path.join(_HERE, "tiny_sweep.py"))

TITLE = "tiny tuned sweep"
BASELINE = "scratch"
SEARCH = {
    "scratch": {"optim.lr": log_grid(0.01, 0.02, 2)},
    "finetune": {"optim.lr": choices(0.02, 0.04)},
}
TUNE = {"cell": {"data.shots": 2}, "seeds": (10, 11), "trials": 2, "extensions": 1}


def get_config():
  return tiny_sweep.get_config()


def get_sweep():
  methods = [{"method": "scratch", "init.kind": "scratch"},
             {"method": "finetune", "init.kind": "source"}]
  return product(methods, axis("data.shots", (2, 5)), axis("seed", range(2)))
