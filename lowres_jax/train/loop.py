"""The trainer: one run, or a group of runs that share a compiled step, from config to summary.

A group is a list of configs whose static parts agree (same data shapes, model, schedule); they
differ only in seed and traced hyperparameters. Their states are stacked and trained together
under ``jax.vmap``. A single run is a group of one, so ``main`` and ``sweep`` share this code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from lowres_jax.user_error import UserError
from lowres_jax import checkpoint, parallel, records, storage
from lowres_jax.compress import distill as distill_lib, prune as prune_lib
from lowres_jax.compress import quantize as quantize_lib, teachers as teachers_lib
from lowres_jax.config import ConfigError, config_hash, duration_to_steps
from lowres_jax.data import augment, fewshot, file_builder, sources, text_sources, user_files
from lowres_jax.eval import imbalance
from lowres_jax.models import build_model
from lowres_jax.train import embedding_cache
from lowres_jax.train import adapt as adapt_lib, head_init, hparams as hparams_lib, interrupt, optim
from lowres_jax.train import final_eval, selection
from lowres_jax.train import step as step_lib
from lowres_jax.train.compiled import CompileCache
from lowres_jax.train.evaluate import Evaluator, split_metrics
from lowres_jax.train.plan import RunPlan, read_plan
from lowres_jax.train.progress import Progress
from lowres_jax.train import workdir as workdir_lib
from lowres_jax.train.state import TrainState, split_variables, stack, unstack
from lowres_jax.weights import init as init_lib
from lowres_jax.train.writer import MetricsWriter

log = logging.getLogger(__name__)

TIMING_PREFIX = "timing/"  # Summary keys that measure the machine, not the model.


class NonFiniteLossError(UserError, FloatingPointError):
  """The training loss became NaN or infinite."""


def run(config: ml_collections.ConfigDict, workdir: str, cache: CompileCache | None = None,
        show_progress: bool = True) -> dict:
  """Trains and evaluates one run into ``workdir``; returns its summary.

  A NaN or infinite loss stops the run with ``NonFiniteLossError`` naming the step.
  """
  return train_group([config], [workdir], cache, show_progress)[0]


def train_group(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str],
                cache: CompileCache | None = None, show_progress: bool = True,
                stop_on_nonfinite: bool = True) -> list[dict]:
  """Trains runs that share a static plan together; finished runs are read back, not rerun.

  With ``stop_on_nonfinite`` off (a sweep's choice: one diverging learning rate must not end
  the grid), a run whose loss turns NaN/inf is finished with ``diverged_at_step`` set and no
  metrics, while the other runs of its group train on unaffected.
  """
  plans = [read_plan(c) for c in configs]
  if len({p.static_part() for p in plans}) != 1:
    raise ValueError("runs in a group must differ only in seed, method label and traced "
                     f"hyperparameters ({', '.join(hparams_lib.config_keys())})")
  for config, workdir in zip(configs, workdirs):
    workdir_lib.check_same_config(config, workdir)
  summaries = [workdir_lib.read_summary(w) for w in workdirs]
  todo = [i for i, s in enumerate(summaries) if s is None]
  if not todo:
    return summaries
  # One owner per workdir (nothing lost): a second process on a run stops at once.
  # In a multi-host run the processes are one run: the main one holds the locks.
  with contextlib.ExitStack() as held, interrupt.watching():
    for i in todo:
      held.enter_context(storage.owner(workdirs[i], enabled=parallel.is_main_process()))
    workdir_lib.settle_pending_summaries([workdirs[i] for i in todo])
    for i in todo:  # Another process may have finished it while this one waited to start.
      workdir_lib.check_same_config(configs[i], workdirs[i])
      summaries[i] = workdir_lib.read_summary(workdirs[i])
    todo = [i for i in todo if summaries[i] is None]
    if todo:
      cache = cache if cache is not None else CompileCache()
      trained = _train_unfinished([configs[i] for i in todo], [plans[i] for i in todo],
                                  [workdirs[i] for i in todo], cache, show_progress,
                                  stop_on_nonfinite)
      for i, summary in zip(todo, trained):
        summaries[i] = summary
  return summaries


@dataclasses.dataclass(frozen=True)
class _Task:
  """What a group of runs trains on and with: data per run, shared test set, model, optimizer."""
  manifests: list
  trains: list[sources.Examples]
  vals: list[sources.Examples]
  pools: list[sources.Examples]  # Distillation's unlabelled inputs per run; [] without a pool.
  test: sources.Examples
  num_classes: int
  total_steps: int
  model: Any
  optim_spec: optim.OptimSpec


def _prepare_task(configs, plans: list[RunPlan], workdirs: list[str], embed_pretrained
                  ) -> _Task:
  """Draws each run's split (writing config.json and split.json) and builds the model.

  ``embed_pretrained(model)`` returns ``embed(run_index, examples)``: the pretrained model's
  ``pre_logits``, which label-budget strategies choose from (train/selection.py)."""
  plan = plans[0]
  parallel.check_divisible(plan.batch_size, "config.train.batch_size")
  parallel.check_divisible(plan.eval_batch_size, "config.eval.batch_size")
  pool = load_split(plan, plan.train_split)
  test = test_examples(plan)
  model = build_run_model(plan)
  manifests = [fewshot.draw_manifest(pool, plan.dataset, plan.classes, plan.shots,
                                     plan.val_per_class, p.seed, plan.imbalance) for p in plans]
  if plan.selection.active:
    manifests = selection.choose_training_sets(manifests, plan.selection, pool, workdirs,
                                               embed_pretrained(model))
  if plan.pool_size:
    manifests = [fewshot.with_pool(m, pool, plan.pool_size) for m in manifests]
  if user_files.is_file_dataset(plan.dataset):
    source = file_builder.source_record(plan.dataset, plan.data_options,
                                        sources.resolve_data_dir(plan.data_dir))
    manifests = [dataclasses.replace(m, source=source) for m in manifests]
  for config, manifest, workdir in zip(configs, manifests, workdirs):
    workdir_lib.write_run_files(config, manifest, workdir)
  trains = [fewshot.select(pool, m.train_ids, plan.classes) for m in manifests]
  total_steps = duration_to_steps(plan.duration, len(trains[0]), plan.batch_size)
  return _Task(
      manifests=manifests, trains=trains,
      pools=[fewshot.select(pool, m.pool_ids, plan.classes) for m in manifests
             ] if plan.pool_size else [],
      vals=[fewshot.select(pool, m.val_ids, plan.classes) for m in manifests], test=test,
      num_classes=len(plan.classes), total_steps=total_steps,
      model=model,
      optim_spec=optim.OptimSpec.of_plan(plan, total_steps))


def augment_settings(plan: RunPlan) -> augment.AugmentSettings:
  """The static part of the run's augmentation (the strengths are traced hyperparameters)."""
  mask_token = plan.modality.mask_token_id() if "token_mask" in plan.augment else -1
  return augment.AugmentSettings(plan.augment, plan.crop_pad, num_classes=len(plan.classes),
                                 num_ops=plan.augment_ops, mask_token=mask_token)


