"""Where the classifier head starts, computed from the pretrained encoder before training.

- ``zero``: the model's own init (a zero head for the transfer backbones here).
- ``class_means``: each class's row is the mean embedding of its k-shot training examples,
  normalised (nearest class mean: with ``train.duration = '0 steps'`` it is the classifier).
- ``label_names``: each class's row is the embedding of its name put in
  ``config.data.label_template`` (zero-shot: with 0 steps, no labelled example is used).
- ``scaled``: random rows (isotropic directions, drawn from the run's seed) of norm
  ``config.head_scale``: a small random head (timm's ``head_init_scale``) that breaks the
  symmetry of a zero head while keeping the first logits near zero.

- ``ridge``: least squares onto one-hot labels on the k-shot embeddings, closed form.
- ``logistic``: multinomial logistic regression on them (L-BFGS), the usual linear probe.

Class-mean, label-name and scaled rows are L2-normalised and scaled by ``config.head_scale``, so with a
normalised encoder (``model.normalize = True``) the logits are scaled cosine similarities. The
fitted heads are penalised by ``config.head_l2``. Starting a probe or fine-tuning from such a
head is the "prototype init" trick; with 0 steps it is the method. ``config.head_refit`` fits
one of them again at the end of training, on the tuned encoder (SetFit's second stage).

The embeddings come from the caller (train/embedding_cache.py caches them per frozen backbone), so
this module is plain fitting on arrays.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

HEAD_INITS = ("zero", "scaled", "class_means", "label_names", "ridge", "logistic")
FITTED = ("ridge", "logistic")  # Heads fitted to the labels (they read config.head_l2).


def _unit_rows(rows: np.ndarray) -> np.ndarray:
  return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def class_mean_rows(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  return _unit_rows(np.stack([features[labels == c].mean(0) for c in range(num_classes)]))


def ridge_head(features: np.ndarray, labels: np.ndarray, num_classes: int,
               l2: float) -> tuple[np.ndarray, np.ndarray]:
  """Least squares onto one-hot targets with an unpenalised bias, in closed form:
  ``min_W,b mean ||x W + b - onehot(y)||^2 + l2 ||W||^2`` (features centred, float64)."""
  x = features.astype(np.float64)
  targets = np.eye(num_classes)[labels]
  x_mean, t_mean = x.mean(0), targets.mean(0)
  xc, tc = x - x_mean, targets - t_mean
  gram = xc.T @ xc / len(x) + l2 * np.eye(x.shape[1])
  kernel = np.linalg.solve(gram, xc.T @ tc / len(x))
  return kernel.astype(np.float32), (t_mean - x_mean @ kernel).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("num_classes", "iterations"))
def _logistic_fit(features, labels, l2, num_classes: int, iterations: int):
  def objective(weights):
    logits = features @ weights["kernel"] + weights["bias"]
    return (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            + 0.5 * l2 * jnp.sum(weights["kernel"] ** 2))

  solver = optax.lbfgs()
  weights = {"kernel": jnp.zeros((features.shape[1], num_classes)),
             "bias": jnp.zeros((num_classes,))}
  value_and_grad = optax.value_and_grad_from_state(objective)

  def iteration(carry, _):
    weights, state = carry
    value, grad = value_and_grad(weights, state=state)
    updates, state = solver.update(grad, state, weights, value=value, grad=grad,
                                   value_fn=objective)
    return (optax.apply_updates(weights, updates), state), value

  (weights, _), values = jax.lax.scan(iteration, (weights, solver.init(weights)), None,
                                      length=iterations)
  return weights, values


def logistic_head(features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float,
                  iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
  """Multinomial logistic regression, ``min mean CE(x W + b, y) + l2/2 ||W||^2``, by
  L-BFGS (optax) from zero: the probe SetFit and most few-shot papers fit on embeddings.

  Written here rather than taken from scikit-learn so it runs inside JAX on any backend and
  adds no dependency; strictly convex, so the optimum does not depend on the solver.
  """
  weights, _ = _logistic_fit(jnp.asarray(features, jnp.float32), jnp.asarray(labels),
                             jnp.float32(l2), num_classes=num_classes, iterations=iterations)
  return np.asarray(weights["kernel"]), np.asarray(weights["bias"])


def with_head(variables: dict, kernel: np.ndarray, bias: np.ndarray) -> dict:
  """``variables`` with the head's kernel and bias replaced (shapes checked)."""
  head = variables["params"]["head"]
  if head["kernel"].shape != kernel.shape or head["bias"].shape != bias.shape:
    raise ValueError(f"head kernel {head['kernel'].shape} does not fit the fitted head "
                     f"{kernel.shape}")
  new_head = {**head, "kernel": np.asarray(kernel, head["kernel"].dtype),
              "bias": np.asarray(bias, head["bias"].dtype)}
  return {**variables, "params": {**variables["params"], "head": new_head}}


def fit_head(kind: str, train_features: Callable[[], np.ndarray], train_labels: np.ndarray,
             label_features: Callable[[], np.ndarray], num_classes: int, scale: float,
             l2: float, dim: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The head ``kind`` asks for, as (kernel (D, classes), bias (classes,)).

  ``train_features`` gives the k-shot examples' embeddings, ``label_features`` the embedded
  templated class names; each is called only by the kinds that need it. ``scale`` sets the
  norm of the class-mean, label-name and scaled rows; ``l2`` the penalty of the fitted heads;
  ``dim`` and ``seed`` the embedding width and the draw of the scaled head.
  """
  labels = np.asarray(train_labels)
  if kind == "scaled":
    rows = scale * _unit_rows(np.random.default_rng(seed).standard_normal((num_classes, dim)))
  elif kind == "class_means":
    rows = scale * class_mean_rows(train_features(), labels, num_classes)
  elif kind == "label_names":
    rows = scale * _unit_rows(label_features())
  elif kind == "ridge":
    return ridge_head(train_features(), labels, num_classes, l2)
  elif kind == "logistic":
    return logistic_head(train_features(), labels, num_classes, l2)
  else:
    raise ValueError(f"head init {kind!r} is unknown; known: {HEAD_INITS}")
  return rows.T.astype(np.float32), np.zeros(num_classes, np.float32)


def template_names(names: list[str], template: str) -> list[str]:
  """'{}' in ``template`` replaced by each class name, '-' and '_' read as spaces."""
  return [template.format(name.replace("-", " ").replace("_", " ")) for name in names]
