"""Adaptation methods by name (``config.adapt.methods``), composed inside the one train step.

A method contributes some of:

- a loss term read from the step's context (``l2sp``, ``delta``, ``bss``);
- a gradient rule (``sam``: two evaluations per step);
- a per-parameter multiplier on the optimizer's updates (``llrd``: layer-wise learning-rate
  decay, each model naming its layers in ``models.LAYER_KEYS``; ``lpft``: a linear-probe phase
  then full fine-tuning, switched by a traced phase so the optimizer state keeps its shape;
  ``config.adapt.lr_groups``: (regex, multiplier) pairs, first match wins, the multipliers
  traced, scaling the whole update: learning rate and decoupled weight decay together);
- extra state updated after each step (``ema``);
- evaluation variants (``ema`` weights, ``wise_ft`` mixtures with the pretrained weights),
  among which the run's reported metrics are chosen on validation;
- a model transformation (``lora``: adapters on Dense layers, models/lora.py).

Strengths, radii, decays and phases are traced hyperparameters (train/hparams.py), so a grid
over them compiles once; which methods run, and settings that shape the program (BSS's k,
WiSE-FT's coefficients, LoRA's rank) are static. Frozen pytrees (the pretrained ``anchor``
that L2-SP, DELTA and WiSE-FT read) enter the step once, shared by a group's runs, not stacked.
BitFit and plain freezing are ``config.freeze`` regexes (``BITFIT_FREEZE``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from lowres_jax.models import LAYER_KEYS
from lowres_jax.models import lora as lora_lib
from lowres_jax.train import regularizers
from lowres_jax.train.hparams import DEFAULTS as TRACED_DEFAULTS, GROUP_SCALES

METHODS = ("l2sp", "delta", "bss", "sam", "ema", "llrd", "lpft", "wise_ft", "lora")
NEEDS_ANCHOR = ("l2sp", "delta", "wise_ft")
# Trains biases (all of them, LayerNorm's too) and the head: BitFit (Ben Zaken et al. 2022).
BITFIT_FREEZE = r"^(?!head/)(?!.*/bias$)"
HEAD = re.compile(r"^head/")


# config.adapt's static settings and their defaults (the traced ones are in hparams.DEFAULTS).
# The LoRA targets match the attention projections of ViT and BERT and also their MLP's output
# projection ('mlp_out'); 'attention/(query|key|value|out)$' keeps to attention.
STATIC_DEFAULTS: dict[str, Any] = {
    "bss_k": 1, "delta_output": "pre_logits", "wise_ft": (0.25, 0.5, 0.75), "lr_groups": (),
    "lora_rank": 8, "lora_alpha": 16.0, "lora_targets": r"(query|key|value|out)$",
}


def config_defaults() -> dict[str, Any]:
  """Every ``config.adapt`` key with its default, no method selected: the group configs carry so
  that each setting is visible (and a sweep can override it)."""
  traced = {key.split(".", 1)[1]: value for key, value in TRACED_DEFAULTS.items()
            if key.startswith("adapt.")}
  return {"methods": (), **traced, **STATIC_DEFAULTS}


@dataclasses.dataclass(frozen=True)
class AdaptSpec:
  """The static part of ``config.adapt``."""
  methods: tuple[str, ...] = ()
  fresh: str = ""             # Regex of params not loaded from the pretrained model (no anchor).
  model_name: str = ""        # Whose ``layer_key`` names the layers (llrd).
  bss_k: int = 1
  delta_output: str = "pre_logits"
  wise_ft: tuple[float, ...] = ()
  lr_groups: tuple[str, ...] = ()  # Regexes; their multipliers are traced (hparams.GROUP_SCALES).
  lora: lora_lib.LoraSpec | None = None

  def __post_init__(self):
    unknown = sorted(set(self.methods) - set(METHODS))
    if unknown:
      raise ValueError(f"unknown adaptation method(s) {unknown}; known: {list(METHODS)}")
    if "llrd" in self.methods and self.model_name not in LAYER_KEYS:
      raise ValueError(f"model {self.model_name!r} names no layers for 'llrd'; models that do: "
                       f"{sorted(LAYER_KEYS)}")

  def uses(self, name: str) -> bool:
    return name in self.methods

  @property
  def needs_anchor(self) -> bool:
    return any(m in self.methods for m in NEEDS_ANCHOR)


def _paths(params: Any) -> dict[tuple[str, ...], Any]:
  return traverse_util.flatten_dict(params)


def _map_paths(params: Any, fn: Callable[[str], Any]) -> Any:
  """A pytree like ``params`` with ``fn('/'-joined path)`` at each leaf."""
  return traverse_util.unflatten_dict({path: fn("/".join(path)) for path in _paths(params)})


def anchored(spec: AdaptSpec, params: Any) -> Any:
  """True where a parameter came from the pretrained model (not ``init.reinit``/``dont_load``,
  not a LoRA adapter)."""
  fresh = re.compile(spec.fresh) if spec.fresh else None
  return _map_paths(params, lambda path: not (
      (fresh and fresh.search(path)) or path.rsplit("/", 1)[-1] in lora_lib.LORA_PARAMS))


# ---------------------------------------------------------------------------------------------
# Loss terms.


@dataclasses.dataclass(frozen=True)
class PenaltyContext:
  params: Any
  outputs: Mapping[str, jax.Array]          # The model's named intermediates on the batch.
  anchor_outputs: Callable[[], Mapping[str, jax.Array]]  # The frozen pretrained model's.
  frozen: Mapping[str, Any]                 # {'anchor': pretrained variables} when needed.
  hparams: Mapping[str, jax.Array]


def penalty(spec: AdaptSpec, ctx: PenaltyContext) -> jax.Array:
  """The sum of the methods' loss terms (0 when none is selected)."""
  total = jnp.float32(0.0)
  if spec.uses("l2sp"):
    total += regularizers.l2_sp(ctx.params, ctx.frozen["anchor"]["params"],
                                anchored(spec, ctx.params), ctx.hparams["l2sp"],
                                ctx.hparams["l2sp_head"])
  if spec.uses("delta"):
    total += ctx.hparams["delta"] * regularizers.feature_distance(
        _output(ctx.outputs, spec.delta_output), _output(ctx.anchor_outputs(),
                                                         spec.delta_output))
  if spec.uses("bss"):
    total += ctx.hparams["bss"] * regularizers.smallest_singular_values_squared(
        ctx.outputs["pre_logits"], spec.bss_k)
  return total


