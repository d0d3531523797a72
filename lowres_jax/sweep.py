"""A whole ablation grid in one process: compile once per shape, vmap seeds, write the table.

  python -m lowres_jax.sweep --config=configs/ablations/transfer_basics.py --workdir=DIR
  python -m lowres_jax.sweep --config=... --workdir=DIR --list         # one main command a run
  python -m lowres_jax.sweep --config=... --workdir=DIR --shard=0/4    # this machine's share

An ablation config defines ``get_config()`` (the base run) and ``get_sweep()`` (the runs, as
override dicts built with ``product``/``zip_axes``/``axis``), and may set ``TUNED`` (override
keys that form each method's tuning grid; the report selects them on validation accuracy),
``BASELINE`` (the method the others are compared with), ``TITLE`` and ``NOTES`` (what the
tables show, in words, printed above them), ``METRIC`` (the test metric tabled;
``test/accuracy`` by default) and ``COLUMN`` (the summary key heading the columns: ``shots``,
``budget`` or ``imbalance``).

Runs whose static plans agree (they differ only in seed, method label and traced
hyperparameters) form a group that trains stacked under ``jax.vmap`` with one compiled step.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import shlex
import sys
import time
from types import ModuleType
from typing import Any, Iterable, Sequence

import ml_collections

from lowres_jax import records as records_lib
from lowres_jax import search, sweep_dir, tune_once
from lowres_jax.config import ConfigError, apply_overrides, load_module
from lowres_jax.train import workdir as workdir_lib

Overrides = dict[str, Any]
SWEEP_FILE = sweep_dir.SWEEP_FILE


def axis(key: str, values: Iterable[Any]) -> list[Overrides]:
  """One override key taking each of ``values``."""
  return [{key: v} for v in values]


def product(*axes: Sequence[Overrides]) -> list[Overrides]:
  """Every combination of one entry per axis, merged (later axes win on shared keys)."""
  return [_merge(combo) for combo in itertools.product(*axes)]


def zip_axes(*axes: Sequence[Overrides]) -> list[Overrides]:
  """Entries taken together position by position; the axes must have equal lengths."""
  lengths = {len(a) for a in axes}
  if len(lengths) > 1:
    raise ConfigError(f"zip_axes needs axes of equal length, got {sorted(lengths)}")
  return [_merge(combo) for combo in zip(*axes)]


def _merge(parts: Iterable[Overrides]) -> Overrides:
  merged: Overrides = {}
  for part in parts:
    merged.update(part)
  return merged


@dataclasses.dataclass(frozen=True)
class SweepRun:
  name: str
  overrides: Overrides
  config: ml_collections.ConfigDict
  plan: Any  # The config read and validated (train.plan.RunPlan); grouping uses its static part.


def load_ablation(path: str) -> ModuleType:
  module = load_module(path)
  for name in ("get_config", "get_sweep"):
    if not hasattr(module, name):
      raise ConfigError(f"{path} defines no {name}(); an ablation config needs get_config() "
                        "and get_sweep()")
  return module


def expand(module: ModuleType) -> list[SweepRun]:
  """The sweep's runs with their names and full configs; bad overrides fail here, up front."""
  overrides = module.get_sweep()
  names = _unique_names(overrides, getattr(module, "NAME_KEYS", None))
  return _as_runs(module.get_config(), list(zip(names, overrides)))


def run_names(overrides: Sequence[Overrides], name_keys: Sequence[str] | None = None,
              lead: str | None = None) -> list[str]:
  """Run names such as 'data.name=digits,method=finetune,shots=5,seed=0'.

  With ``name_keys`` the name uses those keys; otherwise it uses, in key order (seed last), each
  varying key that tells apart runs the keys before it do not (so a dataset axis that sets
  five keys together names runs once, not five times); ``lead`` goes first in that order.
  """
  keys = sorted({k for o in overrides for k in o}, key=lambda k: (k != lead, _key_order(k)))
  if name_keys is None:
    name_keys, distinct = [], 1
    for key in keys:
      names = {tuple(_value_text(o.get(k)) for k in (*name_keys, key)) for o in overrides}
      if len(names) > distinct:
        name_keys.append(key)
        distinct = len(names)
  varying = [k for k in name_keys if len({_value_text(o.get(k)) for o in overrides}) > 1]
  short = {k: k.rsplit(".", 1)[-1] for k in varying}
  if len(set(short.values())) < len(short):  # Ambiguous short names: use the full keys.
    short = {k: k for k in varying}
  return [",".join(f"{short[k]}={_value_text(o.get(k))}" for k in varying) or "run"
          for o in overrides]


