"""A run's workdir: the files it holds, and the checks and restores that make resuming safe."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import flax.serialization
import ml_collections
import numpy as np

from lowres_jax import checkpoint, failpoints, parallel, storage
from lowres_jax.config import ConfigError
from lowres_jax.data import fewshot
from lowres_jax.train.state import TrainState, unstack

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
PENDING_SUMMARY_FILE = "summary.pending.json"
DIVERGED_FILE = "diverged.json"


def read_summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  return storage.read_json(path, "a finished run's summary")


def write_summaries(workdirs: list[str], summaries: list[dict]) -> None:
  """A group's summaries in two phases: every one as pending, then every pending renamed.

  A group's runs must finish together. Were a kill to land after some summaries and before
  the others, the restart would evaluate the rest as a smaller stack, whose compiled program
  rounds differently (1e-8, but not the same numbers): settle_pending_summaries sorts it out.
  """
  for workdir, summary in zip(workdirs, summaries):
    failpoints.hit("run.summary")
    write_json(os.path.join(workdir, PENDING_SUMMARY_FILE), summary)
  for workdir in workdirs:
    _promote(workdir)


def _promote(workdir: str) -> None:
  try:
    os.replace(os.path.join(workdir, PENDING_SUMMARY_FILE), os.path.join(workdir, SUMMARY_FILE))
  except OSError as error:
    raise storage.WorkdirError(f"could not rename {workdir}/{PENDING_SUMMARY_FILE} to "
                               f"{SUMMARY_FILE}: {storage.describe_os_error(error)}. Rerun the "
                               "same command: it finishes the rename.") from None


def settle_pending_summaries(workdirs: list[str]) -> None:
  """After a kill inside write_summaries: if every unfinished run of the group has its pending
  summary, the group had finished (promote them); otherwise drop them and rerun the group."""
  pending = [os.path.join(w, PENDING_SUMMARY_FILE) for w in workdirs]
  present = [os.path.exists(p) for p in pending]
  for path, workdir, exists in zip(pending, workdirs, present):
    if exists and all(present):
      _promote(workdir)
    elif exists:
      os.remove(path)


def restore_or_start(managers, initial: list[TrainState]) -> tuple[int, list]:
  """Restores every run at the newest step all of them have, or starts them all afresh."""
  templates = [flax.serialization.to_state_dict(s) for s in initial]
  common = set.intersection(*[set(m.all_steps()) for m in managers])
  if not common:
    return 0, initial
  restored = [checkpoint.restore_latest(m, t, at_most=max(common))
              for m, t in zip(managers, templates)]
  steps = {r[0] for r in restored if r is not None}
  if len(steps) > 1 and all(r is not None for r in restored):
    # A member fell back past a corrupt checkpoint: bring the others back to its step.
    restored = [checkpoint.restore_latest(m, t, at_most=min(steps))
                for m, t in zip(managers, templates)]
    steps = {r[0] for r in restored if r is not None}
  if len(steps) != 1 or any(r is None for r in restored):
    log.warning("runs restored at different steps %s; restarting the group from step 0", steps)
    return 0, initial
  step = steps.pop()
  log.info("resuming %d run(s) from step %d", len(managers), step)
  return step, [flax.serialization.from_state_dict(s, r[1]) for s, r in zip(initial, restored)]


def save_all(managers, stacked_state, step: int) -> None:
  host_state = parallel.fetch(stacked_state)
  for i, manager in enumerate(managers):
    checkpoint.save(manager, step, flax.serialization.to_state_dict(unstack(host_state, i)))


def read_diverged(workdir: str) -> int | None:
  path = os.path.join(workdir, DIVERGED_FILE)
  if not os.path.exists(path):
    return None
  record = storage.read_json(path, "the step at which the run's loss turned non-finite")
  step = record.get("step") if isinstance(record, dict) else None
  if not isinstance(step, int) or isinstance(step, bool):
    raise storage.WorkdirError(f"{path} holds no integer 'step' (got {record!r}): it was edited "
                               "by hand or damaged. Delete it to train that run again.")
  return step


def has_progress(workdir: str) -> bool:
  """Whether the workdir holds training to resume or reuse (not just files of a failed start)."""
  checkpoints = os.path.join(workdir, "checkpoints")
  return (os.path.exists(os.path.join(workdir, SUMMARY_FILE))
          or (os.path.isdir(checkpoints) and any(d.isdigit() for d in os.listdir(checkpoints))))


def check_same_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume or reuse a workdir whose training was done with another config."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path) or not has_progress(workdir):
    return
  saved = storage.read_json(path, "the config the run started with")
  current = json.loads(json.dumps(config.to_dict(), default=_json_default))
  if saved != current:
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    added = _added_defaults()
    changed = sorted(k for k in flat_saved.keys() | flat_current.keys()
                     if flat_saved.get(k) != flat_current.get(k)
                     and not (k not in flat_saved
                              and any(flat_current[k] == added.get(tail, ()) and tail in added
                                      for tail in _tails(k))))
    if not changed:
      return
    raise ConfigError(
        f"{workdir} holds a run started with a different config (differs in "
        f"{', '.join(changed[:8])}). Use another --workdir, or delete that one to start over.")


def _added_defaults() -> dict:
  """Config keys added after runs were saved without them, at the values that do what the
  code did before they existed (``config.adapt`` with no method, no ``eval.probes``): a run
  saved without them is the same run, so its workdir stays resumable and its summary
  reusable."""
  from lowres_jax.compress import distill, prune, quantize
  from lowres_jax.train import hparams, plan, selection
  from lowres_jax.train.adapt import config_defaults
  added = {"adapt": config_defaults(), "eval": {"probes": (), "logit_adjust": 0.0},
           "distill": distill.config_defaults(), "prune": prune.CONFIG_DEFAULTS,
           "quantize": quantize.CONFIG_DEFAULTS, "pipeline": (), "stages": {},
           "init": {"rename": ()}, "augment": plan.augment_defaults(),
           # Matched on a key's last two parts (_tails): data.selection.budget is
           # selection.budget here.
           "data": {"imbalance": 1.0}, "selection": selection.CONFIG_DEFAULTS,
           "train": {**hparams.group_defaults("train"), "sampler": "uniform",
                     "loss": "cross_entropy"}}
  return _flatten(json.loads(json.dumps(added, default=_json_default)))


def _tails(key: str) -> tuple[str, ...]:
  """'source.adapt.l2sp' -> ('adapt.l2sp', 'l2sp'): the keys sit in a source config too."""
  parts = key.split(".")
  return (".".join(parts[-2:]), parts[-1])


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value
  return flat


def write_run_files(config, manifest, workdir: str) -> None:
  split_path = os.path.join(workdir, "split.json")
  if os.path.exists(split_path) and has_progress(workdir):
    saved = storage.read_json(split_path, "the examples the run trained on")
    drawn = manifest.to_json()
    if any(saved.get(key) != drawn.get(key) for key in ("train_ids", "val_ids", "train_sha256",
                                                         "val_sha256", "pool_sha256",
                                                         "source")):
      raise ConfigError(
          f"{workdir} was trained on other examples than the same config draws now (its "
          "split.json differs: edited by hand, or the dataset was rebuilt or changed). Use a "
          "new --workdir, or delete this one to start over.")
  if not parallel.is_main_process():
    return
  storage.ensure_directory(workdir)
  write_json(os.path.join(workdir, "config.json"), config.to_dict())
  fewshot.write_manifest(manifest, os.path.join(workdir, "split.json"))


def write_json(path: str, record: dict) -> None:
  """Writes atomically, so a kill never leaves a half-written summary that looks finished."""
  storage.write_json(path, record, default=_json_default, indent=1, allow_nan=True)


def _json_default(value: Any) -> Any:
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  raise TypeError(f"cannot write {type(value).__name__} to JSON")