def _output(outputs: Mapping[str, jax.Array], name: str) -> jax.Array:
  if name not in outputs:
    raise ValueError(f"config.adapt.delta_output = {name!r} is not an output of this model; "
                     f"it returns {sorted(outputs)}")
  return outputs[name]


# ---------------------------------------------------------------------------------------------
# Gradient rule.


def sam_gradients(grad_fn: Callable[[Any], tuple[Any, Any]], params: Any, rho: jax.Array,
                  trainable: Any) -> tuple[Any, Any]:
  """SAM (Foret et al. 2021): the gradient at ``w + rho g / ||g||``, ``g`` the gradient at ``w``
  (same batch, same dropout). Returns (first evaluation's aux, the perturbed point's gradient).

  Written here rather than with ``optax.contrib.sam``, which spends one optimizer step on the
  ascent and one on the descent: that would halve the schedule's steps and make a SAM run's
  step count mean something different from every other run's.
  """
  aux, grads = grad_fn(params)
  grads = jax.tree.map(lambda g, t: g if t else jnp.zeros_like(g), grads, trainable)
  norm = optax.tree.norm(grads)
  scale = rho / jnp.maximum(norm, 1e-12)
  perturbed = jax.tree.map(lambda p, g: p + scale * g, params, grads)
  _, sharp_grads = grad_fn(perturbed)
  return aux, sharp_grads


# ---------------------------------------------------------------------------------------------
# Multipliers on the updates.


def layer_depths(spec: AdaptSpec, params: Any) -> Any:
  """Per parameter, how many layers it sits below the top (the head and anything above the
  model's last named layer: 0). Layer-wise decay scales its updates by ``decay ** depth``."""
  layer_key = LAYER_KEYS[spec.model_name]
  keys = {path: layer_key(path) for path in ("/".join(p) for p in _paths(params))}
  ranks = {key: i for i, key in enumerate(sorted({k for k in keys.values() if k is not None}))}
  return _map_paths(params, lambda path: 0 if keys[path] is None
                    else len(ranks) - ranks[keys[path]])


def group_scales(spec: AdaptSpec, scales: jax.Array, params: Any) -> Any:
  """Each parameter's ``lr_groups`` multiplier: the traced ``scales[i]`` of the first regex
  that matches its path, 1 where none does."""
  regexes = [re.compile(pattern) for pattern in spec.lr_groups]

  def scale(path: str):
    index = next((i for i, regex in enumerate(regexes) if regex.search(path)), None)
    return jnp.float32(1.0) if index is None else scales[index]

  return _map_paths(params, scale)


