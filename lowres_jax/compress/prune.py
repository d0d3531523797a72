"""Magnitude pruning: masks carried in the training state, so pruned weights stay exactly zero.

``config.prune`` selects it:

- ``method``: '' (off) or 'magnitude' (keep the largest |w|);
- ``scope``: 'global' (one threshold over every targeted weight) or 'layer' (the same sparsity
  in each targeted array);
- ``pattern``: 'unstructured', or 'N:M' (e.g. '2:4': in every group of M consecutive weights
  along a kernel's input axis, the N largest are kept; the sparsity is then 1 - N/M);
- ``sparsity``: the final fraction of targeted weights set to zero (unstructured);
- ``schedule``: 'one_shot' (pruned to the final sparsity before the first step, then trained
  with the mask fixed) or 'gradual' (Zhu & Gupta 2017: the sparsity rises as
  ``s (1 - (1 - progress)^3)`` from ``begin`` to ``end``, fractions of the steps, the mask
  recomputed every ``every`` steps);
- ``targets``: regex of the parameters pruned (default: every kernel but the head's).

The masks live in ``TrainState.extra['masks']`` (one boolean per parameter, True = kept), are
checkpointed with it and multiply the parameters after every update, so a resumed run prunes
exactly as an uninterrupted one. Mask updates run between steps (the loop calls
``update_masks`` at the steps ``mask_update_steps`` names), so the step itself only multiplies.

Written on optax and flax rather than taken from jaxpruner, the reference design (masks
wrapped around an optax transform): jaxpruner is unmaintained and calls APIs removed from
current JAX (``jax.tree_map``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

SCOPES = ("global", "layer")
SCHEDULES = ("one_shot", "gradual")
DEFAULT_TARGETS = r"^(?!head/).*kernel$"
CONFIG_DEFAULTS = {"method": "", "scope": "global", "pattern": "unstructured", "sparsity": 0.5,
                   "schedule": "one_shot", "begin": 0.0, "end": 0.75, "every": 10,
                   "targets": DEFAULT_TARGETS}


@dataclasses.dataclass(frozen=True)
class PruneSpec:
  """The static pruning settings (``config.prune``); ``method`` '' is off."""
  method: str = ""
  scope: str = "global"
  pattern: str = "unstructured"
  sparsity: float = 0.5
  schedule: str = "one_shot"
  begin: float = 0.0
  end: float = 0.75
  every: int = 10
  targets: str = DEFAULT_TARGETS

  def __post_init__(self):
    if self.method not in ("", "magnitude"):
      raise ValueError(f"prune.method = {self.method!r}: use '' (off) or 'magnitude'")
    if self.scope not in SCOPES:
      raise ValueError(f"prune.scope = {self.scope!r}; known: {SCOPES}")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"prune.schedule = {self.schedule!r}; known: {SCHEDULES}")
    if self.pattern != "unstructured":
      self.n_of_m()  # Raises for a malformed pattern.
    if not 0.0 <= self.sparsity < 1.0:
      raise ValueError(f"prune.sparsity = {self.sparsity} must be in [0, 1)")
    if not 0.0 <= self.begin <= self.end <= 1.0:
      raise ValueError(f"prune.begin = {self.begin} and end = {self.end} must satisfy "
                       "0 <= begin <= end <= 1 (fractions of the training steps)")
    if self.every < 1:
      raise ValueError(f"prune.every = {self.every} must be >= 1 (steps between mask updates)")
    re.compile(self.targets)

  @property
  def active(self) -> bool:
    return bool(self.method)

  def n_of_m(self) -> tuple[int, int] | None:
    """(N, M) of an 'N:M' pattern; None for unstructured."""
    if self.pattern == "unstructured":
      return None
    match = re.fullmatch(r"(\d+):(\d+)", self.pattern)
    if not match or not 0 < int(match.group(1)) < int(match.group(2)):
      raise ValueError(f"prune.pattern = {self.pattern!r}: use 'unstructured' or 'N:M' with "
                       "0 < N < M, e.g. '2:4'")
    return int(match.group(1)), int(match.group(2))


def _paths(tree: Any) -> dict[str, Any]:
  return traverse_util.flatten_dict(tree, sep="/")


def targeted(spec: PruneSpec, params: Any) -> list[str]:
  """The '/'-joined paths of the parameters pruned."""
  regex = re.compile(spec.targets)
  return [path for path in _paths(params) if regex.search(path)]


def check_targets(spec: PruneSpec, params: Any) -> None:
  """Raises ValueError when the targets match nothing, or an N:M pattern cannot group one."""
  paths = targeted(spec, params)
  if not paths:
    raise ValueError(f"prune.targets = {spec.targets!r} matches no parameter")
  n_of_m = spec.n_of_m()
  if n_of_m:
    flat = _paths(params)
    bad = [f"{p} {tuple(np.shape(flat[p]))}" for p in paths
           if np.ndim(flat[p]) < 2 or np.shape(flat[p])[-2] % n_of_m[1]]
    if bad:
      raise ValueError(f"prune.pattern = {spec.pattern!r} groups {n_of_m[1]} weights along a "
                       f"kernel's input axis (its second-last), which these targets cannot: "
                       f"{bad}; exclude them with prune.targets")


def initial_masks(params: Any) -> Any:
  """All weights kept."""
  return jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params)


def target_sparsity(spec: PruneSpec, step: int, total_steps: int) -> float:
  """The schedule's sparsity at ``step``."""
  if spec.schedule == "one_shot":
    return spec.sparsity
  begin, end = round(spec.begin * total_steps), round(spec.end * total_steps)
  if step >= end:
    return spec.sparsity
  progress = max(step - begin, 0) / max(end - begin, 1)
  return spec.sparsity * (1.0 - (1.0 - progress) ** 3)


