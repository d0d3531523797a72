"""Models by name. Each returns ``(logits, {"pre_logits": features, ...})``.

The classifier is always a Dense named ``head`` so transfer code can re-initialise it by the
regex ``^head/`` whatever the backbone.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn

from lowres_jax.models import cnn, resnet, vit

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": cnn.SmallCNN,
    "resnet": resnet.ResNet,
    "vit": vit.ViT,
}


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
  try:
    return MODELS[name](num_classes=num_classes, **kwargs)
  except TypeError as error:
    raise ValueError(f"model {name!r} does not take these config.model fields: {error}") from None
