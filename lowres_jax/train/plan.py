"""A run's config read once, completely, into plain values.

Reading every field up front (through ``TrackedConfig``) is what lets a run refuse keys that no
code reads before it spends a second training. The rest of the trainer sees only ``RunPlan``.
"""

from __future__ import annotations

import dataclasses
import math
import functools
import re
from typing import Any

import ml_collections
import numpy as np

from lowres_jax.compress import distill as distill_lib
from lowres_jax.compress.prune import CONFIG_DEFAULTS as PRUNE_DEFAULTS, PruneSpec
from lowres_jax.compress.quantize import CONFIG_DEFAULTS as QUANTIZE_DEFAULTS, QuantizeSpec
from lowres_jax.config import ConfigError, TrackedConfig, parse_duration
from lowres_jax.data.augment import AUGMENTATIONS, STRENGTH_RANGES, STRENGTH_READERS
from lowres_jax.data.fewshot import ALL_SHOTS
from lowres_jax.data import modality as modality_lib, user_files
from lowres_jax.data.user_files import FileDataOptions
from lowres_jax.models import MODELS
from lowres_jax.train import hparams as hparams_lib
from lowres_jax.train.head_init import HEAD_INITS
from lowres_jax.train.probes import PROBES
from lowres_jax.train import adapt as adapt_lib
from lowres_jax.train.adapt import AdaptSpec

REFIT_HEADS = ("class_means", "ridge", "logistic")  # Those that read the labelled examples.
from lowres_jax.train.losses import LOSS_HPARAMS, LOSSES
from lowres_jax.train.selection import CONFIG_DEFAULTS as SELECTION_DEFAULTS, SelectionSpec
from lowres_jax.train.optim import OPTIMIZERS
from lowres_jax.train.step import FORWARD_MODES, SAMPLERS
from lowres_jax.weights.init import InitError, InitSpec


@dataclasses.dataclass(frozen=True)
class RunPlan:
  # What varies between runs that share a compiled step (traced values, or labels).
  seed: int
  method: str
  traced: tuple[tuple[str, float], ...]  # (name, value) for each key of hparams.TRACED.
  group_scales: tuple[float, ...]  # config.adapt.lr_groups' multipliers (traced; regexes static).
  # Data.
  dataset: str
  data_dir: str
  classes: tuple[int, ...]
  shots: int
  val_per_class: int
  imbalance: float      # Long-tail training sets: head / tail class size (1: balanced).
  selection: SelectionSpec  # Label-budget runs (train/selection.py); strategy '' is off.
  train_split: str
  test_split: str
  tokenizer: str        # Text datasets: tokenizer.json path or package:/hf: spec; '' for images.
  max_length: int       # Text datasets: tokens per example (one compiled shape).
  label_template: str   # Text datasets: how a class name reads, for head_init='label_names'.
  # How a user's files (folder:/csv:/jsonl:) become a dataset, and which features a text
  # dataset's text and label are (data/user_files.py); defaults for every other dataset.
  data_options: FileDataOptions
  # Model and where its weights come from.
  model_name: str
  model_kwargs: tuple[tuple[str, Any], ...]
  init: InitSpec
  source: ml_collections.ConfigDict | None
  cache_dir: str
  # Optimisation.
  optimizer: str
  momentum: float
  warmup: float
  grad_clip: float
  freeze: str
  batch_size: int
  duration: str | int
  augment: tuple[str, ...]
  crop_pad: int
  augment_ops: int   # RandAugment's ops per example (config.augment.num_ops).
  forward_mode: str
  loss: str
  sampler: str       # 'uniform' or 'class_balanced' batches (train/step.py).
  head_init: str
  head_scale: float
  head_l2: float     # Penalty of the fitted heads (head_init / head_refit 'ridge', 'logistic').
  head_refit: str    # '' or a head initialiser fitted again on the trained encoder at the end.
  adapt: AdaptSpec   # Adaptation methods and their static settings (train/adapt/).
  # Distillation (compress/distill.py): teacher workdirs, unlabelled pool size and batch.
  teachers: tuple[str, ...]
  pool_size: int
  pool_batch: int
  prune: PruneSpec   # Magnitude pruning (compress/prune.py); method '' is off.
  quantize: QuantizeSpec  # int8 quantization (compress/quantize.py); mode '' is off.
  # Evaluation, logging, checkpoints.
  eval_batch_size: int
  eval_every: int
  eval_probes: tuple[str, ...]  # Probes fitted on the final embeddings (train/probes.py).
  # Post-hoc logit adjustment: validation and test logits minus tau * log(training prior).
  logit_adjust: float
  log_every: int
  checkpoint_every: int
  keep_checkpoints: int

  def static_part(self) -> "RunPlan":
    """The plan with per-run values blanked: runs with equal static parts can run stacked."""
    return dataclasses.replace(self, seed=0, method="",
                               traced=tuple((name, 0.0) for name, _ in self.traced),
                               group_scales=(0.0,) * len(self.group_scales))

  @property
  def modality(self) -> modality_lib.Images | modality_lib.Text:
    """What the inputs are (data/modality.py): images, or text with its tokenizer."""
    return modality_lib.of(self.tokenizer, self.max_length)

  def hparams(self) -> dict[str, Any]:
    values: dict[str, Any] = dict(self.traced)
    if self.group_scales:
      values[hparams_lib.GROUP_SCALES] = list(self.group_scales)
    return values

  def __hash__(self):  # ConfigDicts are unhashable; the source is identified by its content.
    return hash(dataclasses.astuple(dataclasses.replace(self, source=None))
                + (repr(self.source),))


