"""Tune once, then test on fresh seeds: the protocol of a sweep that declares ``SEARCH``.

When a full grid per cell does not fit the budget (what papers do then, and what fits two
cores), an ablation names one tuning cell and tuning seeds. Each method searches its own space
there on validation accuracy, with the same number of trials as every other method; a pick at
an edge of a numeric space grows that space one step outward and is searched again (up to
``extensions`` times). Every cell of the table then runs on evaluation seeds disjoint from the
tuning seeds, at the method's pick. Test data never chooses anything.

An ablation config declares, beside ``get_config`` and ``get_sweep`` (the evaluation runs,
without the tuned keys)::

  SEARCH = {"finetune": {"optim.lr": log_grid(1e-5, 1e-3, 5)},          # method -> key -> space
            "l2sp": {"optim.lr": log_grid(...), "adapt.l2sp": choices(...)}}
  TUNE = {"cell": {"data.shots": 8}, "seeds": (100, 101, 102), "trials": 5, "extensions": 2}

A method absent from ``SEARCH`` (or with an empty space) has nothing to tune and runs as
listed. This module is pure planning: which tuning runs exist, which setting won, which
runs to add; ``sweep`` trains them.
"""

from __future__ import annotations

import dataclasses
import json
from types import ModuleType
from typing import Any, Mapping, Sequence

from lowres_jax import search
from lowres_jax.config import ConfigError

Overrides = dict[str, Any]
TUNING_PREFIX = "tune/"  # Tuning runs live in DIR/tune/..., apart from the table's runs.
SELECTION_METRIC = "val/accuracy"


@dataclasses.dataclass(frozen=True)
class Protocol:
  search: dict[str, dict[str, search.Space]]  # method -> tuned key -> space
  cell: dict[str, Any]  # The overrides that pick the tuning cell out of the evaluation runs.
  seeds: tuple[int, ...]
  trials: int
  max_extensions: int

  def spaces(self, method: str) -> dict[str, search.Space]:
    return self.search.get(method, {})

  def describe(self) -> dict:
    """What the report prints about the protocol (JSON-ready)."""
    return {
        "cell": self.cell, "seeds": list(self.seeds), "trials": self.trials,
        "max_extensions": self.max_extensions,
        "spaces": {m: {k: list(s.values) for k, s in spaces.items()}
                   for m, spaces in self.search.items()},
    }


@dataclasses.dataclass(frozen=True)
class TuningGroup:
  """The evaluation runs that share one pick: equal overrides bar seed and cell keys."""
  label: str
  base: Overrides  # One evaluation run's overrides at the tuning cell, seed removed.
  spaces: dict[str, search.Space]


def read_protocol(module: ModuleType) -> Protocol | None:
  """The module's tune-once protocol, or None for a plain grid; bad declarations fail here."""
  if not hasattr(module, "SEARCH"):
    if hasattr(module, "TUNE"):
      raise ConfigError("TUNE is set but SEARCH is not: declare each method's search space")
    return None
  tune = dict(getattr(module, "TUNE", {}))
  known = {"cell", "seeds", "trials", "extensions"}
  if set(tune) - known or not {"cell", "seeds", "trials"} <= set(tune):
    raise ConfigError(f"TUNE needs cell, seeds and trials (and may set extensions); got "
                      f"{sorted(tune)}")
  spaces = {method: {key: search.as_space(space) for key, space in keys.items()}
            for method, keys in module.SEARCH.items()}
  protocol = Protocol(spaces, dict(tune["cell"]), tuple(tune["seeds"]), int(tune["trials"]),
                      int(tune.get("extensions", 2)))
  for method, method_spaces in spaces.items():
    count = search.trial_count(method_spaces)
    if method_spaces and count != protocol.trials:
      raise ConfigError(f"SEARCH[{method!r}] holds {count} settings, TUNE['trials'] is "
                        f"{protocol.trials}: every method gets the same number of trials")
  return protocol


def group_key(overrides: Overrides, protocol: Protocol) -> str:
  """What an evaluation run shares with its tuning group: its overrides without the seed,
  the cell keys and the tuned keys."""
  method = overrides.get("method")
  dropped = {"seed", *protocol.cell, *protocol.spaces(method)}
  return json.dumps({k: v for k, v in overrides.items() if k not in dropped}, sort_keys=True,
                    default=str)


def tuning_groups(protocol: Protocol, evaluation: Sequence[Overrides],
                  label_of) -> list[TuningGroup]:
  """One group per distinct evaluation setting at the tuning cell; every evaluation run must
  find its group there. ``label_of`` names the groups (the sweep's run naming)."""
  if set(protocol.seeds) & {o.get("seed") for o in evaluation}:
    raise ConfigError(f"TUNE seeds {sorted(protocol.seeds)} overlap the evaluation seeds: "
                      "the picks would be tested on the runs that made them")
  unknown = set(protocol.search) - {o.get("method") for o in evaluation}
  if unknown:
    raise ConfigError(f"SEARCH names methods that get_sweep() never runs: {sorted(unknown)}")
  bases: dict[str, Overrides] = {}
  for overrides in evaluation:
    if all(overrides.get(k) == v for k, v in protocol.cell.items()):
      base = {k: v for k, v in overrides.items() if k != "seed"}
      bases.setdefault(group_key(overrides, protocol), base)
  for overrides in evaluation:
    if group_key(overrides, protocol) not in bases:
      raise ConfigError(f"evaluation run {overrides} has no run at the tuning cell "
                        f"{protocol.cell} to take its setting from")
  labels = label_of(list(bases.values()))
  return [TuningGroup(label, base, protocol.spaces(base.get("method")))
          for label, base in zip(labels, bases.values())]


def tuning_runs(group: TuningGroup, settings: Sequence[search.Setting],
                seeds: Sequence[int]) -> list[tuple[str, Overrides]]:
  """(name, overrides) of the group's runs at ``settings`` x ``seeds``; names never change as
  settings are added, so a resumed sweep finds its runs."""
  runs = []
  for setting in settings:
    for seed in seeds:
      parts = [p for p in (group.label, search.setting_text(setting), f"seed={seed}") if p]
      runs.append((TUNING_PREFIX + ",".join(parts),
                   {**group.base, **dict(setting), "seed": seed}))
  return runs


def evaluation_name(name: str, setting: search.Setting) -> str:
  """An evaluation run's name carries its setting, so a changed pick is a new run, never a
  stale one reused."""
  text = search.setting_text(setting)
  return f"{name},{text}" if text else name


def choose(summaries: Mapping[search.Setting, Sequence[dict | None]]) -> search.Setting | None:
  """The setting with the best mean validation accuracy over the tuning seeds (report's
  selection rule: ties to the first setting text, a setting with a diverged seed ineligible);
  None until every run of every setting has finished."""
  from lowres_jax import report
  if any(s is None for runs in summaries.values() for s in runs):
    return None
  by_text = {search.setting_text(setting): setting for setting in summaries}
  records = [{**summary, "shots": 0, "setting": search.setting_text(setting)}
             for setting, runs in summaries.items() for summary in runs]
  picked = report.select_settings(records, SELECTION_METRIC)
  return by_text[next(iter(picked.values()))] if picked else None
