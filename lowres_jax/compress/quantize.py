"""int8 quantization with qwix: post-training (w8a8, static or dynamic activation scales;
weight-only) and quantization-aware training (qwix's ``QtProvider``).

``config.quantize`` selects it:

- ``mode``: '' (off), 'w8a8_dynamic' (int8 weights, activations quantized per example at run
  time), 'w8a8_static' (activation scales calibrated on ``calibration_batches`` training
  batches, one per tensor) or 'weight_only' (int8 weights dequantized into a float matmul:
  saves memory, not time; qwix applies it to Dense layers only, convolutions stay float);
- ``targets``: regex of the module paths quantized (qwix's ``module_path``, full match:
  'conv0_a', 'layer_0/attention/query');
- ``qat``: train with fake quantization in the forward pass (straight-through gradients) before
  the post-training conversion.

What qwix 0.1.8 does, checked on this machine: w8a8 lowers Dense to an int8 x int8 -> int32
``dot_general`` and Conv to an int8 convolution with int32 accumulation; the fast path needs
both operands quantized (and a subchannel tile of at least 128 when ``tile_size`` is set, not
used here); weight-only int8 is dequantized before a float matmul. Static-scale calibration of
a Conv fails under ``jax.jit`` in qwix 0.1.8 (it collects statistics inside a ``custom_vjp``),
so calibration runs eagerly, over a few batches.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MODES = ("w8a8_dynamic", "w8a8_static", "weight_only")
CONFIG_DEFAULTS = {"mode": "", "targets": ".*", "calibration_batches": 4, "qat": False}
INT8_DIR = "int8"  # Inside a run's workdir: the quantized variables (orbax).


@dataclasses.dataclass(frozen=True)
class QuantizeSpec:
  mode: str = ""
  targets: str = ".*"
  calibration_batches: int = 4
  qat: bool = False

  def __post_init__(self):
    if self.mode not in ("",) + MODES:
      raise ValueError(f"quantize.mode = {self.mode!r}; known: '' (off), {', '.join(MODES)}")
    re.compile(self.targets)
    if self.calibration_batches < 1:
      raise ValueError(f"quantize.calibration_batches = {self.calibration_batches} must be >= 1")
    if self.qat and self.mode == "w8a8_static":
      # qwix 0.1.8 cannot jit static-scale statistics of a Conv (see the module docstring).
      raise ValueError("quantize.qat trains with dynamic activation scales; use mode "
                       "'w8a8_dynamic' or 'weight_only' with qat")
    if self.qat and not self.mode:
      raise ValueError("quantize.qat needs a quantize.mode")

  @property
  def active(self) -> bool:
    return bool(self.mode)


def rules(spec: QuantizeSpec) -> list:
  import qwix  # Local: only quantized runs pay for the import.
  if spec.mode == "weight_only":
    # qwix's weight-only PTQ takes matmuls only: convolutions stay float.
    return [qwix.QuantizationRule(module_path=spec.targets, weight_qtype=jnp.int8,
                                  op_names=("dot_general", "einsum"))]
  return [qwix.QuantizationRule(module_path=spec.targets, weight_qtype=jnp.int8,
                                act_qtype=jnp.int8,
                                act_static_scale=spec.mode == "w8a8_static")]


def qat_model(model: nn.Module, spec: QuantizeSpec) -> nn.Module:
  """``model`` with fake quantization in its forward pass (params stay float)."""
  import qwix
  return qwix.quantize_model(model, qwix.QtProvider(rules(spec)))


def ptq_model(model: nn.Module, spec: QuantizeSpec) -> nn.Module:
  """``model`` running int8 ops on quantized params."""
  import qwix
  return qwix.quantize_model(model, qwix.PtqProvider(rules(spec)))


def calibrate(model: nn.Module, spec: QuantizeSpec, variables: dict,
              batches: Sequence[dict]) -> dict:
  """Static activation scales' statistics (qwix's ``quant_stats``) over ``batches``, in
  inference mode; eager (see the module docstring)."""
  import qwix
  calibrating = qwix.quantize_model(model, qwix.QtProvider(rules(spec)))
  stats = calibrating.init(jax.random.PRNGKey(0), batches[0], train=False)["quant_stats"]
  for batch in batches:
    _, updated = calibrating.apply({**variables, "quant_stats": stats}, batch, train=False,
                                   mutable=["quant_stats"])
    stats = updated["quant_stats"]
  return stats


def quantize(model: nn.Module, spec: QuantizeSpec, variables: dict,
             calibration: Sequence[dict]) -> tuple[nn.Module, dict]:
  """The int8 model and its variables (quantized params, other collections as they were) from
  one run's float ``variables``; ``calibration`` batches are read by 'w8a8_static' only."""
  import qwix
  # qwix finds a layer's weight among the params by identity: device arrays, not numpy.
  variables = jax.tree.map(jnp.asarray, variables)
  quantized = ptq_model(model, spec)
  abstract = jax.eval_shape(lambda: quantized.init(jax.random.PRNGKey(0), calibration[0],
                                                   train=False))
  stats = (calibrate(model, spec, variables, calibration) if spec.mode == "w8a8_static"
           else {})
  params = qwix.quantize_params(variables["params"], abstract["params"], stats)
  return quantized, {**variables, "params": params}