def _tuple(value: Any) -> tuple:
  return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def read_plan(config: ml_collections.ConfigDict, reads: set[str] | None = None) -> RunPlan:
  """Reads every field of a run config; raises ConfigError for any field left unread."""
  c = TrackedConfig(config, reads)
  init = _read_init(c)
  source = None
  if init.kind == "source" and not ("source" in c and len(c.source.to_dict())):
    raise ConfigError("config.init.kind = 'source' pretrains on config.source, which is empty "
                      "here: give it a full run config (see configs/default.py)")
  if init.kind == "source":
    source = ml_collections.ConfigDict(c.source.to_dict())
  elif "source" in c:
    c.source.mark_all_read()  # Documented: only an init.kind='source' run uses it.
  adapt, group_scales = _read_adapt(c, init)
  plan = RunPlan(
      seed=int(c.seed), method=str(c.method),
      traced=tuple((name, _traced(c, key)) for name, key in hparams_lib.TRACED.items()),
      group_scales=group_scales,
      dataset=c.data.name, data_dir=c.data.data_dir,
      classes=tuple(int(k) for k in _tuple(c.data.classes)), shots=int(c.data.shots),
      val_per_class=int(c.data.val_per_class),
      imbalance=float(_optional(c.data, "imbalance", 1.0)),
      selection=_read_selection(c),
      train_split=c.data.train_split,
      tokenizer=_optional(c.data, "tokenizer", ""),
      max_length=int(_optional(c.data, "max_length", 0)),
      label_template=_optional(c.data, "label_template", "{}"),
      data_options=_read_data_options(c),
      test_split=c.data.test_split,
      model_name=c.model.name,
      model_kwargs=tuple(sorted((k, _freeze(v)) for k, v in c.model.to_dict().items()
                                if k != "name")),
      init=init, source=source, cache_dir=c.cache_dir,
      optimizer=c.optim.name, momentum=float(c.optim.momentum), warmup=float(c.optim.warmup),
      grad_clip=float(c.optim.grad_clip), freeze=c.freeze,
      batch_size=int(c.train.batch_size), duration=c.train.duration,
      augment=tuple(_tuple(c.train.augment)) if c.train.augment else (),
      crop_pad=int(c.train.crop_pad), augment_ops=_read_augment(c),
      forward_mode=c.train.forward_mode,
      loss=_optional(c.train, "loss", "cross_entropy"),
      sampler=_optional(c.train, "sampler", "uniform"),
      head_init=_optional(c, "head_init", "zero"),
      head_scale=float(_optional(c, "head_scale", 10.0)),
      head_l2=float(_optional(c, "head_l2", 1e-3)),
      head_refit=_optional(c, "head_refit", ""),
      adapt=adapt,
      **_read_distill(c),
      prune=_read_switched(c, "prune", PRUNE_DEFAULTS, "method", PruneSpec),
      quantize=_read_switched(c, "quantize", QUANTIZE_DEFAULTS, "mode", QuantizeSpec),
      eval_batch_size=int(c.eval.batch_size), eval_every=int(c.eval.every),
      eval_probes=tuple(_tuple(_optional(c.eval, "probes", ()) or ())),
      logit_adjust=float(_optional(c.eval, "logit_adjust", 0.0)),
      log_every=int(c.log_every), checkpoint_every=int(c.checkpoint_every),
      keep_checkpoints=int(c.keep_checkpoints))
  if "pipeline" in c and tuple(c.pipeline):
    raise ConfigError(f"config.pipeline = {tuple(c.pipeline)} is a chain of runs: run it with "
                      "python -m lowres_jax.main (lowres_jax/pipeline.py); a single run or a "
                      "sweep needs config.pipeline = ()")
  if "stages" in c:  # The pipeline's overrides: read by lowres_jax/pipeline.py.
    c.stages.mark_all_read()
  c.assert_all_read()
  if not plan.freeze and adapt_lib.default_freeze(plan.adapt):  # LoRA: adapters and head.
    plan = dataclasses.replace(plan, freeze=adapt_lib.default_freeze(plan.adapt))
  _validate(plan)
  return plan


