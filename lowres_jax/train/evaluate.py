"""Evaluation in fixed-size padded batches, for a stack of runs at once.

Every batch has the same shape (the last one is zero-padded and its padding rows dropped), so
evaluation compiles once whatever the split's size.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh

from lowres_jax import parallel
from lowres_jax.eval import metrics
from lowres_jax.train import step as step_lib
from lowres_jax.train.compiled import CompileCache


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """Computes logits of stacked params on a split shared by all runs or one split per run."""
  model: object
  batch_size: int
  mesh: Mesh
  cache: CompileCache

  def logits(self, variables, inputs: dict[str, np.ndarray], shared: bool) -> np.ndarray:
    """``inputs``: arrays of (N, ...) if ``shared`` else (S, N, ...). Returns (S, N, classes).

    ``variables`` are the stacked runs' {'params', ...model state}.
    """
    return self.outputs(variables, inputs, shared, "logits")

  def features(self, variables, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """``pre_logits`` (N, D) of one run's ``variables`` (unstacked) on (N, ...) inputs."""
    stacked = parallel.put_replicated(jax.tree.map(lambda leaf: np.asarray(leaf)[None],
                                                   variables), self.mesh)
    return self.outputs(stacked, inputs, True, "pre_logits")[0].astype(np.float32)

  def outputs(self, variables, inputs: dict[str, np.ndarray], shared: bool,
              output: str) -> np.ndarray:
    """``logits`` or a named intermediate of the model, batched as ``logits`` describes."""
    example_axis = 0 if shared else 1
    num = jax.tree.leaves(inputs)[0].shape[example_axis]
    padded_num = -(-num // self.batch_size) * self.batch_size

    def pad(array):
      padding = [(0, 0)] * array.ndim
      padding[example_axis] = (0, padded_num - num)
      return np.pad(array, padding)

    inputs = {k: pad(v) for k, v in inputs.items()}
    sharding = parallel.batch_sharding(self.mesh, leading_unsharded=example_axis)
    replicated = parallel.replicated(self.mesh)
    jitted = jax.jit(step_lib.vmap_over_runs(step_lib.make_eval_logits(self.model, output),
                                             shared_argnums=(1,) if shared else ()),
                     in_shardings=(replicated, sharding), out_shardings=replicated)

    def batch(start: int):  # Placed one at a time: a large split never sits on device whole.
      rows = np.arange(start, start + self.batch_size)
      return parallel.put({k: np.take(v, rows, axis=example_axis) for k, v in inputs.items()},
                          sharding)

    first = batch(0)
    compiled = self.cache.get("eval_" + output,
                              (self.model, shared, parallel.mesh_key(self.mesh)),
                              jitted, variables, first)
    outputs = [parallel.fetch(compiled(variables, first if start == 0 else batch(start)))
               for start in range(0, padded_num, self.batch_size)]
    return np.concatenate(outputs, axis=1)[:, :num]  # The mask: padding rows are dropped.


def split_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int,
                  split: str) -> dict:
  return metrics.prefix_metrics(metrics.classification_metrics(logits, labels, num_classes), split)
