"""Mixout (Lee et al. 2020): in each training step, every pretrained weight is swapped for its
pretrained value with probability p, and the mixture rescaled so that its expectation is the
current weight:

  w_used = (M * w + (1 - M) * w0 - p * w0) / (1 - p),   M ~ Bernoulli(1 - p) per element.

Where a weight is swapped, ``w_used`` is exactly ``w0``; where it is kept, the gradient is
scaled by ``1 / (1 - p)``, as dropout scales it. It regularises toward the pretrained weights
the way dropout regularises toward zero. Applied here to the loaded kernels (Dense and
convolution weight matrices), as the paper's ``MixLinear`` applies it to a linear layer's
weight; biases, normalisation scales, embeddings, new weights (the head) and LoRA adapters are
used as they are. Evaluation uses the weights themselves (the expectation). ``p`` is traced
(``config.adapt.mixout``), so a grid over it compiles once; the masks come from the step's own
key, so a resumed run draws the same ones.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from flax import traverse_util

from lowres_jax.train.adapt.base import AdaptSpec, Method, anchored, paths


def mixout(params: Any, anchor: Any, mixed: Any, p: jax.Array, key: jax.Array) -> Any:
  """The parameters a training forward pass sees; ``mixed``: a pytree of bools like ``params``
  (True: mix this leaf with ``anchor``'s)."""
  flat, flat_anchor, flat_mixed = paths(params), paths(anchor), paths(mixed)
  out = {}
  for index, (path, weight) in enumerate(sorted(flat.items())):
    if not flat_mixed[path]:
      out[path] = weight
      continue
    pretrained = flat_anchor[path].astype(weight.dtype)
    keep = jax.random.bernoulli(jax.random.fold_in(key, index), 1.0 - p, weight.shape)
    mixture = jnp.where(keep, weight, pretrained) - p * pretrained
    out[path] = (mixture / (1.0 - p)).astype(weight.dtype)
  return traverse_util.unflatten_dict(out)


def _mixed_leaves(spec: AdaptSpec, params: Any) -> Any:
  is_anchored = paths(anchored(spec, params))
  return traverse_util.unflatten_dict({path: bool(is_anchored[path]) and path[-1] == "kernel"
                                       for path in is_anchored})


def _forward_params(spec: AdaptSpec, params: Any, frozen: Mapping[str, Any],
                    hparams: Mapping[str, jax.Array], key: jax.Array) -> Any:
  return mixout(params, frozen["anchor"]["params"], _mixed_leaves(spec, params),
                hparams["mixout"], key)


# p = 0.5: the middle of the range; it is a strength to tune like dropout's rate.
METHOD = Method("mixout", traced={"mixout": 0.5}, ranges={"mixout": (0.0, 1.0)}, needs_anchor=True,
                forward_params=_forward_params)