# Keys that only a user's files read; a built-in or catalogue dataset would ignore them.
_FILE_ONLY_KEYS = ("id_field", "image_size", "image_channels", "test", "test_fraction",
                   "split_seed", "skip_bad_files")


def _read_data_options(c: TrackedConfig) -> FileDataOptions:
  """config.data's keys for a user's files (optional: other configs never set them)."""
  given = {key: getattr(c.data, key) for key in user_files.OPTION_KEYS if key in c.data}
  stray = [key for key in _FILE_ONLY_KEYS if key in given]
  if stray and not user_files.is_file_dataset(c.data.name):
    raise ConfigError(f"config.data.{stray[0]} shapes a dataset read from your files "
                      f"(config.data.name = folder:PATH, csv:PATH or jsonl:PATH); "
                      f"{c.data.name!r} is not one: remove the key")
  try:
    return FileDataOptions(**given)
  except TypeError as error:
    raise ConfigError(f"config.data: {error}") from None


def _optional(config: TrackedConfig, key: str, default: Any) -> Any:
  """A key that configs written before it existed may lack (image configs have no tokenizer)."""
  return getattr(config, key) if key in config else default


def _dotted(config: TrackedConfig, key: str) -> Any:
  for part in key.split("."):
    config = getattr(config, part)
  return config


def _traced(config: TrackedConfig, key: str) -> float:
  """A traced hyperparameter's value; keys of hparams.DEFAULTS may be left out."""
  group, _, name = key.rpartition(".")
  if key in hparams_lib.DEFAULTS and not (group in config and name in getattr(config, group)):
    return hparams_lib.DEFAULTS[key]
  return float(_dotted(config, key))