def _key_order(key: str) -> tuple[int, str]:
  # Seeds last so a listing reads naturally: method, shots, lr, ..., seed.
  return (1 if key.rsplit(".", 1)[-1] == "seed" else 0, key)


def _value_text(value: Any) -> str:
  if isinstance(value, (list, tuple)):
    value = "-".join(map(str, value))
  return re.sub(r"[^A-Za-z0-9._+-]", "_", str(value))


def group_runs(runs: Sequence[SweepRun], use_vmap: bool) -> list[list[SweepRun]]:
  """Groups of runs that can train stacked (one per run when ``use_vmap`` is off)."""
  if not use_vmap:
    return [[r] for r in runs]
  groups: dict[Any, list[SweepRun]] = {}
  for run in runs:
    groups.setdefault(run.plan.static_part(), []).append(run)
  return list(groups.values())


def shard(groups: Sequence[list[SweepRun]], index: int, count: int) -> list[list[SweepRun]]:
  """Every ``count``-th group from ``index``: whole groups, so vmapping survives sharding."""
  if not 0 <= index < count:
    raise ConfigError(f"--shard={index}/{count}: need 0 <= i < n")
  return [g for i, g in enumerate(groups) if i % count == index]


def main_command(config_path: str, workdir: str, run: SweepRun) -> str:
  """The ``lowres_jax.main`` command that runs one sweep run on its own."""
  parts = ["python", "-m", "lowres_jax.main",
           f"--config={config_path}", f"--workdir={os.path.join(workdir, run.name)}"]
  for key, value in run.overrides.items():
    if isinstance(value, (list, tuple)):
      value = "(" + ",".join(map(repr, value)) + ("," if len(value) == 1 else "") + ")"
    parts.append(f"--config.{key}={value}")
  return " ".join(shlex.quote(p) for p in parts)


def run_sweep(module: ModuleType, config_path: str, workdir: str, use_vmap: bool = True,
              shard_spec: tuple[int, int] = (0, 1), show_progress: bool = True,
              command: str = "") -> dict:
  """Trains every unfinished run of this shard; writes the sweep file and the report.

  The shard holds a lock on the sweep directory for its lifetime (another process starting
  the same shard stops at once; other shards have their own lock, and each run its own), and
  a SIGINT/SIGTERM stops it after the current group's checkpoint (train/interrupt.py). A
  refused sweep (a changed config over existing runs) changes nothing in the directory.
  """
  from lowres_jax import storage
  from lowres_jax.train import interrupt
  protocol = tune_once.read_protocol(module)
  if protocol is not None and shard_spec[1] != 1:
    raise ConfigError("this ablation tunes once (SEARCH): its table's runs depend on its "
                      "tuning runs, so it runs as one process; drop --shard")
  runs = expand(module) if protocol is None else []  # Every run validated up front.
  lock = "sweep" if shard_spec[1] == 1 else f"sweep-shard{shard_spec[0]}of{shard_spec[1]}"
  with storage.owner(workdir, lock, flag="--workdir (the sweep's)"), interrupt.watching():
    sweep = _Sweep(module, config_path, workdir, use_vmap, shard_spec, show_progress, command)
    if protocol is None:
      return sweep.run_grid(runs)
    return sweep.run_tuned(protocol)


