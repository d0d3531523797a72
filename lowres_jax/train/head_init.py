"""Where the classifier head starts, computed from the pretrained encoder before training.

- ``zero``: the model's own init (a zero head for the transfer backbones here).
- ``class_means``: each class's row is the mean embedding of its k-shot training examples,
  normalised (nearest class mean: with ``train.duration = '0 steps'`` it is the classifier).
- ``label_names``: each class's row is the embedding of its name put in
  ``config.data.label_template`` (zero-shot: with 0 steps, no labelled example is used).

Rows are L2-normalised and scaled by ``config.head_scale``, so with a normalised encoder
(``model.normalize = True``) the logits are scaled cosine similarities. Starting a linear probe
or fine-tuning from such a head is the "prototype init" trick; with 0 steps it is the method.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import jax
import numpy as np

HEAD_INITS = ("zero", "class_means", "label_names")


@functools.lru_cache(maxsize=8)
def _pre_logits_fn(model):
  """One jitted embedding function per model, so a sweep's runs reuse its compilation."""
  return jax.jit(lambda v, b: model.apply(v, b, train=False)[1]["pre_logits"])


def embed(model, variables, inputs: Mapping[str, np.ndarray], chunk: int = 64) -> np.ndarray:
  """``pre_logits`` of every example, in fixed-size chunks (one compiled shape)."""
  fn = _pre_logits_fn(model)
  num = len(next(iter(inputs.values())))
  outputs = []
  for start in range(0, num, chunk):
    rows = np.arange(start, start + chunk) % num  # The last chunk wraps; extra rows dropped.
    outputs.append(np.asarray(fn(variables, {k: v[rows] for k, v in inputs.items()})))
  return np.concatenate(outputs)[:num].astype(np.float32)


def _unit_rows(rows: np.ndarray) -> np.ndarray:
  return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def class_mean_rows(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  return _unit_rows(np.stack([features[labels == c].mean(0) for c in range(num_classes)]))


def with_head(variables: dict, rows: np.ndarray, scale: float) -> dict:
  """``variables`` with the head's kernel set to ``scale * rows.T`` and a zero bias."""
  head = variables["params"]["head"]
  if head["kernel"].shape != rows.T.shape:
    raise ValueError(f"head kernel {head['kernel'].shape} does not fit class rows "
                     f"{rows.T.shape}")
  new_head = {**head, "kernel": (scale * rows.T).astype(head["kernel"].dtype),
              "bias": np.zeros_like(head["bias"])}
  return {**variables, "params": {**variables["params"], "head": new_head}}


def initial_head(kind: str, model, variables: dict, train_inputs: Mapping[str, np.ndarray],
                 num_classes: int, scale: float,
                 label_inputs: Callable[[], Mapping[str, np.ndarray]]) -> dict:
  """``variables`` with the head ``kind`` asks for; ``label_inputs`` gives the tokenised
  templated class names (called only for ``label_names``)."""
  if kind == "zero":
    return variables
  if kind == "class_means":
    features = embed(model, variables, {k: v for k, v in train_inputs.items() if k != "label"})
    rows = class_mean_rows(features, np.asarray(train_inputs["label"]), num_classes)
  elif kind == "label_names":
    rows = _unit_rows(embed(model, variables, label_inputs()))
  else:
    raise ValueError(f"head init {kind!r} is unknown; known: {HEAD_INITS}")
  return with_head(variables, rows, scale)


def template_names(names: list[str], template: str) -> list[str]:
  """'{}' in ``template`` replaced by each class name, '-' and '_' read as spaces."""
  return [template.format(name.replace("-", " ").replace("_", " ")) for name in names]
