"""Loud configs: every key a config sets must be read by some code, durations in natural units.

A key that no code reads is almost always a typo (``config.optim.weigth_decay``) or a leftover
from another experiment; ml_collections silently keeps both, so a run would quietly use the
default. ``TrackedConfig`` records every read so the run can refuse unread keys before training.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import numbers
import re
from typing import Any

import ml_collections

from lowres_jax.user_error import UserError


class ConfigError(UserError, ValueError):
  """A config is malformed: unread keys, bad values, bad durations."""


class TrackedConfig:
  """Read-only view of a ConfigDict that records which leaf keys were read.

  Nested ConfigDicts come back as TrackedConfigs sharing the same record, so
  ``cfg.optim.lr`` marks ``optim.lr`` as read.
  """

  def __init__(self, config: ml_collections.ConfigDict, reads: set[str] | None = None,
               prefix: str = ""):
    object.__setattr__(self, "_config", config)
    object.__setattr__(self, "_reads", set() if reads is None else reads)
    object.__setattr__(self, "_prefix", prefix)

  def _wrap(self, name: str, value: Any) -> Any:
    path = self._prefix + name
    if isinstance(value, ml_collections.ConfigDict):
      return TrackedConfig(value, self._reads, path + ".")
    self._reads.add(path)
    return value

  def __getattr__(self, name: str) -> Any:
    if name.startswith("__"):
      raise AttributeError(name)
    if name not in self._config:
      known = sorted(self._config.keys())
      close = difflib.get_close_matches(name, known, n=3)
      hint = f" Did you mean {', '.join(close)}?" if close else ""
      raise ConfigError(
          f"config has no key '{self._prefix}{name}'.{hint} Keys here: {', '.join(known)}")
    return self._wrap(name, self._config[name])

  __getitem__ = __getattr__

  def __setattr__(self, name: str, value: Any) -> None:
    raise TypeError("TrackedConfig is read-only; change the ConfigDict before tracking it")

  def __contains__(self, name: str) -> bool:
    return name in self._config

  def to_dict(self) -> dict[str, Any]:
    """Plain nested dict; marks every leaf below as read (the caller consumes all of it)."""
    self.mark_all_read()
    return self._config.to_dict()

  def mark_all_read(self) -> None:
    if not len(self._config):  # An empty section is itself a leaf (see leaf_paths).
      self._reads.add(self._prefix.rstrip("."))
    for path in leaf_paths(self._config):
      self._reads.add(self._prefix + path)

  def unread_keys(self) -> list[str]:
    return sorted(p for p in leaf_paths(self._config, self._prefix) if p not in self._reads)

  def assert_all_read(self) -> None:
    """Raises ConfigError naming every key that no code has read."""
    unread = self.unread_keys()
    if unread:
      raise ConfigError(
          "config keys that no code reads (a typo, or a field of another experiment): "
          + ", ".join(unread) + ". Remove them or fix their names.")


def leaf_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Dotted paths of all non-ConfigDict values; an empty ConfigDict counts as one leaf."""
  paths = []
  for key in config.keys():
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict) and len(value):
      paths.extend(leaf_paths(value, f"{prefix}{key}."))
    else:
      paths.append(prefix + key)
  return paths


def config_hash(config: ml_collections.ConfigDict | dict, length: int = 16) -> str:
  """Stable short hash of a config's content, used as a cache key."""
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  blob = json.dumps(config, sort_keys=True, default=str).encode()
  return hashlib.sha256(blob).hexdigest()[:length]


_DURATION = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(steps?|ep|epochs?|ex|examples?)?\s*$")


def parse_duration(spec: float | str, key: str = "duration") -> tuple[float, str]:
  """'30 epochs' -> (30.0, 'epochs'); a bare number counts steps. ``key`` names the field in
  errors. Raises ConfigError for text it cannot read or a negative amount ('0 ...' is valid:
  no training, e.g. zero-shot or nearest class mean)."""
  if isinstance(spec, bool) or not isinstance(spec, (numbers.Real, str)):
    raise ConfigError(f"{key} = {spec!r} must be a string such as '300 steps', '30 epochs' or "
                      "'6400 examples' (or a number: steps)")
  if isinstance(spec, numbers.Real):
    amount, unit = float(spec), "steps"
  else:
    match = _DURATION.match(spec)
    if not match:
      raise ConfigError(
          f"{key} = {spec!r} is not understood; write a number and a unit, e.g. '300 steps', "
          "'30 epochs' ('30ep') or '6400 examples'")
    amount, unit = float(match.group(1)), match.group(2) or "steps"
  if not math.isfinite(amount):
    raise ConfigError(f"{key} = {spec!r} is not a finite length; write e.g. '300 steps'")
  if amount < 0:
    raise ConfigError(f"{key} = {spec!r} is negative; give a positive length such as "
                      "'300 steps' or '30 epochs' (or exactly 0: no training, e.g. zero-shot "
                      "or nearest class mean)")
  return amount, unit


def duration_to_steps(spec: float | str, num_train_examples: int, batch_size: int) -> int:
  """Parses '300 steps' (or '300'), '30 epochs' ('30ep') or '6400 examples' into steps.

  Epochs are the natural unit at k-shot: "30 epochs over 50 examples" reads better than
  "47 steps". Fractions round up so a duration never trains for zero steps unless it says 0
  (in any unit: '0 epochs' is 0 steps too).
  """
  amount, unit = parse_duration(spec)
  if batch_size <= 0:
    raise ConfigError(f"batch size {batch_size} must be positive")
  if unit.startswith("step"):
    examples = amount * batch_size
  elif unit.startswith("ep"):
    examples = amount * num_train_examples
  else:
    examples = amount
  steps = int(-(-examples // batch_size))
  if steps == 0 and amount != 0:  # E.g. epochs over an empty training set.
    raise ConfigError(f"duration {spec!r} gives 0 steps over {num_train_examples} training "
                      "examples; it must be positive (or exactly 0: no training)")
  return steps


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """Copy of ``config`` with dotted-key overrides applied; unknown keys are an error."""
  config = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split(".")
    for part in parents:
      if part not in node:
        raise ConfigError(f"override {dotted!r}: config has no section {part!r}")
      node = node[part]
    if leaf not in node:
      close = difflib.get_close_matches(leaf, list(node.keys()), n=3)
      hint = f" Did you mean {', '.join(close)}?" if close else ""
      raise ConfigError(f"override {dotted!r}: config has no key {leaf!r}.{hint}")
    if isinstance(value, (list, tuple)):
      value = tuple(value)
    with node.ignore_type():
      node[leaf] = value
  return config


def load_module(path: str):
  """Imports a Python file by path (config files are files, not an importable package)."""
  import importlib.util
  import os
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path} does not exist{_missing_file_hint(path)}")
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as error:  # The traceback would only point into importlib.
    line = f": {error.text.strip()}" if error.text and error.text.strip() else ""
    raise ConfigError(f"config file {error.filename or path}, line {error.lineno}: "
                      f"{type(error).__name__}: {error.msg}{line}") from None
  return module


def _missing_file_hint(path: str) -> str:
  """Where a relative path was looked for, and the config files near the one named."""
  import os
  folder = os.path.dirname(path) or "."
  where = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
  if not os.path.isdir(folder):
    return f"{where}; neither does its folder {folder}"
  files = sorted(f for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))
  close = difflib.get_close_matches(os.path.basename(path), files, n=3)
  hint = f"; did you mean {', '.join(os.path.join(folder, f) for f in close)}?" if close else "."
  listing = f" Config files in {folder}: {', '.join(files)}" if files else ""
  return f"{where}{hint}{listing}"