def abstract_variables(quantized: nn.Module, sample: dict) -> Any:
  """Shapes, dtypes and qwix's quantization metadata of an int8 model's variables: the target
  that restores a saved int8 checkpoint into its QArray structure."""
  return jax.eval_shape(lambda: quantized.init(jax.random.PRNGKey(0), sample, train=False))


def save(path: str, variables: dict) -> None:
  """int8 variables with orbax (QArray and its metadata are registered pytrees)."""
  import orbax.checkpoint as ocp
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.abspath(path), variables, force=True)
  checkpointer.wait_until_finished()


def restore(path: str, target: Any) -> dict:
  """int8 variables saved by ``save``, restored bit for bit into ``target``'s structure."""
  import orbax.checkpoint as ocp
  return ocp.StandardCheckpointer().restore(os.path.abspath(path), target)


def weight_bytes(variables: Any) -> int:
  """Bytes of the model's arrays themselves (int8 values and their float scales after
  quantization): unlike the files orbax writes, the same for identical runs."""
  return int(sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(variables)))


def directory_bytes(path: str) -> int:
  """Bytes of the files under ``path`` (what the model costs on disk)."""
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def calibration_batches(inputs: dict[str, np.ndarray], batch_size: int,
                        count: int) -> list[dict]:
  """``count`` batches of a run's training inputs, in order, wrapping around a small set."""
  num = len(next(iter(inputs.values())))
  return [{k: np.take(v, np.arange(i * batch_size, (i + 1) * batch_size) % num, axis=0)
           for k, v in inputs.items()} for i in range(count)]


def quantize_and_evaluate(model: nn.Module, spec: QuantizeSpec, variables: dict,
                          train_inputs: dict[str, np.ndarray], batch_size: int, evaluator,
                          test, num_classes: int, float_test_logits: np.ndarray,
                          workdir: str) -> dict:
  """One run's float ``variables`` quantized, saved to ``workdir/int8`` and evaluated on test:
  'int8/test/...' metrics, top-1 agreement with the float model, and bytes on disk."""
  from lowres_jax import parallel
  from lowres_jax.train.evaluate import split_metrics
  inputs = {k: v for k, v in train_inputs.items() if k != "label"}
  quantized, int8 = quantize(model, spec, variables,
                             calibration_batches(inputs, batch_size, spec.calibration_batches))
  path = os.path.join(workdir, INT8_DIR)
  if parallel.is_main_process():
    save(path, int8)
  stacked = parallel.put_replicated(jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], int8),
                                    evaluator.mesh)
  logits = dataclasses.replace(evaluator, model=quantized).logits(stacked, test.inputs(),
                                                                 shared=True)[0]
  metrics = {f"int8/{k}": v for k, v in split_metrics(logits, test.labels, num_classes,
                                                      "test").items()}
  metrics["int8/test/float_agreement"] = float(np.mean(
      np.argmax(logits, -1) == np.argmax(float_test_logits, -1)))
  metrics["int8/disk_bytes"] = directory_bytes(path) if os.path.isdir(path) else None
  metrics["int8/weight_bytes"] = weight_bytes(int8)
  return metrics