def build_run_model(plan: RunPlan, qat: bool = True):
  """The config's model; with 'lora' among the methods, wrapped with its adapters; with
  ``quantize.qat`` (and ``qat``), with fake quantization in its forward pass."""
  model = build_model(plan.model_name, len(plan.classes), **dict(plan.model_kwargs))
  model = adapt_lib.wrap_model(plan.adapt, model)
  if qat and plan.quantize.qat:
    model = quantize_lib.qat_model(model, plan.quantize)
  return model


def test_examples(plan: RunPlan) -> sources.Examples:
  """The task's test split: the test split's examples of its classes, labels 0..C-1."""
  return fewshot.restrict_to_classes(load_split(plan, plan.test_split), plan.classes)


def load_split(plan: RunPlan, split: str) -> sources.Examples:
  """Images as they are; text tokenised to ``plan.max_length`` (both cached per process)."""
  return plan.modality.load_split(plan.dataset, split, plan.data_dir, plan.data_options)


def _input_stats(plan: RunPlan) -> dict:
  """What a run's files record about its inputs beyond split.json: token lengths for text."""
  return plan.modality.input_stats(plan.dataset, (plan.train_split, plan.test_split),
                                   plan.data_dir, plan.data_options)


def _label_inputs(plan: RunPlan) -> dict:
  """The task's class names in ``plan.label_template``, tokenised like the data."""
  names = text_sources.label_names(plan.dataset, plan.data_dir, plan.data_options)
  texts = head_init.template_names([names[c] for c in plan.classes], plan.label_template)
  return plan.modality.encode(texts)


