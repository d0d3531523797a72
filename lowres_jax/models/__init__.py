"""Models by name, and the converters that load foreign checkpoints into them.

Every model is called as ``model.apply(variables, batch, train=...)`` on a batch dict, reads the
entries it needs (``image``; ``input_ids`` and ``attention_mask``), preprocesses them itself,
and returns ``(logits, {"pre_logits": features, ...named intermediates})``. The classifier is
always a Dense named ``head`` so transfer code can re-initialise it by the regex ``^head/``
whatever the backbone.

A converter maps a checkpoint's tensors (numpy, by their own names) to this codebase's
collection-prefixed variable names, returning the source names it could not place.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import numpy as np

from lowres_jax.models import (bert, bert_convert, cnn, efficientnet, efficientnet_convert,
                               resnet, vit, vit_convert)

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": cnn.SmallCNN,
    "resnet": resnet.ResNet,
    "vit": vit.ViT,
    "efficientnet_lite": efficientnet.EfficientNetLite,
    "bert": bert.BertEncoder,
}


# model name -> ``layer_key(path) -> sortable tuple | None``: each model says where a parameter
# ('/'-joined path) sits from the input up, for layer-wise learning-rate decay; None is the top.
LAYER_KEYS: dict[str, Callable[[str], tuple[int, ...] | None]] = {
    "cnn": cnn.layer_key,
    "resnet": resnet.layer_key,
    "vit": vit.layer_key,
    "efficientnet_lite": efficientnet.layer_key,
    "bert": bert.layer_key,
}


@dataclasses.dataclass(frozen=True)
class CheckpointFormat:
  """How foreign checkpoints load into a model: ``convert`` renames the source's tensors into
  collection-prefixed variable names (returning the names it could not place); ``adapt``, if
  any, fits them to the model's shapes (a ViT's position embedding to a new image size)."""
  convert: Callable[[Mapping[str, np.ndarray]], tuple[dict[str, np.ndarray], list[str]]]
  adapt: Callable[[Mapping[str, np.ndarray], Mapping[str, tuple]], dict] | None = None


# model name -> the foreign checkpoints it loads (config.init.kind='checkpoint').
CONVERTERS: dict[str, CheckpointFormat] = {
    "efficientnet_lite": CheckpointFormat(efficientnet_convert.convert_lukemelas),
    "vit": CheckpointFormat(vit_convert.detect_and_convert, vit_convert.adapt_to_model),
    "bert": CheckpointFormat(bert_convert.convert_hf_bert),
}


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
  try:
    return MODELS[name](num_classes=num_classes, **kwargs)
  except TypeError as error:
    raise ValueError(f"model {name!r} does not take these config.model fields: {error}") from None
