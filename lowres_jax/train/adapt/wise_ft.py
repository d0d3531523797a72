"""WiSE-FT (Wortsman et al. 2022): mixtures of the fine-tuned and the pretrained weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import traverse_util

from lowres_jax.train.adapt.base import AdaptSpec, Method, Setting, anchored, paths


def wise_ft_mixture(spec: AdaptSpec, variables: dict, anchor: dict, alpha: float) -> dict:
  """``alpha * fine-tuned + (1 - alpha) * pretrained``.

  - Loaded weights mix directly; a new head has no pretrained value and keeps its fine-tuned
    one.
  - LoRA adapters stand for the delta ``B A`` added to a pretrained kernel, whose pretrained
    value is zero: the mixture scales ``lora_b`` by ``alpha``, which is the mixture of the merged
    kernels.
  - Model state present in the anchor (BatchNorm's running statistics) mixes the same way. The
    mixed network's true batch statistics are not the mixture of the two; recomputing them on
    the training examples (BN recalibration) is not done here.
  """
  # The one anchor against the runs axis of ``variables``.
  mix = lambda tuned, pretrained: alpha * tuned + (1 - alpha) * jnp.broadcast_to(pretrained,
                                                                                 tuned.shape)
  pretrained, is_anchored = paths(anchor["params"]), paths(anchored(spec, variables["params"]))
  params = traverse_util.unflatten_dict({
      path: (mix(value, pretrained[path]) if is_anchored[path]
             else value * alpha if path[-1] == "lora_b" else value)
      for path, value in paths(variables["params"]).items()})
  state = {name: jax.tree.map(mix, variables[name], anchor[name])
           for name in variables if name != "params" and name in anchor}
  return {**variables, **state, "params": params}


def _variants(spec: AdaptSpec, variables: dict, extra: dict, anchor: dict | None) -> dict:
  return {f"wise_ft_{alpha:g}": wise_ft_mixture(spec, variables, anchor, alpha)
          for alpha in spec.setting("wise_ft")}


def _alphas(value) -> tuple[float, ...]:
  values = (value,) if isinstance(value, (int, float, str)) else tuple(value)
  return tuple(float(a) for a in values)


METHOD = Method("wise_ft", static={"wise_ft": Setting((0.25, 0.5, 0.75), _alphas)},
                needs_anchor=True, eval_variants=_variants)