def _train_unfinished(configs, plans: list[RunPlan], workdirs: list[str], cache: CompileCache,
                      show_progress: bool, stop_on_nonfinite: bool) -> list[dict]:
  start_time = time.perf_counter()
  compile_seconds_before = cache.compile_seconds
  plan = plans[0]
  mesh = parallel.make_mesh()

  def embed_pretrained(model):
    evaluator = Evaluator(model, plan.eval_batch_size, mesh, cache)
    # Loaded on the first call only: resumed runs read their choice from split.json.
    pretrained = functools.cache(lambda: _pretrained_per_run(plans, cache, show_progress))

    def embed(i: int, examples: sources.Examples) -> np.ndarray:
      sample = {k: v[:1] for k, v in examples.inputs().items()}
      variables = _anchor_variables(model, plans[i], sample, pretrained()[i])
      fingerprint = embedding_cache.shared_fingerprint(
          jax.tree.map(lambda leaf: np.asarray(leaf)[None], variables))
      return final_eval.cached_features(plans[i], evaluator, variables, fingerprint,
                                        plan.train_split, examples)
    return embed

  task = _prepare_task(configs, plans, workdirs, embed_pretrained)
  sample = {k: v[:1] for k, v in task.trains[0].inputs().items()}
  fresh = [initial_state(task.model, task.optim_spec, p, sample) for p in plans]
  if task.total_steps and not optim.count_trainable(fresh[0].params, plan.freeze):
    raise ConfigError(f"config.freeze = {plan.freeze!r} freezes every parameter, so "
                      f"{task.total_steps} training steps would change nothing. Loosen the "
                      "regex, or set config.train.duration='0 steps' to evaluate without "
                      "training.")
  managers = [checkpoint.make_manager(w, plan.keep_checkpoints) for w in workdirs]
  start_step, states = workdir_lib.restore_or_start(managers, fresh)
  evaluator = Evaluator(task.model, plan.eval_batch_size, mesh, cache)
  anchor = None
  # Pretrained weights matter to a start, and to methods that compare with them throughout.
  if start_step == 0 or plan.adapt.needs_anchor:
    pretrained = _pretrained_per_run(plans, cache, show_progress)
    if plan.adapt.needs_anchor:  # The pretrained model, one for the group (heads unused).
      anchor = _anchor_variables(task.model, plan, sample, pretrained[0])
  if start_step == 0:
    states = [initial_state(task.model, task.optim_spec, p, sample, loaded, train, evaluator)
              for p, loaded, train in zip(plans, pretrained, task.trains)]
  writers = ([MetricsWriter(w, start_step) for w in workdirs]
             if parallel.is_main_process() else [])
  label = workdirs[0] if len(workdirs) == 1 else f"{len(workdirs)} runs"
  progress = Progress(task.total_steps, start_step, os.path.basename(label.rstrip("/")) or label,
                      enabled=show_progress and parallel.is_main_process())

  teachers = [teachers_lib.load_teacher(w, plan, build_run_model) for w in plan.teachers]
  frozen = {"anchor": anchor} if anchor is not None else {}
  if teachers:
    frozen["teachers"] = tuple(t.variables for t in teachers)
  frozen = parallel.put_replicated(frozen, mesh)
  state, train_seconds, diverged = _run_steps(
      plans, task, parallel.put_replicated(stack(states), mesh), start_step, mesh, cache,
      evaluator, writers, managers, progress, workdirs, stop_on_nonfinite, frozen, teachers)

  final, test_logits = final_eval.final_metrics(plan, evaluator, state, task, anchor, teachers)
  _record_nonfinite_evaluation(final, task.total_steps, workdirs, diverged, stop_on_nonfinite)
  final_variables = parallel.fetch(state.variables())  # Once: quantization and the summaries.
  if plan.quantize.active:
    for i in set(range(len(plans))) - set(diverged):
      final[i].update(quantize_lib.quantize_and_evaluate(
          build_run_model(plan, qat=False), plan.quantize, unstack(final_variables, i),
          task.trains[i].inputs(), plan.batch_size, evaluator, task.test, task.num_classes,
          test_logits[i], workdirs[i]))
  for i in diverged:
    final[i] = {}  # A diverged model's predictions are meaningless; report none.
  for i, writer in enumerate(writers):
    if final[i]:
      writer.write(task.total_steps, final[i])
    writer.close()
  trained_steps = task.total_steps - start_step
  timing = {
      "wall_s": time.perf_counter() - start_time,
      "compile_s": cache.compile_seconds - compile_seconds_before,
      "train_s": train_seconds,
      "train_examples_per_s": (len(plans) * trained_steps * plan.batch_size / train_seconds
                               if train_seconds > 0 else float("nan")),
      "runs_in_group": len(plans),
      "resumed_from_step": start_step,
  }
  param_counts = {"model/params": int(sum(np.size(p) for p in jax.tree.leaves(fresh[0].params))),
                  "model/trainable_params": optim.count_trainable(fresh[0].params, plan.freeze)}
  summaries = []
  for i, (p, manifest, workdir) in enumerate(zip(plans, task.manifests, workdirs)):
    summary = _summary(p, manifest, task.total_steps, len(task.test), final[i], timing)
    summary.update(param_counts)
    run_params = unstack(final_variables["params"], i)
    summary["model/nonzero_params"] = int(sum(np.count_nonzero(leaf)
                                              for leaf in jax.tree.leaves(run_params)))
    if p.prune.active:
      summary.update(prune_lib.sparsity_report(p.prune, run_params))
    summary.update(_input_stats(p))
    summary["diverged_at_step"] = diverged.get(i)
    summaries.append(summary)
  if parallel.is_main_process():
    workdir_lib.write_summaries(workdirs, summaries)
    for p, workdir in zip(plans, workdirs):
      if p.keep_checkpoints == 0:  # Only the table was wanted: free the disk once finished.
        shutil.rmtree(os.path.join(workdir, "checkpoints"), ignore_errors=True)
  return summaries