def _read_adapt(c: TrackedConfig, init: InitSpec) -> tuple[AdaptSpec, tuple[float, ...]]:
  """The static spec, and the lr_groups multipliers (traced, so a grid over them compiles
  once). Which key belongs to which method, and its default, come from the methods'
  declarations (train/adapt/)."""
  if "adapt" not in c:
    return AdaptSpec(model_name=c.model.name), ()
  adapt = c.adapt
  defaults = adapt_lib.config_defaults()
  methods = tuple(_tuple(adapt.methods)) if "methods" in adapt and adapt.methods else ()
  unknown_methods = sorted(set(methods) - set(adapt_lib.METHODS))
  if unknown_methods:
    raise ConfigError(f"config.adapt.methods has unknown method(s) {unknown_methods}; known: "
                      f"{list(adapt_lib.METHODS)}")
  unknown = sorted(set(adapt.to_dict()) - set(defaults))
  if unknown:
    raise ConfigError(f"config.adapt has unknown key(s) {unknown}; known: {sorted(defaults)}")
  adapt.mark_all_read()  # Every key is checked here: known, and used only by selected methods.
  get = lambda key: _freeze(getattr(adapt, key)) if key in adapt else defaults[key]
  # A setting changed for a method that is not selected would silently do nothing.
  owners = adapt_lib.owners()
  unused = sorted(key for key, method in owners.items()
                  if method not in methods and key in adapt
                  and _freeze(adapt.to_dict()[key]) != _freeze(defaults[key]))
  if unused:
    raise ConfigError(f"config.adapt sets {unused} but config.adapt.methods = {methods} does "
                      f"not select {sorted({owners[k] for k in unused})}; add the method "
                      "or leave the key at its default")
  static = adapt_lib.static_defaults()
  try:
    groups = tuple((str(pattern), float(scale)) for pattern, scale in get("lr_groups"))
    for pattern, scale in groups:
      re.compile(pattern)
      if not (np.isfinite(scale) and scale >= 0):
        raise ValueError(f"lr_groups multiplier {scale} for {pattern!r} must be finite and >= 0")
    spec = adapt_lib.make_spec(
        methods, fresh="|".join(r for r in (init.reinit, init.dont_load) if r),
        model_name=c.model.name, lr_groups=tuple(pattern for pattern, _ in groups),
        **{key: get(key) for key in static if owners[key] in methods})
    adapt_lib.check_ranges(methods, {key: float(get(key))
                                     for key in adapt_lib.traced_defaults()})
  except (ValueError, TypeError, re.error) as error:
    raise ConfigError(f"config.adapt: {error}") from None
  readers = adapt_lib.anchor_readers(methods)
  if readers and init.source_seed == "run":
    raise ConfigError("config.init.source_seed = 'run' gives each run its own source model, but "
                      f"{readers} read one pretrained model shared by the group; use "
                      "source_seed = 'shared'")
  if readers and init.kind == "scratch":
    raise ConfigError(f"config.adapt.methods = {methods}: {readers} compare with the "
                      "pretrained weights, and config.init.kind = 'scratch' has none")
  return spec, tuple(scale for _, scale in groups)


AUGMENT_STATIC_DEFAULTS = {"num_ops": 2}


def augment_defaults() -> dict:
  """config.augment as a config that leaves it out reads it."""
  return {**hparams_lib.group_defaults("augment"), **AUGMENT_STATIC_DEFAULTS}


def _read_augment(c: TrackedConfig) -> int:
  """config.augment: the ops' traced strengths (read with the other traced keys) and RandAugment's
  static number of ops per example, which is returned."""
  if "augment" not in c:
    return AUGMENT_STATIC_DEFAULTS["num_ops"]
  traced = {key.split(".", 1)[1] for key in hparams_lib.TRACED.values()
            if key.startswith("augment.")}
  unknown = sorted(set(c.augment.to_dict()) - traced - set(AUGMENT_STATIC_DEFAULTS))
  if unknown:
    raise ConfigError(f"config.augment has unknown key(s) {unknown}; known: "
                      f"{sorted(traced | set(AUGMENT_STATIC_DEFAULTS))}")
  c.augment.mark_all_read()
  num_ops = int(_optional(c.augment, "num_ops", AUGMENT_STATIC_DEFAULTS["num_ops"]))
  if num_ops < 1:
    raise ConfigError(f"config.augment.num_ops = {num_ops} must be >= 1")
  return num_ops


def _read_selection(c: TrackedConfig) -> SelectionSpec:
  """config.data.selection: a label budget chosen by a strategy (train/selection.py)."""
  if "selection" not in c.data:
    return SelectionSpec()
  settings = c.data.selection.to_dict()
  unknown = sorted(set(settings) - set(SELECTION_DEFAULTS))
  if unknown:
    raise ConfigError(f"config.data.selection has unknown key(s) {unknown}; known: "
                      f"{sorted(SELECTION_DEFAULTS)}")
  c.data.selection.mark_all_read()
  try:
    return SelectionSpec(**{**SELECTION_DEFAULTS, **settings})
  except (ValueError, TypeError) as error:
    raise ConfigError(f"config.data.selection: {error}") from None


