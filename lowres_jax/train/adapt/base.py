"""The contract of an adaptation method, and the spec a run's selected methods share.

A method (one file in this package, registered in ``adapt/__init__.py``) is a ``Method``: its
``config.adapt`` keys (traced strengths with their defaults; static settings with defaults and
parsers), whether it reads the pretrained ``anchor``, its own validation, and the hooks of the
train step it uses. Every hook is optional; the step calls the hooks of the selected methods
in registration order (docs/architecture.md, "Adding an adaptation method").
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping

import jax
from flax import traverse_util

from lowres_jax.models import lora as lora_lib

# The step's hparams entry holding ``config.adapt.lr_groups``' multipliers (one per regex; the
# regexes are static). Present only in runs that set groups.
GROUP_SCALES = "lr_group_scales"


@dataclasses.dataclass(frozen=True)
class Setting:
  """A static ``config.adapt`` key: it shapes the compiled program (BSS's k, LoRA's rank)."""
  default: Any
  parse: Callable[[Any], Any]  # Raises ValueError/TypeError on a bad value.


@dataclasses.dataclass(frozen=True)
class AdaptSpec:
  """The static part of ``config.adapt``: hashable, so runs that share it share a program.

  ``settings`` holds every static setting of the selected methods, defaults filled in
  (``adapt.make_spec`` builds it); a method reads its own with ``setting``.
  """
  methods: tuple[str, ...] = ()
  fresh: str = ""             # Regex of params not loaded from the pretrained model (no anchor).
  model_name: str = ""        # Whose ``layer_key`` names the layers (llrd).
  lr_groups: tuple[str, ...] = ()  # Regexes; their multipliers are traced (GROUP_SCALES).
  settings: tuple[tuple[str, Any], ...] = ()
  needs_anchor: bool = False  # A selected method reads the frozen pretrained model.

  def uses(self, name: str) -> bool:
    return name in self.methods

  def setting(self, key: str) -> Any:
    for name, value in self.settings:
      if name == key:
        return value
    raise KeyError(f"config.adapt.{key} is not a setting of the selected methods {self.methods}")


@dataclasses.dataclass(frozen=True)
class PenaltyContext:
  """What a loss term reads: the model's outputs on the batch and the frozen pretrained model."""
  params: Any
  outputs: Mapping[str, jax.Array]          # The model's named intermediates on the batch.
  anchor_outputs: Callable[[], Mapping[str, jax.Array]]  # The frozen pretrained model's.
  frozen: Mapping[str, Any]                 # {'anchor': pretrained variables} when needed.
  hparams: Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Method:
  """One adaptation method. Hooks (all optional, ``spec`` first):

  - ``loss(spec, ctx) -> scalar``: a term added to the training loss;
  - ``forward_params(spec, params, frozen, hparams, key) -> params``: the parameters the
    training forward pass sees (the gradient flows through the map);
  - ``gradients(spec, grad_fn, params, hparams, trainable) -> (aux, grads)``: a gradient rule
    replacing the plain one (at most one selected method may have one);
  - ``gate_gradients(spec, grads, hparams, step, total_steps) -> grads``: before the optimizer;
  - ``multipliers(spec, hparams, params, step, total_steps) -> tree``: per-parameter factors
    of the optimizer's updates, multiplied together with the other methods';
  - ``init_extra(spec, params) -> dict`` / ``update_extra(spec, extra, params, hparams) ->
    dict``: state kept beside the weights and updated after each step;
  - ``eval_variants(spec, variables, extra, anchor) -> {name: variables}``: weights evaluated
    besides the final ones, the reported ones chosen on validation;
  - ``wrap_model(spec, model) -> model`` and ``check_params(spec, params)``: a model
    transformation and its check against the initial parameters;
  - ``validate(spec)``: raises ValueError on settings that cannot work together.
  """
  name: str
  traced: Mapping[str, float] = dataclasses.field(default_factory=dict)  # key -> default.
  # Traced keys whose values must lie in [lo, hi): checked when a run is planned.
  ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
  static: Mapping[str, Setting] = dataclasses.field(default_factory=dict)
  needs_anchor: bool = False
  default_freeze: str = ""  # The ``config.freeze`` a run of the method gets when it sets none.
  validate: Callable | None = None
  loss: Callable | None = None
  forward_params: Callable | None = None
  gradients: Callable | None = None
  gate_gradients: Callable | None = None
  multipliers: Callable | None = None
  init_extra: Callable | None = None
  update_extra: Callable | None = None
  eval_variants: Callable | None = None
  wrap_model: Callable | None = None
  check_params: Callable | None = None


# ---------------------------------------------------------------------------------------------
# Helpers the methods share.


def paths(params: Any) -> dict[tuple[str, ...], Any]:
  return traverse_util.flatten_dict(params)


def map_paths(params: Any, fn: Callable[[str], Any]) -> Any:
  """A pytree like ``params`` with ``fn('/'-joined path)`` at each leaf."""
  return traverse_util.unflatten_dict({path: fn("/".join(path)) for path in paths(params)})


def anchored(spec: AdaptSpec, params: Any) -> Any:
  """True where a parameter came from the pretrained model (not ``init.reinit``/``dont_load``,
  not a LoRA adapter)."""
  fresh = re.compile(spec.fresh) if spec.fresh else None
  return map_paths(params, lambda path: not (
      (fresh and fresh.search(path)) or path.rsplit("/", 1)[-1] in lora_lib.LORA_PARAMS))
