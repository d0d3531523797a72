"""The benchmark grid of launch/bench_sweep.py: 3 methods x 3 shot levels x 5 seeds on digits.

  python launch/bench_sweep.py    # times this grid as a bash loop and as one sweep
"""

import os

from lowres_jax.config import load_module
from lowres_jax.sweep import axis, product

_HERE = os.path.dirname(os.path.abspath(__file__))
# The same base run as the transfer_basics tables (200 steps, final evaluation only).
transfer_basics = load_module(os.path.join(_HERE, "transfer_basics.py"))

TITLE = "Benchmark grid (digits transfer, default learning rates)"
BASELINE = "scratch"
METHODS = [
    {"method": "scratch", "init.kind": "scratch", "freeze": ""},
    {"method": "linear_probe", "init.kind": "source", "freeze": "^(?!head/)", "optim.lr": 0.1},
    {"method": "finetune", "init.kind": "source", "freeze": ""},
]


get_config = transfer_basics.get_config


def get_sweep():
  return product(METHODS, axis("data.shots", (1, 5, 10)), axis("seed", range(5)))