def _read_distill(c: TrackedConfig) -> dict[str, Any]:
  """config.distill's static fields; its traced ones are read with the others."""
  defaults = distill_lib.STATIC_DEFAULTS
  if "distill" not in c:
    return {"teachers": (), "pool_size": 0, "pool_batch": 0}
  distill = c.distill
  traced = {key.split(".", 1)[1]: value for key, value in hparams_lib.DEFAULTS.items()
            if key.startswith("distill.")}
  unknown = sorted(set(distill.to_dict()) - set(defaults) - set(traced))
  if unknown:
    raise ConfigError(f"config.distill has unknown key(s) {unknown}; known: "
                      f"{sorted(set(defaults) | set(traced))}")
  distill.mark_all_read()  # Static keys read below; traced ones by _traced.
  get = lambda key: _freeze(getattr(distill, key)) if key in distill else defaults[key]
  teachers = tuple(str(t) for t in _tuple(get("teachers")) if t)
  fields = {"teachers": teachers, "pool_size": int(get("pool_size")),
            "pool_batch": int(get("pool_batch")) or int(c.train.batch_size)}
  changed = sorted(key for key in distill.to_dict()
                   if key != "teachers" and _freeze(getattr(distill, key)) != _freeze(
                       defaults.get(key, traced.get(key))))
  if not teachers and changed:
    raise ConfigError(f"config.distill sets {changed} but names no teacher; set "
                      "config.distill.teachers to finished runs' workdirs, or leave them at their "
                      "defaults")
  if fields["pool_size"] < 0:
    raise ConfigError(f"config.distill.pool_size = {fields['pool_size']} must be >= 0 (0: "
                      "distil on the labelled batch only)")
  if "mixup" in distill and float(distill.mixup) > 0 and not fields["pool_size"]:
    raise ConfigError("config.distill.mixup mixes the unlabelled pool's inputs, and "
                      "config.distill.pool_size is 0; set a pool size or mixup = 0")
  if not fields["pool_size"]:
    fields["pool_batch"] = 0
  return fields


def _read_switched(c: TrackedConfig, group: str, defaults: dict, switch: str, spec_type):
  """A settings group turned on by one key (``prune.method``, ``quantize.mode``): unknown keys
  and settings changed while it is off are errors (they would silently do nothing)."""
  if group not in c:
    return spec_type()
  settings = getattr(c, group).to_dict()
  unknown = sorted(set(settings) - set(defaults))
  if unknown:
    raise ConfigError(f"config.{group} has unknown key(s) {unknown}; known: {sorted(defaults)}")
  changed = sorted(k for k, v in settings.items() if k != switch and v != defaults[k])
  if not settings.get(switch) and changed:
    raise ConfigError(f"config.{group} sets {changed} but config.{group}.{switch} is '' (off); "
                      f"set {switch} or leave them at their defaults")
  try:
    return spec_type(**settings)
  except (ValueError, TypeError, re.error) as error:
    raise ConfigError(f"config.{group}: {error}") from None


def _read_init(c: TrackedConfig) -> InitSpec:
  if not isinstance(c.init, TrackedConfig):
    raise ConfigError(
        f"config.init = {c.init!r} must be a field group: init.kind (scratch | source | "
        "workdir | checkpoint), init.path, init.reinit, init.dont_load")
  fields = {f.name for f in dataclasses.fields(InitSpec)}
  unknown = sorted(set(c.init.to_dict()) - fields)
  if unknown:
    raise ConfigError(f"config.init has unknown field(s) {unknown}; known: {sorted(fields)}")
  try:
    return InitSpec(**{name: getattr(c.init, name) for name in c.init.to_dict()})
  except InitError as error:
    raise ConfigError(str(error)) from None


def _freeze(value: Any) -> Any:
  return tuple(value) if isinstance(value, list) else value


def _validate_task_and_rates(plan: RunPlan, trains: bool) -> None:
  """Settings that would run and report nonsense: a one-class task (100% accuracy by
  construction), a negative seed, and a run that trains at a rate that is not a
  finite number of 0 or more (a negative one climbs the loss and still exits 0)."""
  if len(plan.classes) < 2:
    raise ConfigError(f"config.data.classes = {list(plan.classes)} is a task of one class, "
                      "whose accuracy is 100% by construction; name two or more classes, "
                      "e.g. --config.data.classes='(5,6,7,8,9)'")
  if plan.seed < 0:
    raise ConfigError(f"config.seed = {plan.seed} must be 0 or more")
  lr = dict(plan.traced).get("lr")
  # Rate 0 stays allowed: a step that keeps the weights (tests write an initial head so).
  if trains and lr is not None and not (math.isfinite(lr) and lr >= 0):
    raise ConfigError(f"config.optim.lr = {lr} must be a finite number of 0 or more (usually "
                      "positive) for a run that trains (config.train.duration > 0)")