class _Sweep:
  """One sweep invocation: its record, its compile cache, and the runs it trains."""

  def __init__(self, module: ModuleType, config_path: str, workdir: str, use_vmap: bool,
               shard_spec: tuple[int, int], show_progress: bool, command: str):
    from lowres_jax.train.compiled import CompileCache
    self.module, self.workdir, self.use_vmap = module, workdir, use_vmap
    self.shard_spec, self.show_progress = shard_spec, show_progress
    self.cache = CompileCache()
    self.start = time.perf_counter()
    self.finished_before: dict[str, bool] = {}  # Run name -> finished when first seen.
    self.record = {
        "command": command,
        "config": config_path,
        "commit": records_lib.code_commit(),
        "vmap": use_vmap,
        "shard": f"{shard_spec[0]}/{shard_spec[1]}",
        "tuned": list(getattr(module, "TUNED", ())),
        "baseline": getattr(module, "BASELINE", None),
        "title": getattr(module, "TITLE", os.path.basename(config_path)),
        "notes": getattr(module, "NOTES", ""),
        "metric": getattr(module, "METRIC", "test/accuracy"),
        "column": getattr(module, "COLUMN", "shots"),
        "runs": [],
    }
    name = (SWEEP_FILE if shard_spec[1] == 1
            else f"sweep-shard{shard_spec[0]}of{shard_spec[1]}.json")
    self.path = os.path.join(workdir, name)

  def run_grid(self, runs: list[SweepRun]) -> dict:
    """A plain grid: every run listed by get_sweep(), this shard's share of the groups."""
    groups = shard(group_runs(runs, self.use_vmap), *self.shard_spec)
    _check_unchanged(runs, self.workdir)
    self.record.update({"runs_in_sweep": len(runs),
                        "runs_in_shard": sum(len(g) for g in groups),
                        "runs": [{"name": r.name, "overrides": r.overrides} for r in runs]})
    self._write()  # Written first too, so a killed sweep can still be reported.
    self._train_groups(groups)
    return self._finish()

  def run_tuned(self, protocol: tune_once.Protocol) -> dict:
    """Tune each method at the tuning cell (growing edge picks), then run the table's cells
    on the evaluation seeds at the picks."""
    base = self.module.get_config()
    evaluation = self.module.get_sweep()
    names = _unique_names(evaluation, getattr(self.module, "NAME_KEYS", None))
    groups = _tuning_groups(self.module, protocol, evaluation)
    searched = {g.label: search.grid(g.spaces) if g.spaces else [] for g in groups}
    picks: dict[str, search.Setting | None] = {g.label: () for g in groups if not g.spaces}
    entries = []
    for round_index in range(protocol.max_extensions + 1):
      tuning = [(g, name, o) for g in groups
                for name, o in tune_once.tuning_runs(g, searched[g.label], protocol.seeds)]
      runs = _as_runs(base, [(name, o) for _, name, o in tuning])
      if round_index == 0:
        _check_unchanged(runs, self.workdir)
      entries = [{"name": r.name, "overrides": r.overrides, "phase": "tune",
                  "tuning_group": g.label, "setting": search.setting_text(dict_setting(
                      r.overrides, g.spaces))} for (g, _, _), r in zip(tuning, runs)]
      self.record.update({"protocol": protocol.describe(), "runs": entries})
      self._write()
      self._train_groups(group_runs(runs, self.use_vmap))
      grown = False
      for group in groups:
        if not group.spaces:
          continue
        summaries = {setting: [workdir_lib.read_summary(os.path.join(self.workdir, name))
                               for name, _ in tune_once.tuning_runs(group, [setting],
                                                                   protocol.seeds)]
                     for setting in searched[group.label]}
        picks[group.label] = pick = tune_once.choose(summaries)
        if pick is not None and round_index < protocol.max_extensions:
          new = search.extensions(group.spaces, pick, searched[group.label])
          searched[group.label] += new
          grown = grown or bool(new)
      if not grown:
        break
    by_key = {tune_once.group_key(g.base, protocol): g for g in groups}
    table = []
    for name, overrides in zip(names, evaluation):
      group = by_key[tune_once.group_key(overrides, protocol)]
      pick = picks.get(group.label)
      if pick is None:  # Every setting diverged: nothing to evaluate at.
        continue
      table.append((group, tune_once.evaluation_name(name, pick), {**overrides, **dict(pick)}))
    runs = _as_runs(base, [(name, o) for _, name, o in table])
    _check_unchanged(runs, self.workdir)
    self.record["runs"] = entries + [
        {"name": r.name, "overrides": r.overrides, "phase": "eval", "tuning_group": g.label,
         "setting": search.setting_text(picks[g.label])} for (g, _, _), r in zip(table, runs)]
    self.record["unselected_groups"] = sorted(label for label, p in picks.items() if p is None)
    self.record["runs_in_sweep"] = self.record["runs_in_shard"] = len(self.record["runs"])
    self._write()
    self._train_groups(group_runs(runs, self.use_vmap))
    return self._finish()

  def _train_groups(self, groups: list[list[SweepRun]]) -> None:
    from lowres_jax.train import interrupt, loop
    for index, group in enumerate(groups):
      interrupt.raise_if_requested("finished runs are kept; rerun the same command to continue")
      workdirs = [os.path.join(self.workdir, r.name) for r in group]
      unfinished = [workdir_lib.read_summary(w) is None for w in workdirs]
      for run, todo in zip(group, unfinished):
        self.finished_before.setdefault(run.name, not todo)
      if self.show_progress and any(unfinished):
        print(f"sweep: group {index + 1}/{len(groups)}, {sum(unfinished)} run(s) to train, "
              f"first {group[0].name}", flush=True)
      loop.train_group([r.config for r in group], workdirs, self.cache, self.show_progress,
                       stop_on_nonfinite=False)
    self.record["groups"] = self.record.get("groups", 0) + len(groups)

  def _finish(self) -> dict:
    self.record.update({
        "runs_trained": sum(not done for done in self.finished_before.values()),
        "runs_skipped_finished": sum(self.finished_before.values()),
        "compilations": self.cache.compiles,
        "compile_s": self.cache.compile_seconds,
        "wall_s": time.perf_counter() - self.start,
    })
    self._write()
    return self.record

  def _write(self) -> None:
    from lowres_jax import storage
    storage.ensure_directory(os.path.dirname(self.path) or ".")
    storage.write_json(self.path, self.record, default=str, indent=1)


