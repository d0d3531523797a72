"""Optimizers built from traced hyperparameters, with regex freezing.

The optimizer is rebuilt inside the jitted step from the ``hparams`` pytree, so the learning
rate and weight decay are traced values: runs that differ only in them share one compiled step
and can be vmapped together. The state's structure does not depend on those values, so it is
initialised once outside the step with any of them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import optax
from flax import traverse_util

OPTIMIZERS = ("sgd", "adamw")


@dataclasses.dataclass(frozen=True)
class OptimSpec:
  """The static (shape- or structure-changing) part of the optimizer config."""
  name: str
  momentum: float
  warmup_steps: int
  total_steps: int
  grad_clip: float
  freeze: str  # Regex on '/'-joined param paths; matching params are not updated.

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.name!r}; known: {list(OPTIMIZERS)}")
    re.compile(self.freeze)

  @classmethod
  def of_plan(cls, plan, total_steps: int) -> "OptimSpec":
    """A run plan's (train/plan.py) optimizer over ``total_steps``: warm-up a fraction of it."""
    return cls(name=plan.optimizer, momentum=plan.momentum,
               warmup_steps=int(plan.warmup * total_steps), total_steps=total_steps,
               grad_clip=plan.grad_clip, freeze=plan.freeze)


def param_paths(params: Any) -> dict[tuple[str, ...], Any]:
  return traverse_util.flatten_dict(params)


def path_labels(params: Any, pattern: str, if_match: Any, otherwise: Any) -> Any:
  """Pytree like ``params`` holding ``if_match`` where the '/'-joined path matches ``pattern``."""
  regex = re.compile(pattern) if pattern else None
  flat = {path: (if_match if regex and regex.search("/".join(path)) else otherwise)
          for path in param_paths(params)}
  return traverse_util.unflatten_dict(flat)


def decay_mask(params: Any) -> Any:
  """Weight decay on matrices and kernels only, never on biases or norm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def learning_rate_fn(spec: OptimSpec, peak_lr: jax.Array):
  """Linear warm-up to ``peak_lr`` then cosine decay to zero at ``total_steps``."""
  shape = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=1.0, warmup_steps=spec.warmup_steps,
      decay_steps=max(spec.total_steps, spec.warmup_steps + 1), end_value=0.0)
  return lambda count: peak_lr * shape(count)


def build_optimizer(spec: OptimSpec, hparams: dict[str, jax.Array],
                    params: Any) -> optax.GradientTransformation:
  """The optimizer for one run; ``hparams`` holds traced 'lr' and 'weight_decay'."""
  lr = learning_rate_fn(spec, hparams["lr"])
  if spec.name == "sgd":
    inner = optax.chain(
        optax.add_decayed_weights(hparams["weight_decay"], mask=decay_mask),
        optax.sgd(lr, momentum=spec.momentum or None))
  else:
    inner = optax.adamw(lr, weight_decay=hparams["weight_decay"], mask=decay_mask)
  if spec.grad_clip > 0:
    inner = optax.chain(optax.clip_by_global_norm(spec.grad_clip), inner)
  if not spec.freeze:
    return inner
  labels = path_labels(params, spec.freeze, "frozen", "trained")
  return optax.multi_transform({"trained": inner, "frozen": optax.set_to_zero()}, labels)


def count_trainable(params: Any, freeze: str) -> int:
  labels = path_labels(params, freeze, False, True)
  return int(sum(p.size for p, train in zip(jax.tree.leaves(params), jax.tree.leaves(labels))
                 if train))
