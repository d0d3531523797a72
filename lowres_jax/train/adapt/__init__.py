"""Adaptation methods by name (``config.adapt.methods``), composed inside the one train step.

Each method is one file of this package declaring a ``Method`` (adapt/base.py): its config
keys, what it reads, and the step hooks it uses. ``REGISTERED`` lists them; every table the
rest of the code reads (the traced hyperparameters, ``config.adapt``'s defaults, which keys
belong to which method, which methods need the pretrained anchor) is a view of that list, and
the functions below call the selected methods' hooks in its order.

Strengths, radii, decays and phases are traced hyperparameters (train/hparams.py), so a grid
over them compiles once; which methods run, and settings that shape the program (BSS's k,
WiSE-FT's coefficients, LoRA's rank) are static. Frozen pytrees (the pretrained ``anchor``)
enter the step once, shared by a group's runs, not stacked. ``config.adapt.lr_groups``
((regex, multiplier) pairs, first match wins, the multipliers traced) scale the whole update
of the parameters they match, learning rate and decoupled weight decay together. BitFit and
plain freezing are ``config.freeze`` regexes (``BITFIT_FREEZE``).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from lowres_jax.train.adapt import bss, delta, ema, l2sp, llrd, lora, lpft, mixout, sam, wise_ft
from lowres_jax.train.adapt.base import (GROUP_SCALES, AdaptSpec, Method, PenaltyContext,
                                         Setting, anchored, map_paths)

REGISTERED: tuple[Method, ...] = (
    l2sp.METHOD, delta.METHOD, bss.METHOD, sam.METHOD, ema.METHOD, llrd.METHOD, lpft.METHOD,
    wise_ft.METHOD, lora.METHOD, mixout.METHOD,
)
BY_NAME: dict[str, Method] = {method.name: method for method in REGISTERED}
METHODS = tuple(BY_NAME)
NEEDS_ANCHOR = tuple(m.name for m in REGISTERED if m.needs_anchor)
# Trains biases (all of them, LayerNorm's too) and the head: BitFit (Ben Zaken et al. 2022).
BITFIT_FREEZE = r"^(?!head/)(?!.*/bias$)"
# config.adapt's own static key (not a method's).
SHARED_STATIC: dict[str, Any] = {"lr_groups": ()}

__all__ = ["AdaptSpec", "PenaltyContext", "Method", "Setting", "anchored", "map_paths",
           "GROUP_SCALES", "METHODS", "NEEDS_ANCHOR", "BITFIT_FREEZE"]


def traced_defaults() -> dict[str, float]:
  """Every method's traced ``config.adapt`` key with its default."""
  return {key: value for method in REGISTERED for key, value in method.traced.items()}


def static_defaults() -> dict[str, Any]:
  return {key: setting.default for method in REGISTERED for key, setting in method.static.items()}


def config_defaults() -> dict[str, Any]:
  """Every ``config.adapt`` key with its default, no method selected: the group configs carry so
  that each setting is visible (and a sweep can override it)."""
  return {"methods": (), **traced_defaults(), **SHARED_STATIC, **static_defaults()}


def owners() -> dict[str, str]:
  """config.adapt key -> the method that reads it."""
  return {key: method.name for method in REGISTERED
          for key in (*method.traced, *method.static)}


def anchor_readers(methods: tuple[str, ...]) -> list[str]:
  return sorted(set(methods) & set(NEEDS_ANCHOR))


def make_spec(methods: tuple[str, ...] = (), fresh: str = "", model_name: str = "",
              lr_groups: tuple[str, ...] = (), **settings: Any) -> AdaptSpec:
  """The spec of ``methods`` with their static ``settings`` parsed (defaults for those left
  out), checked by each method; ValueError on an unknown method or setting, or a bad value."""
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise ValueError(f"unknown adaptation method(s) {unknown}; known: {list(METHODS)}")
  selected = [BY_NAME[name] for name in METHODS if name in methods]
  known = {key: setting for method in selected for key, setting in method.static.items()}
  stray = sorted(set(settings) - set(known))
  if stray:
    raise ValueError(f"{stray} are settings of no selected method ({list(methods)})")
  values = tuple((key, setting.parse(settings.get(key, setting.default)))
                 for key, setting in known.items())
  if sum(method.gradients is not None for method in selected) > 1:
    raise ValueError(f"{[m.name for m in selected if m.gradients]} each replace the gradient; "
                     "select one of them")
  spec = AdaptSpec(methods=tuple(methods), fresh=fresh, model_name=model_name,
                   lr_groups=tuple(lr_groups), settings=values,
                   needs_anchor=any(method.needs_anchor for method in selected))
  for method in selected:
    if method.validate is not None:
      method.validate(spec)
  return spec


