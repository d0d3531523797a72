"""Device mesh, shardings and multi-host helpers.

One mesh axis, ``data``: batches are split over it, parameters are replicated. The same code runs
on one CPU, 8 fake CPU devices, a GPU, or several hosts after ``jax.distributed.initialize``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
  # Auto axes let XLA propagate the batch sharding through the step from one constraint.
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def mesh_key(mesh: Mesh) -> tuple:
  """Identifies a mesh in compile-cache keys (its device ids, in order)."""
  return tuple(d.id for d in mesh.devices.flat)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, leading_unsharded: int = 0) -> NamedSharding:
  """Shards the batch axis, after ``leading_unsharded`` axes such as the stacked-runs axis."""
  return NamedSharding(mesh, P(*([None] * leading_unsharded), DATA_AXIS))


def put(tree: Any, sharding: NamedSharding) -> Any:
  """Places a host pytree on the (possibly multi-host) mesh with the given sharding.

  ``make_array_from_callback`` rather than ``device_put`` because in a multi-host run each
  process may only create the shards of its own devices; every process holds the same values.
  """

  def put_leaf(leaf):
    leaf = np.asarray(leaf)
    return jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])

  return jax.tree.map(put_leaf, tree)


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  return put(tree, replicated(mesh))


def fetch(tree: Any) -> Any:
  """Host numpy copy of replicated arrays, valid in every process of a multi-host run."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array)
                      else np.asarray(x), tree)


def check_divisible(size: int, what: str) -> None:
  devices = jax.device_count()
  if size % devices:
    from lowres_jax.config import ConfigError
    lower, upper = size // devices * devices, (size // devices + 1) * devices
    choices = f"{lower} or {upper}" if lower > 0 else f"{upper}"
    raise ConfigError(f"{what} = {size} must be divisible by the number of devices ({devices}) "
                      f"so the batch splits evenly over the mesh; use e.g. {choices}")


def is_main_process() -> bool:
  return jax.process_index() == 0


def initialize_distributed(coordinator: str, num_processes: int, process_id: int) -> None:
  """Joins a multi-host run; call before any other JAX use."""
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)