def dict_setting(overrides: Overrides, spaces: dict) -> search.Setting:
  """The tuned part of a run's overrides, as a setting."""
  return tuple((k, overrides[k]) for k in sorted(spaces))


def _unique_names(overrides: Sequence[Overrides], name_keys) -> list[str]:
  names = run_names(overrides, name_keys)
  if len(set(names)) != len(names):
    duplicates = sorted({n for n in names if names.count(n) > 1})
    raise ConfigError(f"get_sweep() lists the same run twice: {duplicates[:3]}")
  return names


def _tuning_groups(module: ModuleType, protocol: tune_once.Protocol,
                   evaluation: Sequence[Overrides]) -> list[tune_once.TuningGroup]:
  """The tuning groups, labelled by the NAME_KEYS that tell them apart (method first)."""
  tuned = {k for spaces in protocol.search.values() for k in spaces}
  name_keys = getattr(module, "NAME_KEYS", None)
  label_keys = None if name_keys is None else [k for k in name_keys
                                               if k not in tuned and k != "seed"]

  def labels(bases: Sequence[Overrides]) -> list[str]:
    return ["" if label == "run" else label
            for label in run_names(bases, label_keys, lead="method")]
  return tune_once.tuning_groups(protocol, evaluation, labels)


def _as_runs(base: ml_collections.ConfigDict,
             named: Sequence[tuple[str, Overrides]]) -> list[SweepRun]:
  from lowres_jax.train.plan import read_plan
  runs = []
  for name, overrides in named:
    config = apply_overrides(base, overrides)
    try:  # Every config error now, not hours into the grid.
      plan = read_plan(config)
    except ConfigError as error:
      raise ConfigError(f"sweep run {name}: {error}") from None
    runs.append(SweepRun(name, overrides, config, plan))
  return runs