def check_ranges(methods: tuple[str, ...], values: Mapping[str, float]) -> None:
  """ValueError when a selected method's traced value is outside its range."""
  for name in methods:
    for key, (lo, hi) in BY_NAME[name].ranges.items():
      if not lo <= values[key] < hi:
        raise ValueError(f"adapt.{key} = {values[key]} must be in [{lo}, {hi})")


def _hooks(spec: AdaptSpec, hook: str) -> list[Callable]:
  return [getattr(BY_NAME[name], hook) for name in METHODS
          if name in spec.methods and getattr(BY_NAME[name], hook) is not None]


# ---------------------------------------------------------------------------------------------
# The step's calls.


def penalty(spec: AdaptSpec, ctx: PenaltyContext) -> jax.Array:
  """The sum of the selected methods' loss terms (0 when none is selected)."""
  total = jnp.float32(0.0)
  for loss in _hooks(spec, "loss"):
    total += loss(spec, ctx)
  return total


def forward_params(spec: AdaptSpec, params: Any, frozen: Mapping[str, Any],
                   hparams: Mapping[str, jax.Array], step_key: jax.Array) -> Any:
  """The parameters the training forward pass sees (``params`` unless a method maps them);
  the methods' keys are folded from the step's, apart from its batch, augmentation and
  dropout draws."""
  for index, hook in enumerate(_hooks(spec, "forward_params")):
    params = hook(spec, params, frozen, hparams, jax.random.fold_in(step_key, 2 + index))
  return params


def gradients(spec: AdaptSpec, grad_fn: Callable, params: Any, hparams: Mapping[str, jax.Array],
              trainable: Callable[[], Any]) -> tuple[Any, Any]:
  """``(aux, grads)``: a selected method's gradient rule, or the plain gradient."""
  rules = _hooks(spec, "gradients")
  if not rules:
    return grad_fn(params)
  return rules[0](spec, grad_fn, params, hparams, trainable())


def gate_gradients(spec: AdaptSpec, grads: Any, hparams, step, total_steps: int) -> Any:
  for gate in _hooks(spec, "gate_gradients"):
    grads = gate(spec, grads, hparams, step, total_steps)
  return grads


def group_scales(spec: AdaptSpec, scales: jax.Array, params: Any) -> Any:
  """Each parameter's ``lr_groups`` multiplier: the traced ``scales[i]`` of the first regex
  that matches its path, 1 where none does."""
  regexes = [re.compile(pattern) for pattern in spec.lr_groups]

  def scale(path: str):
    index = next((i for i, regex in enumerate(regexes) if regex.search(path)), None)
    return jnp.float32(1.0) if index is None else scales[index]

  return map_paths(params, scale)


def update_multipliers(spec: AdaptSpec, hparams: Mapping[str, jax.Array], params: Any,
                       step: jax.Array, total_steps: int) -> Any | None:
  """Per-parameter multipliers of the updates (None: all ones, nothing to do): the lr_groups
  multipliers times each selected method's."""
  hooks = _hooks(spec, "multipliers")
  if not (hooks or spec.lr_groups):
    return None
  multipliers = jax.tree.map(lambda _: jnp.float32(1.0), params)
  if spec.lr_groups:
    multipliers = jax.tree.map(lambda m, s: m * s, multipliers,
                               group_scales(spec, hparams[GROUP_SCALES], params))
  for hook in hooks:
    multipliers = jax.tree.map(lambda m, f: m * f, multipliers,
                               hook(spec, hparams, params, step, total_steps))
  return multipliers


def scale_updates(updates: Any, multipliers: Any | None) -> Any:
  if multipliers is None:
    return updates
  return jax.tree.map(lambda u, m: u * m.astype(u.dtype), updates, multipliers)


def initial_extra(spec: AdaptSpec, params: Any) -> dict:
  extra = {}
  for init in _hooks(spec, "init_extra"):
    extra.update(init(spec, params))
  return extra


def update_extra(spec: AdaptSpec, extra: dict, params: Any,
                 hparams: Mapping[str, jax.Array]) -> dict:
  for update in _hooks(spec, "update_extra"):
    extra = update(spec, extra, params, hparams)
  return extra


def eval_variants(spec: AdaptSpec, variables: dict, extra: dict,
                  anchor: dict | None) -> dict[str, dict]:
  """Named variables to evaluate besides the final ones (stacked over runs, like them)."""
  variants = {}
  for hook in _hooks(spec, "eval_variants"):
    variants.update(hook(spec, variables, extra, anchor))
  return variants


def wrap_model(spec: AdaptSpec, model):
  for wrap in _hooks(spec, "wrap_model"):
    model = wrap(spec, model)
  return model


def check_params(spec: AdaptSpec, params: Any) -> None:
  for check in _hooks(spec, "check_params"):
    check(spec, params)


def default_freeze(spec: AdaptSpec) -> str:
  """The freeze regex a run of these methods gets when its config sets none ('' if none)."""
  return next((BY_NAME[name].default_freeze for name in METHODS
               if name in spec.methods and BY_NAME[name].default_freeze), "")
