"""One pipeline from a fine-tuned model to a small, fast one: ``config.pipeline`` stages.

``config.pipeline`` lists stages among ``finetune``, ``distill``, ``prune`` and ``quantize``;
``config.stages.<name>`` holds each stage's overrides of the config (nested like the config
itself; a key the config lacks is an error). Stage ``i`` runs into ``<workdir>/<i>_<name>``
and starts from the stage before it:

- ``finetune``: the config as it is (the teacher of what follows);
- ``distill``: a student (its model set in the overrides) trained with the previous stage as
  its frozen teacher (``distill.teachers``; any stage may name earlier stages as teachers,
  ``distill.teachers = ('finetune',)``, e.g. to keep distilling while pruning);
  ``init.kind = 'workdir'`` with no path starts it from the previous stage's weights (with
  ``init.rename``: a shallower encoder from the teacher's layers);
Each stage after ``finetune`` keeps the previous stage's model (the student after ``distill``)
unless its overrides change it.

- ``prune``: the previous stage's weights pruned (``prune.method = 'magnitude'``, one-shot by
  default) and trained on with the masks fixed;
- ``quantize``: the previous stage's weights converted to int8 (``quantize.mode``), 0 steps
  unless ``quantize.qat`` trains on.

Every stage is an ordinary run, so a rerun skips finished stages (their summaries are read
back), an interrupted stage resumes, and a stage that fails leaves the earlier stages'
workdirs as they were. The result is one table: per stage, test accuracy, parameters (non-zero
and total), the bytes of the weights themselves (int8 values and scales for the quantized stage;
the files orbax writes vary a little between identical runs, these do not) and the measured
latency at batch 1 and 256.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import ml_collections

from lowres_jax import storage
from lowres_jax.config import ConfigError

STAGES = ("finetune", "distill", "prune", "quantize")
ROW_FILE = "stage.json"

# What each stage changes before its own overrides ('' paths are filled with the previous
# stage's workdir).
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "finetune": {},
    "distill": {"method": "distill", "init": {"kind": "scratch", "path": ""}},
    "prune": {"method": "prune", "init": {"kind": "workdir", "path": "", "reinit": ""},
              "prune": {"method": "magnitude"}},
    "quantize": {"method": "quantize", "init": {"kind": "workdir", "path": "", "reinit": ""},
                 "train": {"duration": "0 steps"}, "quantize": {"mode": "w8a8_static"}},
}


def _merge(config: ml_collections.ConfigDict, overrides: dict, where: str) -> None:
  """Sets ``overrides`` (nested) on ``config``; a key the config lacks is a ConfigError."""
  for key, value in overrides.items():
    # config.model's fields are the model's own (checked when the run reads its plan).
    if key not in config and where.split(".", 1)[1:] == ["model."]:
      config[key] = value
      continue
    if key not in config:
      raise ConfigError(f"config.stages.{where}{key} is not a config key; keys there: "
                        f"{', '.join(sorted(config.keys()))}")
    current = config[key]
    if (isinstance(value, dict) and isinstance(current, ml_collections.ConfigDict)
        and value.get("name", current.get("name")) == current.get("name")):
      _merge(current, value, f"{where}{key}.")
    elif isinstance(value, dict):  # Another model (a new 'name'): its fields replace the group.
      config[key] = ml_collections.ConfigDict(value)
    else:
      config[key] = value


def stage_configs(config: ml_collections.ConfigDict, workdir: str
                  ) -> list[tuple[str, ml_collections.ConfigDict, str]]:
  """(stage name, its run config, its workdir) for each stage of ``config.pipeline``."""
  names = tuple(config.pipeline)
  unknown = [n for n in names if n not in STAGES]
  if unknown or not names:
    raise ConfigError(f"config.pipeline = {names}: stages are {', '.join(STAGES)}")
  if names[0] != "finetune" or len(set(names)) != len(names):
    raise ConfigError(f"config.pipeline = {names} must start with 'finetune' (the model the "
                      "other stages shrink) and name each stage once")
  overrides = config.stages.to_dict() if "stages" in config else {}
  extra = sorted(set(overrides) - set(names))
  if extra:
    raise ConfigError(f"config.stages sets {extra}, which config.pipeline = {names} does not run")
  base = copy.deepcopy(config)
  with base.unlocked():
    base.pipeline, base.stages = (), ml_collections.ConfigDict()
  stages, previous, previous_model, workdirs = [], "", base.model, {}
  for index, name in enumerate(names):
    stage = copy.deepcopy(base)
    with stage.unlocked():
      if name != "distill":  # The weights it starts from are the previous stage's model.
        stage.model = copy.deepcopy(previous_model)
      _merge(stage, STAGE_DEFAULTS[name], f"{name}.")
      _merge(stage, overrides.get(name, {}), f"{name}.")
      if index and stage.init.kind == "workdir" and not stage.init.path:
        stage.init.path = previous
      if name == "distill" and not tuple(stage.distill.teachers):
        stage.distill.teachers = (previous,)
      # A teacher named by an earlier stage ('finetune') is that stage's run.
      stage.distill.teachers = tuple(workdirs.get(t, t) for t in stage.distill.teachers)
    stage_workdir = os.path.join(workdir, f"{index + 1}_{name}")
    if index + 1 < len(names) and stage.keep_checkpoints == 0:
      raise ConfigError(f"pipeline stage {name!r} sets keep_checkpoints = 0, but the next stage "
                        "starts from its checkpoint")
    stages.append((name, stage, stage_workdir))
    previous, previous_model = stage_workdir, stage.model
    workdirs[name] = stage_workdir
  return stages


def run_pipeline(config: ml_collections.ConfigDict, workdir: str,
                 show_progress: bool = True) -> list[dict]:
  """Runs (or reads back) each stage and measures it; returns one row per stage."""
  from lowres_jax.train import interrupt, loop  # Local: JAX is slow to import.
  rows = []
  # One watcher for the whole pipeline: a signal that lands between stages, or while a stage
  # finishes (its final evaluation, its summary), is kept until the next stage boundary,
  # where the pipeline stops instead of starting the next stage.
  with interrupt.watching():
    for name, stage_config, stage_workdir in stage_configs(config, workdir):
      interrupt.raise_if_requested(f"the stages before {name!r} are finished in {workdir}; "
                                   "rerun the same command to continue")
      summary = loop.run(stage_config, stage_workdir, show_progress=show_progress)
      rows.append(_measured_row(name, stage_config, stage_workdir, summary))
    interrupt.raise_if_requested(f"every stage is finished in {workdir}; rerun the same "
                                 "command to print the table")
  if _is_main_process():
    storage.write_json(os.path.join(workdir, "pipeline.json"), {"stages": rows}, indent=1)
  return rows


def _is_main_process() -> bool:
  from lowres_jax import parallel
  return parallel.is_main_process()


def _measured_row(name: str, config: ml_collections.ConfigDict, workdir: str,
                  summary: dict) -> dict:
  """The stage's table row, measured once and kept in ``<stage>/stage.json``."""
  path = os.path.join(workdir, ROW_FILE)
  if os.path.exists(path):
    return storage.read_json(path, "a pipeline stage's measurements")
  from lowres_jax import checkpoint
  from lowres_jax.compress import latency, quantize
  from lowres_jax.train import loop
  from lowres_jax.train.plan import read_plan
  plan = read_plan(config)
  model = loop.build_run_model(plan, qat=False)
  test = loop.test_examples(plan).inputs()
  test.pop("label")
  quantized = plan.quantize.active
  if quantized:
    model = quantize.ptq_model(model, plan.quantize)
    variables = quantize.restore(os.path.join(workdir, quantize.INT8_DIR),
                                 quantize.abstract_variables(model, latency.batch_of(test, 1)))
  else:
    variables = checkpoint.load_variables(workdir)
  row = {"stage": name, "workdir": workdir,
         "test/accuracy": summary["int8/test/accuracy" if quantized else "test/accuracy"],
         "model/params": summary["model/params"],
         "model/nonzero_params": summary["model/nonzero_params"],
         "weight_bytes": quantize.weight_bytes(variables),
         **{f"timing/{k}": v for k, v in latency.latencies_ms(model, variables, test).items()}}
  for key in ("test/teacher_agreement", "int8/test/float_agreement", "prune/sparsity"):
    if key in summary:
      row[key] = summary[key]
  if _is_main_process():
    storage.write_json(path, row, indent=1)
  return row


def format_pipeline_table(rows: list[dict], workdir: str) -> str:
  lines = [f"pipeline ({workdir})", "",
           "| stage | test accuracy | non-zero / total params | weights | latency b1 | "
           "latency b256 |", "|---|---|---|---|---|---|"]
  for row in rows:
    lines.append(
        f"| {row['stage']} | {row['test/accuracy']:.4f} | {row['model/nonzero_params']:,} / "
        f"{row['model/params']:,} | {row['weight_bytes'] / 1024:.1f} KiB | "
        f"{row['timing/latency_b1_ms']:.2f} ms | {row['timing/latency_b256_ms']:.2f} ms |")
  return "\n".join(lines)