def _check_unchanged(runs: Sequence[SweepRun], workdir: str) -> None:
  """Refuses, before anything is written, runs whose existing workdir holds another config."""
  for run in runs:
    workdir_lib.check_same_config(run.config, os.path.join(workdir, run.name))


def list_runs(module: ModuleType, vmap: str = "auto",
              shard_spec: tuple[int, int] = (0, 1)) -> list[SweepRun]:
  """The runs a sweep starts with, every one planned (so a config that no longer parses fails
  here): a grid's share of this shard, or a tune-once sweep's first tuning round."""
  protocol = tune_once.read_protocol(module)
  if protocol is None:
    groups = shard(group_runs(expand(module), resolve_vmap(vmap)), *shard_spec)
    return [run for group in groups for run in group]
  evaluation = module.get_sweep()
  _unique_names(evaluation, getattr(module, "NAME_KEYS", None))
  named = [run for g in _tuning_groups(module, protocol, evaluation) if g.spaces
           for run in tune_once.tuning_runs(g, search.grid(g.spaces), protocol.seeds)]
  return _as_runs(module.get_config(), named)


def resolve_vmap(choice: str) -> bool:
  if choice == "auto":
    import jax
    return jax.default_backend() != "cpu"
  return choice == "true"


def _parse_shard(text: str) -> tuple[int, int]:
  match = re.fullmatch(r"(\d+)/(\d+)", text)
  if not match:
    raise ConfigError(f"--shard={text}: write it as i/n, e.g. 0/4")
  return int(match.group(1)), int(match.group(2))


def _cli(argv: list[str]) -> None:
  from absl import flags
  config_path, workdir = flags.FLAGS.config, flags.FLAGS.workdir
  module = load_ablation(config_path)
  if flags.FLAGS.list:
    for run in list_runs(module, flags.FLAGS.vmap, _parse_shard(flags.FLAGS.shard)):
      print(main_command(config_path, workdir, run))
    if tune_once.read_protocol(module) is not None:
      print("# the table's runs follow from these tuning runs' picks: run lowres_jax.sweep")
    return
  del argv  # absl strips the flags; the record wants the command as typed.
  command = " ".join(shlex.quote(a) for a in ["python", "-m", "lowres_jax.sweep", *sys.argv[1:]])
  record = run_sweep(module, config_path, workdir, resolve_vmap(flags.FLAGS.vmap),
                     _parse_shard(flags.FLAGS.shard), flags.FLAGS.progress, command)
  print(f"sweep: {record['runs_trained']} runs trained, {record['runs_skipped_finished']} "
        f"skipped (finished), {record['compilations']} compilations, "
        f"{record['wall_s']:.1f} s -> {os.path.join(workdir, SWEEP_FILE)}")
  if record["shard"] == "0/1":
    from lowres_jax import report
    paths = report.write_sweep_report(workdir, flags.FLAGS.results or None, command)
    print("report: " + ", ".join(paths.values()))


def run_cli() -> None:
  from absl import app, flags, logging
  from lowres_jax import errors
  flags.DEFINE_string("config", None, "Ablation config (get_config + get_sweep).", required=True)
  flags.DEFINE_string("workdir", None, "Sweep directory; each run gets a subfolder.",
                      required=True)
  flags.DEFINE_bool("list", False, "Print one lowres_jax.main command per run and exit.")
  flags.DEFINE_string("shard", "0/1", "Run only the i-th of n shares of the groups: i/n.")
  flags.DEFINE_enum("vmap", "auto", ["auto", "true", "false"],
                    "Train runs of equal shapes stacked under jax.vmap. 'auto': on GPU/TPU "
                    "yes; on CPU no, where stacked convolutions run slower than the same "
                    "runs one after another (results/bench_sweep.md measures both).")
  flags.DEFINE_bool("progress", True, "Show progress bars / lines.")
  flags.DEFINE_string("results", None, "Also write the report to this prefix (e.g. "
                      "results/transfer_basics -> .md, .csv, .png).")
  logging.set_verbosity(logging.WARNING)
  errors.run_with_clear_errors(lambda: app.run(_cli))


if __name__ == "__main__":
  run_cli()
