"""LP-FT (Kumar et al. 2022): a linear-probe phase, then full fine-tuning from the probed head.

The phase is traced (a fraction of the steps), so the optimizer state keeps its shape and a
grid over the fraction compiles once.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp

from lowres_jax.train.adapt.base import AdaptSpec, Method, map_paths

HEAD = re.compile(r"^head/")


def probe_gates(params: Any, probe_fraction: jax.Array, step: jax.Array,
                total_steps: int) -> Any:
  """0 for every non-head parameter during the first ``probe_fraction`` of the steps (the
  linear probe), 1 after; the head always 1."""
  tuning = (step >= jnp.round(probe_fraction * total_steps)).astype(jnp.float32)
  return map_paths(params, lambda path: jnp.float32(1.0) if HEAD.search(path) else tuning)


def _multipliers(spec: AdaptSpec, hparams, params: Any, step, total_steps: int) -> Any:
  return probe_gates(params, hparams["lpft_probe"], step, total_steps)


def _gate_gradients(spec: AdaptSpec, grads: Any, hparams, step, total_steps: int) -> Any:
  """The probe phase also zeroes the backbone's gradients before the optimizer, so its
  momentum / Adam moments start from zero when fine-tuning begins."""
  return jax.tree.map(lambda g, gate: g * gate.astype(g.dtype), grads,
                      probe_gates(grads, hparams["lpft_probe"], step, total_steps))


METHOD = Method("lpft", traced={"lpft_probe": 0.5}, multipliers=_multipliers,
                gate_gradients=_gate_gradients)