def _validate(plan: RunPlan) -> None:
  is_text = plan.modality.is_text
  if user_files.is_file_dataset(plan.dataset) and user_files.is_text(plan.dataset) != is_text:
    raise ConfigError(
        f"config.data.name = {plan.dataset!r} is a {plan.modality.kind} "
        f"config's dataset only if it is {'csv:/jsonl:' if is_text else 'folder:'}: "
        "images come as folder:PATH with an image config (configs/image_efficientnet.py), "
        "texts as csv:PATH or jsonl:PATH with a text config (configs/text_fortunes.py)")
  if not plan.classes:
    raise ConfigError("config.data.classes is empty; name the classes of the task")
  if len(set(plan.classes)) != len(plan.classes):
    raise ConfigError(f"config.data.classes repeats a class: {plan.classes}")
  if min(plan.classes) < 0:
    raise ConfigError(f"config.data.classes = {plan.classes} has a negative class; classes are "
                      "the dataset's label numbers (0, 1, ...)")
  for key, size in (("train.batch_size", plan.batch_size),
                    ("eval.batch_size", plan.eval_batch_size)):
    if size <= 0:
      raise ConfigError(f"config.{key} = {size} must be positive (a multiple of the number of "
                        "devices)")
  amount, _ = parse_duration(plan.duration, "config.train.duration")
  _validate_task_and_rates(plan, trains=amount > 0)
  if plan.log_every <= 0:
    raise ConfigError("config.log_every must be positive")
  for key, every in (("eval.every", plan.eval_every),
                     ("checkpoint_every", plan.checkpoint_every)):
    if every < 0 or every % plan.log_every:
      raise ConfigError(f"config.{key} = {every} must be 0 (only at the end) or a multiple of "
                        f"config.log_every = {plan.log_every}: the trainer stops only at "
                        "log boundaries")
  if not 0.0 <= plan.warmup < 1.0:
    raise ConfigError(f"config.optim.warmup = {plan.warmup} is the warm-up fraction of training; "
                      "it must be in [0, 1)")
  if plan.selection.active:
    if plan.shots != 0:
      raise ConfigError(f"config.data.selection.strategy = {plan.selection.strategy!r} labels "
                        f"budget = {plan.selection.budget} examples in all: set "
                        f"config.data.shots = 0 (it is {plan.shots})")
    if plan.imbalance != 1.0:
      raise ConfigError("config.data.imbalance shapes a k-shot draw per class; a label-budget "
                        "run (config.data.selection) chooses its own: leave imbalance at 1")
  elif plan.shots != ALL_SHOTS and plan.shots < 1:
    raise ConfigError(f"config.data.shots = {plan.shots}: use a positive count, or -1 for all")
  if plan.imbalance < 1.0:
    raise ConfigError(f"config.data.imbalance = {plan.imbalance} is the head / tail class size "
                      "ratio: it must be >= 1 (1: balanced)")
  if plan.imbalance != 1.0 and plan.shots == ALL_SHOTS:
    raise ConfigError("config.data.imbalance > 1 needs config.data.shots = the head class's "
                      "count (not -1)")
  _check_named(plan.sampler, SAMPLERS, "config.train.sampler")
  if plan.logit_adjust < 0:
    raise ConfigError(f"config.eval.logit_adjust = {plan.logit_adjust} must be >= 0 (0: off)")
  _check_data_settings(plan)
  traced = plan.hparams()
  for loss, key in LOSS_HPARAMS.items():
    name = next(n for n, k in hparams_lib.TRACED.items() if k == key)
    if loss != plan.loss and traced[name] != hparams_lib.DEFAULTS[key]:
      raise ConfigError(f"config.{key} = {traced[name]} is read by the {loss!r} loss, but "
                        f"config.train.loss = {plan.loss!r}; set the loss or leave the key at "
                        f"its default {hparams_lib.DEFAULTS[key]}")
  if plan.val_per_class < 0:
    raise ConfigError(f"config.data.val_per_class = {plan.val_per_class} must be >= 0")
  if plan.train_split == plan.test_split:
    raise ConfigError(f"config.data.train_split and test_split are both {plan.test_split!r}: "
                      "the test set would hold the training examples")
  _check_named(plan.optimizer, OPTIMIZERS, "config.optim.name")
  _check_named(plan.forward_mode, FORWARD_MODES, "config.train.forward_mode")
  _check_named(plan.loss, LOSSES, "config.train.loss")
  _check_named(plan.head_init, HEAD_INITS, "config.head_init")
  for probe in plan.eval_probes:
    _check_named(probe, PROBES, "config.eval.probes")
  if plan.keep_checkpoints < 0:
    raise ConfigError(f"config.keep_checkpoints = {plan.keep_checkpoints} must be >= 0 (0 "
                      "deletes a run's checkpoints once it has finished)")
  if plan.head_refit:
    _check_named(plan.head_refit, REFIT_HEADS, "config.head_refit")
  if plan.head_l2 < 0 or (plan.head_l2 == 0 and "ridge" in (plan.head_init, plan.head_refit)):
    raise ConfigError(f"config.head_l2 = {plan.head_l2} must be >= 0 (> 0 for a ridge head: "
                      "with more embedding dimensions than examples it has no unique solution)")
  if is_text and plan.max_length <= 0:
    raise ConfigError("config.data.max_length must be positive for a text dataset "
                      f"(config.data.tokenizer = {plan.tokenizer!r})")
  if plan.head_init == "label_names" and not is_text:
    raise ConfigError("config.head_init = 'label_names' embeds the class names as text: it "
                      "needs a text encoder and config.data.tokenizer")
  for name in plan.augment:
    _check_named(name, AUGMENTATIONS, "config.train.augment")
  applicable = plan.modality.augmentations()
  wrong_kind = [n for n in plan.augment if n not in applicable]
  if wrong_kind:
    kind, other = ("a text", "image") if is_text else ("an image", "text")
    raise ConfigError(f"config.train.augment names {wrong_kind}, {other} augmentations, for "
                      f"{kind} dataset; its ops are {applicable}")
  _check_named(plan.model_name, MODELS, "config.model.name")
  _check_model(plan)
  _check_distill(plan)
  if plan.init.kind == "source":
    source_dataset, source_classes = plan.source.data.name, set(_tuple(plan.source.data.classes))
    if source_dataset == plan.dataset and source_classes & set(plan.classes):
      raise ConfigError(
          f"source classes {sorted(source_classes)} overlap the task's classes "
          f"{list(plan.classes)} on {plan.dataset}: the source model would have trained on "
          "the task's validation and test classes. Use disjoint classes.")


