"""LoRA (Hu et al. 2021) on any model's Dense layers and pointwise (1x1, stride 1) convolutions,
chosen by a regex on their paths.

``y = x W + b + (alpha / r) x A B``, with ``A`` (in, r) and ``B`` (r, out) new parameters named
``lora_a`` and ``lora_b`` beside the Dense's own kernel, so every other parameter keeps its
path: pretrained checkpoints load as before, ``^head/`` is still the head, and training only the
adapters is the freeze regex ``LORA_FREEZE``. ``B`` starts at zero, so the adapted model starts
equal to the pretrained one. ``merge`` folds ``A B`` into the kernels for inference: plain
weights for the plain model.

Written as a flax method interceptor rather than with qwix's ``LoraProvider``: qwix rewrites
``flax.nnx`` modules and ``jnp.einsum``/``dot_general`` call sites for its quantized training,
while these models are linen modules; the interceptor adapts any linen ``nn.Dense`` without
touching the model code.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

LORA_PARAMS = ("lora_a", "lora_b")
# Trains the adapters and the head only.
LORA_FREEZE = r"^(?!head/)(?!.*/lora_[ab]$)"


@dataclasses.dataclass(frozen=True)
class LoraSpec:
  rank: int
  alpha: float
  targets: str  # Regex on a Dense's '/'-joined module path ('layer_0/attention/query').

  def __post_init__(self):
    if self.rank < 1:
      raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
    re.compile(self.targets)

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


@dataclasses.dataclass(frozen=True)
class LoraModel:
  """``base`` with LoRA adapters: ``init`` and ``apply`` as a flax module's, every other
  attribute the base model's. Hashable, so it can sit in a compiled step's static spec."""
  base: nn.Module
  spec: LoraSpec

  def init(self, *args, **kwargs):
    with nn.intercept_methods(self._adapt):
      return self.base.init(*args, **kwargs)

  def apply(self, *args, **kwargs):
    with nn.intercept_methods(self._adapt):
      return self.base.apply(*args, **kwargs)

  def __getattr__(self, name: str) -> Any:
    return getattr(self.base, name)

  def _adapt(self, next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name != "__call__" or not _adaptable(module)
        or not re.search(self.spec.targets, "/".join(module.path))):
      return next_fun(*args, **kwargs)
    inputs = args[0]
    a = module.param("lora_a", nn.initializers.he_uniform(), (inputs.shape[-1], self.spec.rank),
                     module.param_dtype)
    b = module.param("lora_b", nn.initializers.zeros, (self.spec.rank, module.features),
                     module.param_dtype)
    dtype = module.dtype or inputs.dtype
    low_rank = (inputs.astype(dtype) @ a.astype(dtype)) @ b.astype(dtype)
    return next_fun(*args, **kwargs) + self.spec.scale * low_rank


def _adaptable(module: nn.Module) -> bool:
  """A Dense, or a convolution that is a matmul over channels (1x1 kernel, stride 1, no
  groups): EfficientNet's expand, project and top layers."""
  if type(module) is nn.Dense:
    return True
  if not isinstance(module, nn.Conv):
    return False
  size = (module.kernel_size,) if isinstance(module.kernel_size, int) else module.kernel_size
  strides = module.strides or 1
  strides = (strides,) if isinstance(strides, int) else strides
  return (all(k == 1 for k in size) and all(s == 1 for s in strides)
          and module.feature_group_count == 1 and module.input_dilation in (None, 1, (1, 1)))


def merge(params: Any, scale: float) -> Any:
  """Params of the plain model: each adapted kernel becomes ``W + scale A B``, adapters dropped."""
  flat = traverse_util.flatten_dict(params)
  merged = {}
  for path, value in flat.items():
    if path[-1] in LORA_PARAMS:
      continue
    if path[-1] == "kernel" and path[:-1] + ("lora_a",) in flat:
      a, b = flat[path[:-1] + ("lora_a",)], flat[path[:-1] + ("lora_b",)]
      delta = scale * (jnp.asarray(a) @ jnp.asarray(b))  # (in, out); a 1x1 conv's is (1, 1, in, out).
      value = value + delta.reshape(value.shape).astype(value.dtype)
    merged[path] = value
  return traverse_util.unflatten_dict(merged)


def adapter_count(params: Any) -> int:
  """How many adapter parameters (A and B) ``params`` holds."""
  return int(sum(np.size(v) for path, v in traverse_util.flatten_dict(params).items()
                 if path[-1] in LORA_PARAMS))


def adapted_kernels(params: Any) -> list[str]:
  """'/'-joined paths of the Dense layers that carry adapters."""
  return sorted("/".join(path[:-1]) for path in traverse_util.flatten_dict(params)
                if path[-1] == "lora_a")


def check_targets(params: Any, spec: LoraSpec) -> None:
  """A LoRA config whose regex matches no Dense would silently train only the head."""
  if not adapted_kernels(params):
    raise ValueError(f"config.adapt.lora_targets = {spec.targets!r} matches no Dense layer of "
                     "the model; it is a regex on module paths such as "
                     "'layer_0/attention/query' (bert) or 'block_0/mlp_in' (vit)")