def mask_update_steps(spec: PruneSpec, total_steps: int) -> list[int]:
  """The steps before which the masks are recomputed."""
  if spec.schedule == "one_shot":
    return [0]
  begin, end = round(spec.begin * total_steps), round(spec.end * total_steps)
  return sorted(set(range(begin, end, spec.every)) | {min(end, max(total_steps - 1, 0))})


def _keep_largest(magnitudes: jax.Array, num_pruned: jax.Array) -> jax.Array:
  """True for all but the ``num_pruned`` smallest entries of a 1-D array (exactly that many,
  ties broken by position); ``num_pruned`` may be traced."""
  ranks = jnp.empty(magnitudes.shape, jnp.int32).at[jnp.argsort(magnitudes, stable=True)].set(
      jnp.arange(magnitudes.size, dtype=jnp.int32))
  return ranks >= num_pruned


def _n_of_m_mask(kernel: jax.Array, n: int, m: int) -> jax.Array:
  """Keeps the ``n`` largest |w| of each group of ``m`` consecutive inputs (axis -2)."""
  moved = jnp.moveaxis(jnp.abs(kernel), -2, -1)  # (..., out, in)
  groups = moved.reshape(moved.shape[:-1] + (moved.shape[-1] // m, m))
  # Rank within the group (0 = largest); ties go to the earlier position.
  order = jnp.argsort(-groups, axis=-1, stable=True)
  ranks = jnp.argsort(order, axis=-1, stable=True)
  keep = (ranks < n).reshape(moved.shape)
  return jnp.moveaxis(keep, -1, -2)


def update_masks(spec: PruneSpec, params: Any, sparsity: jax.Array) -> Any:
  """Magnitude masks of ``params`` at ``sparsity`` (one run; traced ``sparsity``)."""
  flat = _paths(params)
  paths = targeted(spec, params)
  masks = {path: jnp.ones(jnp.shape(value), bool) for path, value in flat.items()}
  n_of_m = spec.n_of_m()
  if n_of_m:
    masks.update({path: _n_of_m_mask(flat[path], *n_of_m) for path in paths})
  elif spec.scope == "layer":
    for path in paths:
      magnitudes = jnp.abs(flat[path]).reshape(-1)
      count = jnp.floor(sparsity * magnitudes.size).astype(jnp.int32)
      masks[path] = _keep_largest(magnitudes, count).reshape(jnp.shape(flat[path]))
  else:
    magnitudes = jnp.concatenate([jnp.abs(flat[path]).reshape(-1) for path in paths])
    keep = _keep_largest(magnitudes, jnp.floor(sparsity * magnitudes.size).astype(jnp.int32))
    offsets = np.cumsum([0] + [int(np.size(flat[path])) for path in paths])
    for path, start, stop in zip(paths, offsets[:-1], offsets[1:]):
      masks[path] = keep[start:stop].reshape(jnp.shape(flat[path]))
  return traverse_util.unflatten_dict(masks, sep="/")


def apply_masks(params: Any, masks: Any) -> Any:
  return jax.tree.map(lambda p, keep: jnp.where(keep, p, jnp.zeros_like(p)), params, masks)


def sparsity_report(spec: PruneSpec, params: Any) -> dict[str, Any]:
  """Zeros among the targeted weights, overall and per array (host numpy, one run)."""
  flat = _paths(params)
  paths = targeted(spec, params)
  zeros = {path: int(np.sum(np.asarray(flat[path]) == 0)) for path in paths}
  total = sum(int(np.size(flat[path])) for path in paths)
  return {"prune/sparsity": sum(zeros.values()) / max(total, 1),
          "prune/layers": {path: zeros[path] / max(int(np.size(flat[path])), 1)
                           for path in paths}}