def _augment_value(plan: RunPlan, key: str) -> float:
  if key == "num_ops":
    return plan.augment_ops
  name = next(n for n, k in hparams_lib.TRACED.items() if k == f"augment.{key}")
  return plan.hparams()[name]


def _check_data_settings(plan: RunPlan) -> None:
  """Augmentation strengths, imbalance corrections and label budgets: out-of-range values,
  settings no selected op reads, and corrections that would apply twice."""
  defaults = augment_defaults()
  for key, readers in STRENGTH_READERS.items():
    value = _augment_value(plan, key)
    if value != defaults[key] and not set(readers) & set(plan.augment):
      raise ConfigError(f"config.augment.{key} = {value} is read by {list(readers)}, none of "
                        f"which config.train.augment = {plan.augment} names; add one or leave "
                        f"it at its default {defaults[key]}")
    low, high = STRENGTH_RANGES.get(key, (1, float("inf")))
    if not low <= value <= high:
      raise ConfigError(f"config.augment.{key} = {value} must be in [{low}, {high}]")
  traced = plan.hparams()
  if not 0.0 <= traced["cb_beta"] < 1.0:
    raise ConfigError(f"config.train.cb_beta = {traced['cb_beta']} must be in [0, 1) (the "
                      "effective number (1 - beta^n) / (1 - beta) is undefined at 1)")
  if traced["focal_gamma"] < 0:
    raise ConfigError(f"config.train.focal_gamma = {traced['focal_gamma']} must be >= 0")
  # Each of these already corrects for the training prior; two together over-correct (a
  # balanced sampler's model has seen a uniform prior, which post-hoc adjustment would remove
  # again from the training one).
  corrections = [name for name, on in (
      (f"config.train.loss = {plan.loss!r}", plan.loss in ("class_balanced", "logit_adjusted")),
      ("config.train.sampler = 'class_balanced'", plan.sampler == "class_balanced"),
      (f"config.eval.logit_adjust = {plan.logit_adjust}", plan.logit_adjust > 0)) if on]
  if len(corrections) > 1:
    raise ConfigError(f"{' and '.join(corrections)} each correct for class imbalance; together "
                      "they correct twice. Keep one.")
  if plan.selection.active:
    # A label budget can miss a class entirely: a class mean of no example is undefined, and a
    # prior of 0 turns logit adjustment into always predicting the unseen class.
    readers = [name for name, on in (
        ("config.head_init = 'class_means'", plan.head_init == "class_means"),
        ("config.head_refit = 'class_means'", plan.head_refit == "class_means"),
        ("config.eval.probes 'class_means'", "class_means" in plan.eval_probes),
        ("config.train.loss = 'logit_adjusted'", plan.loss == "logit_adjusted"),
        ("config.eval.logit_adjust", plan.logit_adjust > 0)) if on]
    covers = (plan.selection.strategy == "stratified"
              and plan.selection.budget >= len(plan.classes))
    if readers and not covers:
      raise ConfigError(f"{', '.join(readers)} need an example of every class, which "
                        f"config.data.selection.strategy = {plan.selection.strategy!r} with "
                        f"budget {plan.selection.budget} does not guarantee; use 'stratified' "
                        "with a budget of at least one per class, or drop them")


