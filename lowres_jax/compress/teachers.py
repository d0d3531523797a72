"""Teachers for distillation: finished lowres_jax runs, loaded once and frozen."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import flax.linen as nn
import ml_collections

from lowres_jax import storage
from lowres_jax.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Teacher:
  workdir: str
  model: nn.Module
  variables: Any  # {'params': ..., other collections} of its newest readable checkpoint.


def load_teacher(workdir: str, student_plan, build_model: Callable[[Any], nn.Module]) -> Teacher:
  """The run in ``workdir`` as a frozen teacher for ``student_plan``'s task.

  It must be the same task (dataset and classes, in the same order: the logits are compared
  class by class) and have kept a checkpoint.
  """
  from lowres_jax import checkpoint  # Local: orbax is slow to import.
  from lowres_jax.train.plan import read_plan
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise ConfigError(f"config.distill.teachers names {workdir!r}, which holds no lowres_jax "
                      "run (no config.json); point it at a finished run's --workdir")
  plan = read_plan(ml_collections.ConfigDict(storage.read_json(config_path, "a teacher's config")))
  if (plan.dataset, plan.classes) != (student_plan.dataset, student_plan.classes):
    raise ConfigError(
        f"teacher {workdir} was trained on {plan.dataset} classes {list(plan.classes)}, the "
        f"student's task is {student_plan.dataset} classes {list(student_plan.classes)}: a "
        "teacher must classify the same classes in the same order")
  if plan.modality != student_plan.modality:
    raise ConfigError(f"teacher {workdir} reads text with tokenizer {plan.tokenizer!r} at "
                      f"{plan.max_length} tokens, the student with {student_plan.tokenizer!r} at "
                      f"{student_plan.max_length}: they must see the same token ids")
  try:
    variables = checkpoint.load_variables(workdir)
  except (FileNotFoundError, checkpoint.NoUsableCheckpointError) as error:
    raise ConfigError(f"teacher {workdir} has no usable checkpoint ({error}); rerun it with "
                      "config.keep_checkpoints > 0") from None
  return Teacher(workdir=workdir, model=build_model(plan), variables=variables)