def update_multipliers(spec: AdaptSpec, hparams: Mapping[str, jax.Array], params: Any,
                       step: jax.Array, total_steps: int) -> Any | None:
  """Per-parameter multipliers of the updates (None: all ones, nothing to do)."""
  if not (spec.uses("llrd") or spec.uses("lpft") or spec.lr_groups):
    return None
  multipliers = jax.tree.map(lambda _: jnp.float32(1.0), params)
  if spec.lr_groups:
    multipliers = jax.tree.map(lambda m, s: m * s, multipliers,
                               group_scales(spec, hparams[GROUP_SCALES], params))
  if spec.uses("llrd"):
    multipliers = jax.tree.map(lambda m, depth: m * hparams["layer_decay"] ** depth, multipliers,
                               layer_depths(spec, params))
  if spec.uses("lpft"):
    multipliers = jax.tree.map(lambda m, gate: m * gate, multipliers,
                               probe_gates(params, hparams["lpft_probe"], step, total_steps))
  return multipliers


def probe_gates(params: Any, probe_fraction: jax.Array, step: jax.Array,
                total_steps: int) -> Any:
  """LP-FT (Kumar et al. 2022): 0 for every non-head parameter during the first
  ``probe_fraction`` of the steps (the linear probe), 1 after (fine-tuning from the probed
  head); the head always 1."""
  tuning = (step >= jnp.round(probe_fraction * total_steps)).astype(jnp.float32)
  return _map_paths(params, lambda path: jnp.float32(1.0) if HEAD.search(path) else tuning)


def gate_gradients(spec: AdaptSpec, grads: Any, hparams, step, total_steps: int) -> Any:
  """LP-FT's probe phase also zeroes the backbone's gradients before the optimizer, so its
  momentum / Adam moments start from zero when fine-tuning begins."""
  if not spec.uses("lpft"):
    return grads
  return jax.tree.map(lambda g, gate: g * gate.astype(g.dtype), grads,
                      probe_gates(grads, hparams["lpft_probe"], step, total_steps))


def scale_updates(updates: Any, multipliers: Any | None) -> Any:
  if multipliers is None:
    return updates
  return jax.tree.map(lambda u, m: u * m.astype(u.dtype), updates, multipliers)


# ---------------------------------------------------------------------------------------------
# Extra state and evaluation variants.


def initial_extra(spec: AdaptSpec, params: Any) -> dict:
  return {"ema": jax.tree.map(lambda p: p, params)} if spec.uses("ema") else {}


def update_extra(spec: AdaptSpec, extra: dict, params: Any,
                 hparams: Mapping[str, jax.Array]) -> dict:
  """EMA of the weights after each step: ``ema <- d ema + (1 - d) params``."""
  if not spec.uses("ema"):
    return extra
  decay = hparams["ema_decay"]
  return {**extra, "ema": jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p,
                                       extra["ema"], params)}


def eval_variants(spec: AdaptSpec, variables: dict, extra: dict,
                  anchor: dict | None) -> dict[str, dict]:
  """Named variables to evaluate besides the final ones (stacked over runs, like them)."""
  variants = {}
  if spec.uses("ema"):
    variants["ema"] = {**variables, "params": extra["ema"]}
  if spec.uses("wise_ft"):
    for alpha in spec.wise_ft:
      variants[f"wise_ft_{alpha:g}"] = wise_ft_mixture(spec, variables, anchor, alpha)
  return variants


def wise_ft_mixture(spec: AdaptSpec, variables: dict, anchor: dict, alpha: float) -> dict:
  """WiSE-FT (Wortsman et al. 2022): ``alpha * fine-tuned + (1 - alpha) * pretrained``.

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
  pretrained, is_anchored = _paths(anchor["params"]), _paths(anchored(spec, variables["params"]))
  params = traverse_util.unflatten_dict({
      path: (mix(value, pretrained[path]) if is_anchored[path]
             else value * alpha if path[-1] == "lora_b" else value)
      for path, value in _paths(variables["params"]).items()})
  state = {name: jax.tree.map(mix, variables[name], anchor[name])
           for name in variables if name != "params" and name in anchor}
  return {**variables, **state, "params": params}