def _run_steps(plans: list[RunPlan], task: _Task, state, step: int, mesh, cache: CompileCache,
               evaluator: Evaluator, writers, managers, progress: Progress,
               workdirs: list[str], stop_on_nonfinite: bool, frozen: dict, teachers: list):
  """Trains the stacked state to the end, logging, evaluating and checkpointing on the way.

  Returns the final state, the seconds spent in train steps, and {run index: first step with
  a non-finite loss}.
  """
  plan = plans[0]
  hparams = parallel.put_replicated(
      stack([hparams_lib.as_arrays(p.hparams()) for p in plans]), mesh)
  examples = {"train": stack([t.inputs() for t in task.trains])}
  if task.pools:  # Inputs only: the pool's labels are never read.
    examples["pool"] = stack([{k: v for k, v in p.inputs().items() if k != "label"}
                              for p in task.pools])
  examples = parallel.put_replicated(examples, mesh)
  distill_spec = distill_lib.DistillSpec(tuple(t.model for t in teachers), plan.pool_batch)
  train_seconds = 0.0
  diverged = {i: step for i, step in enumerate(map(workdir_lib.read_diverged, workdirs))
              if step is not None}
  while step < task.total_steps:
    chunk = min(plan.log_every, task.total_steps - step)
    per_call = min(step_lib.steps_per_call(plan.log_every), chunk)
    spec = step_lib.StepSpec(task.model, task.optim_spec, plan.batch_size, per_call,
                             augment_settings(plan), plan.forward_mode, plan.loss, plan.adapt,
                             distill_spec, plan.sampler)
    compiled = compiled_train_chunk(spec, mesh, cache, state, hparams, examples, frozen)
    chunk_start = time.perf_counter()
    outputs = []
    for call in range(chunk // per_call):
      state = _update_masks(plan, task, state, step + call * per_call, per_call, mesh, cache)
      state, call_metrics = compiled(state, hparams, examples, frozen)
      outputs.append(call_metrics)
    metrics = jax.tree.map(lambda *m: np.concatenate(m, axis=1), *parallel.fetch(outputs))
    train_seconds += time.perf_counter() - chunk_start
    record_nonfinite_losses(metrics["loss"], step, workdirs, diverged, stop_on_nonfinite)
    step += chunk
    for i, writer in enumerate(writers):
      writer.write(step, {"train/loss": float(np.mean(metrics["loss"][i])),
                          "train/learning_rate": float(metrics["lr"][i, -1])})
    progress.update(step, float(np.nanmean(metrics["loss"][:, -1])))
    if plan.eval_every and step % plan.eval_every == 0 and step < task.total_steps:
      _log_validation(evaluator, state.variables(), task, plan.logit_adjust, step, writers)
    if step == task.total_steps and plan.head_refit:
      state = _refit_heads(plans, task, evaluator, state, mesh, diverged)
    saved = (step == task.total_steps
             or (plan.checkpoint_every and step % plan.checkpoint_every == 0))
    if saved or interrupt.requested() is not None:
      workdir_lib.save_all(managers, state, step)
    interrupt.raise_if_requested(
        f"the checkpoint of step {step} is saved in {', '.join(workdirs)}; rerun the same "
        "command to resume")
  if task.total_steps == 0 and step == 0:
    # A run of no steps (a one-shot prune without retraining, a quantize-only stage) still
    # applies its step-0 work and leaves the checkpoint that measurement and the next
    # pipeline stage start from.
    state = _update_masks(plan, task, state, 0, 1, mesh, cache)
    workdir_lib.save_all(managers, state, 0)
  progress.close()
  return state, train_seconds, diverged


def _update_masks(plan: RunPlan, task: _Task, state: TrainState, step: int, per_call: int,
                  mesh, cache: CompileCache) -> TrainState:
  """Pruning's mask update when the schedule has one in this call's steps (between steps, so
  the train step only multiplies by the masks): new magnitude masks, applied at once."""
  if not plan.prune.active:
    return state
  due = [s for s in prune_lib.mask_update_steps(plan.prune, task.total_steps)
         if step <= s < step + per_call]
  if not due:
    return state
  sparsity = np.float32(prune_lib.target_sparsity(plan.prune, due[0], task.total_steps))

  def update(state, sparsity):
    masks = prune_lib.update_masks(plan.prune, state.params, sparsity)
    return state.replace(params=prune_lib.apply_masks(state.params, masks),
                         extra={**state.extra, "masks": masks})

  replicated = parallel.replicated(mesh)
  jitted = jax.jit(step_lib.vmap_over_runs(update, shared_argnums=(1,)),
                   in_shardings=replicated, out_shardings=replicated, donate_argnums=0)
  compiled = cache.get("prune_masks", (plan.prune, parallel.mesh_key(mesh)), jitted, state,
                       sparsity)
  return compiled(state, sparsity)


def _refit_heads(plans: list[RunPlan], task: _Task, evaluator: Evaluator, state: TrainState,
                 mesh, diverged: dict[int, int]) -> TrainState:
  """SetFit's second stage: each run's head fitted again (``plan.head_refit``) on its trained
  encoder's embeddings of its k-shot set, before the last checkpoint is written, so the
  checkpoint holds the head the metrics are of. Diverged runs keep theirs."""
  variables = parallel.fetch(state.variables())
  heads = []
  for i, (p, train) in enumerate(zip(plans, task.trains)):
    run_variables = unstack(variables, i)
    if i not in diverged:
      run_variables = _fit_head(p, p.head_refit, run_variables, train, evaluator)
    heads.append(run_variables["params"]["head"])
  params = {**variables["params"], "head": stack(heads)}
  return state.replace(params=parallel.put_replicated(params, mesh))


def compiled_train_chunk(spec, mesh, cache, *args):
  replicated = parallel.replicated(mesh)
  chunk_fn = step_lib.make_train_chunk(spec, parallel.batch_sharding(mesh))
  jitted = jax.jit(step_lib.vmap_over_runs(chunk_fn, shared_argnums=(3,)), in_shardings=replicated,
                   out_shardings=replicated, donate_argnums=0)
  return cache.get("train_chunk", (spec, parallel.mesh_key(mesh)), jitted, *args)


def initial_state(model, optim_spec: optim.OptimSpec, plan: RunPlan, sample: dict,
                   pretrained: init_lib.Loaded | None = None,
                   train: sources.Examples | None = None,
                   evaluator: Evaluator | None = None) -> TrainState:
  """The run's state at step 0; without ``train`` only its shapes matter (a template to
  restore a checkpoint into), so pretrained weights and the head initialiser are skipped."""
  init_key, train_key = jax.random.split(jax.random.PRNGKey(plan.seed))
  variables = jax.device_get(_init_variables(model, init_key, sample))
  if pretrained is not None:
    variables = init_lib.merge(variables, pretrained, plan.init)
  if train is not None and plan.head_init != "zero":
    variables = _fit_head(plan, plan.head_init, variables, train, evaluator)
  params, model_state = split_variables(variables)
  adapt_lib.check_params(plan.adapt, params)
  extra = adapt_lib.initial_extra(plan.adapt, params)
  if plan.prune.active:
    try:
      prune_lib.check_targets(plan.prune, params)
    except ValueError as error:
      raise ConfigError(f"config.prune: {error}") from None
    extra["masks"] = prune_lib.initial_masks(params)
  tx = optim.build_optimizer(optim_spec, hparams_lib.placeholder(), params)
  return TrainState(step=np.zeros((), np.int32), params=params, model_state=model_state,
                    opt_state=jax.device_get(tx.init(params)), rng=np.asarray(train_key),
                    extra=jax.device_get(extra))


def _anchor_variables(model, plan: RunPlan, sample: dict,
                      pretrained: init_lib.Loaded | None) -> dict:
  """The pretrained model's variables as the model holds them (its head freshly initialised
  from the first run's seed; no method reads the anchor's head). A scratch run has no
  pretrained weights: its fresh initialisation is returned."""
  init_key, _ = jax.random.split(jax.random.PRNGKey(plan.seed))
  variables = jax.device_get(_init_variables(model, init_key, sample))
  return variables if pretrained is None else init_lib.merge(variables, pretrained, plan.init)


def _fit_head(plan: RunPlan, kind: str, variables: dict, train: sources.Examples,
              evaluator: Evaluator) -> dict:
  """``variables`` (one run's) with the head ``kind`` fitted on their own embeddings."""
  fingerprint = embedding_cache.shared_fingerprint(
      jax.tree.map(lambda leaf: np.asarray(leaf)[None], variables))
  kernel, bias = head_init.fit_head(
      kind, lambda: final_eval.cached_features(plan, evaluator, variables, fingerprint,
                                               plan.train_split, train),
      train.labels, lambda: evaluator.features(variables, _label_inputs(plan)),
      len(plan.classes), plan.head_scale, plan.head_l2,
      dim=variables["params"]["head"]["kernel"].shape[0], seed=plan.seed)
  return head_init.with_head(variables, kernel, bias)


@functools.partial(jax.jit, static_argnums=0)
def _init_variables(model, key, sample):
  params_key, dropout_key = jax.random.split(key)
  return model.init({"params": params_key, "dropout": dropout_key}, sample, train=False)


def _pretrained_per_run(plans: list[RunPlan], cache: CompileCache,
                        show_progress: bool) -> list:
  """Each run's pretrained variables: loaded once for the group, or per seed when each run has
  its own source model (``init.source_seed = 'run'``)."""
  load = lambda p: init_lib.load(p.init, p.model_name,
                                 lambda: _ensure_source_trained(p, cache, show_progress))
  if plans[0].init.source_seed == "run":
    return [load(p) for p in plans]
  return [load(plans[0])] * len(plans)


def source_identity(plan: RunPlan) -> str:
  """Which pretrained model a run starts from: what the report counts per cell."""
  if plan.init.kind == "source":
    return os.path.basename(_source_workdir(plan))
  return f"{plan.init.kind}:{plan.init.path}" if plan.init.path else plan.init.kind


def _source_workdir(plan: RunPlan) -> str:
  source_config = _source_config(plan)
  return os.path.join(os.path.expanduser(plan.cache_dir),
                      f"source-{source_config.data.name}-{config_hash(source_config)}")


def _source_config(plan: RunPlan) -> ml_collections.ConfigDict:
  if plan.init.source_seed != "run":
    return plan.source
  source_config = ml_collections.ConfigDict(plan.source.to_dict())
  source_config.seed = plan.seed
  return source_config


def _ensure_source_trained(plan: RunPlan, cache: CompileCache, show_progress: bool) -> str:
  """Pretrains on the source task once; later runs with the same source config reuse it."""
  source_config = _source_config(plan)
  workdir = _source_workdir(plan)
  # Disabled in a multi-host run, whose processes train the source together: one holding a
  # cluster-wide lock would wait forever for the others.
  with storage.owner(workdir, "source", enabled=jax.process_count() == 1, wait=True,
                     flag="config.cache_dir"):
    if workdir_lib.read_summary(workdir) is None:
      log.info("pretraining the source model into %s (cached for later runs)", workdir)
      train_group([source_config], [workdir], cache, show_progress)
  return workdir


def record_nonfinite_losses(losses: np.ndarray, first_step: int, workdirs: Sequence[str],
                      diverged: dict[int, int], stop: bool) -> None:
  """Notes each run's first non-finite loss; raises for it when ``stop``."""
  for run, offset in np.argwhere(~np.isfinite(losses)):
    run, step = int(run), first_step + int(offset) + 1
    if stop:
      raise NonFiniteLossError(
          f"train/loss is {losses[run, offset]} at step {step} of the run in {workdirs[run]}. "
          "Lower config.optim.lr, or set config.optim.grad_clip; the last checkpoint before "
          "this step is kept.")
    if run not in diverged:
      _mark_diverged(run, step, workdirs, diverged, "train/loss")


def _mark_diverged(run: int, step: int, workdirs: Sequence[str], diverged: dict[int, int],
                   what: str) -> None:
  diverged[run] = step
  log.warning("run in %s diverged (non-finite %s) at step %d", workdirs[run], what, step)
  if parallel.is_main_process():  # Survives a kill: the NaN state is checkpointed too.
    workdir_lib.write_json(os.path.join(workdirs[run], workdir_lib.DIVERGED_FILE),
                           {"step": step})


EVALUATION_LOSSES = ("val/loss", "test/loss")


def _record_nonfinite_evaluation(final: list[dict], step: int, workdirs: Sequence[str],
                                 diverged: dict[int, int], stop: bool) -> None:
  """A non-finite validation or test loss (finite training, or no training, but weights that
  predict inf or NaN) marks the run diverged like a non-finite training loss: its accuracy,
  taken from NaN logits, means nothing."""
  for run, metrics in enumerate(final):
    bad = [k for k in EVALUATION_LOSSES if k in metrics and not np.isfinite(metrics[k])]
    if not bad or run in diverged:
      continue
    if stop:
      raise NonFiniteLossError(
          f"{bad[0]} is {metrics[bad[0]]} after step {step} of the run in {workdirs[run]}: its "
          "weights predict non-finite logits. Check the weights it started from "
          "(config.init.path), or lower config.optim.lr.")
    _mark_diverged(run, step, workdirs, diverged, bad[0])


def _log_validation(evaluator, variables, task: _Task, tau: float, step, writers) -> None:
  """Validation metrics mid-run, from the logits the run predicts with (post-hoc adjusted by
  ``tau`` > 0, as at the end)."""
  vals = task.vals
  if not len(vals[0]):  # val_per_class = 0: nothing to validate on.
    return
  logits = evaluator.logits(variables, stack([v.inputs() for v in vals]), shared=False)
  for i, writer in enumerate(writers):
    predicted = imbalance.as_predicted(logits[i], task.trains[i].labels, task.num_classes, tau)
    writer.write(step, split_metrics(predicted, vals[i].labels, task.num_classes, "val"))


def _summary(plan: RunPlan, manifest, total_steps, num_test, final, timing) -> dict:
  return {
      "method": plan.method, "seed": plan.seed, "dataset": plan.dataset,
      "classes": list(plan.classes), "shots": plan.shots, "imbalance": plan.imbalance,
      "budget": plan.selection.budget, "selection": plan.selection.strategy,
      "model": plan.model_name,
      "init": dataclasses.asdict(plan.init), "pretrained": source_identity(plan),
      "hparams": plan.hparams(), "steps": total_steps, "code_commit": records.code_commit(),
      "num_train": len(manifest.train_ids), "num_val": len(manifest.val_ids),
      "num_test": num_test, "train_sha256": fewshot.ids_sha256(manifest.train_ids),
      **final, **{TIMING_PREFIX + k: v for k, v in timing.items()},
  }