def _check_distill(plan: RunPlan) -> None:
  if (plan.teachers and plan.pool_batch and plan.modality.is_text
      and plan.hparams()["distill_mixup"]):
    raise ConfigError("config.distill.mixup mixes images; a text task's token ids cannot be "
                      "mixed: set it to 0")
  temperature = plan.hparams()["distill_temperature"]
  if plan.teachers and not temperature > 0:
    raise ConfigError(f"config.distill.temperature = {temperature} must be > 0")


def _check_model(plan: RunPlan) -> None:
  """Builds the model's shapes once, so a bad model field fails before any data is read."""
  from lowres_jax.models import CONVERTERS
  if plan.init.kind == "checkpoint" and plan.model_name not in CONVERTERS:
    raise ConfigError(f"config.model.name = {plan.model_name!r} has no checkpoint converter, so "
                      "config.init.kind = 'checkpoint' cannot load into it; known: "
                      f"{sorted(CONVERTERS)}. Start it from 'scratch', 'source' or 'workdir'.")
  error = _model_error(plan.model_name, plan.model_kwargs, len(plan.classes),
                       plan.max_length if plan.modality.is_text else 0)
  if error:
    raise ConfigError(f"config.model is not a valid {plan.model_name!r}: {error}")


@functools.lru_cache(maxsize=256)  # A sweep validates hundreds of runs sharing a few models.
def _model_error(name: str, kwargs: tuple, num_classes: int, max_length: int) -> str:
  """Why the model cannot be built and traced on a one-example batch ('' when it can)."""
  import jax
  import numpy as np
  from lowres_jax.models import build_model
  if max_length:
    tokens = jax.ShapeDtypeStruct((1, max_length), np.int32)
    batch = {"input_ids": tokens, "attention_mask": tokens, "token_type_ids": tokens}
  else:  # The data's image size is not known yet; 32x32 grey stands in (shapes only).
    batch = {"image": jax.ShapeDtypeStruct((1, 32, 32, 1), np.uint8)}
  try:
    model = build_model(name, num_classes, **dict(kwargs))
    jax.eval_shape(lambda key, b: model.init(key, b, train=False), jax.random.PRNGKey(0), batch)
  except (TypeError, ValueError) as error:
    return str(error)
  return ""


def _check_named(name: str, known, key: str) -> None:
  if name not in known:
    raise ConfigError(f"{key} = {name!r} is unknown; known: {sorted(known)}")
