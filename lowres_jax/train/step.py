"""Pure step functions: a chunk of train steps and batched evaluation, for a stack of runs.

Every function here takes one run's values and is vmapped over the leading "runs" axis, so a
single run (a stack of one) and a group of seeds or hyperparameter settings share one code path
and one compiled program per shape. Batches are dicts of arrays; the model reads the entries it
needs and owns their preprocessing, so nothing here is specific to images or text.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding

from lowres_jax.compress import distill, prune
from lowres_jax.data import augment
from lowres_jax.train import adapt as adapt_lib, losses, optim
from lowres_jax.train.state import TrainState, split_variables

FORWARD_MODES = ("train", "eval")


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Everything static about a train step: changing any of it changes the compiled program."""
  model: nn.Module
  optim: optim.OptimSpec
  batch_size: int
  chunk_steps: int  # Steps per device call: 1 on CPU (see ``chunk`` below).
  augment: augment.AugmentSettings
  # 'train': dropout on, BatchNorm normalises with batch statistics and updates its running
  # ones. 'eval': the forward pass of training runs in inference mode (running statistics
  # used and kept, no dropout): the usual choice for a linear probe of a BatchNorm backbone.
  forward_mode: str = "train"
  loss: str = "cross_entropy"  # A name in losses.LOSSES.
  adapt: adapt_lib.AdaptSpec = adapt_lib.AdaptSpec()
  distill: distill.DistillSpec = distill.DistillSpec()
  # 'uniform' draws batch examples uniformly; 'class_balanced' draws each class equally often
  # (each example with probability 1 / (classes present * its class's count)).
  sampler: str = "uniform"


def steps_per_call(log_every: int) -> int:
  return 1 if jax.default_backend() == "cpu" else log_every


SAMPLERS = ("uniform", "class_balanced")


def sample_batch_indices(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
  """A batch drawn without replacement, or with replacement when the set is smaller."""
  return jax.random.choice(key, num_examples, (batch_size,), replace=batch_size > num_examples)


def class_counts(labels: jax.Array, num_classes: int) -> jax.Array:
  """Examples per class of the (on-device) training set, as floats."""
  return jnp.zeros(num_classes, jnp.float32).at[labels].add(1.0)


def class_balanced_indices(key: jax.Array, labels: jax.Array, num_classes: int,
                           batch_size: int) -> jax.Array:
  """A batch (with replacement) in which every class present is equally likely."""
  counts = class_counts(labels, num_classes)
  probabilities = 1.0 / (counts[labels] * jnp.sum(counts > 0))
  return jax.random.choice(key, labels.shape[0], (batch_size,), replace=True, p=probabilities)


def apply_model(model: nn.Module, params, model_state: dict, batch: dict, train: bool,
                dropout_key: jax.Array | None = None):
  """``((logits, outputs), new_model_state)``; the state is returned unchanged in eval."""
  variables = {"params": params, **model_state}
  if not train or not model_state:
    rngs = {"dropout": dropout_key} if train else {}
    return model.apply(variables, batch, train=train, rngs=rngs), model_state
  return model.apply(variables, batch, train=True, rngs={"dropout": dropout_key},
                     mutable=list(model_state))


def make_train_chunk(spec: StepSpec, batch_sharding: NamedSharding) -> Callable:
  """``chunk(state, hparams, examples, frozen) -> (state, {"loss", "lr"} per step)`` for one run.

  ``examples["train"]``, the k-shot set (a dict of arrays), stays on device (beside it
  ``examples["pool"]``, distillation's unlabelled inputs, when there is one); each step samples its batch
  and augments it in the program, from a key derived from the state's rng and step alone, which
  is what makes a resumed run identical to an uninterrupted one. ``frozen`` holds pytrees every
  run of a group reads but none trains (the pretrained ``anchor``, the distillation
  ``teachers``); it is not vmapped.
  """
  train_forward = spec.forward_mode == "train"
  adapt = spec.adapt
  loss_term = losses.LOSSES[spec.loss]
  num_classes = spec.augment.num_classes
  # The pool's view: the same ops but those mixing labels (it has distill.mixup instead).
  unlabelled_augment = dataclasses.replace(spec.augment, names=tuple(
      n for n in spec.augment.names if n not in augment.LABEL_MIXING))

  def loss_fn(params, model_state, batch, pool_batch, hparams, step_key, dropout_key, frozen,
              counts):
    inputs = batch
    forward_params = adapt_lib.forward_params(adapt, params, frozen, hparams, step_key)
    if pool_batch is not None:  # One forward pass over both (BatchNorm sees them together).
      inputs = {k: jnp.concatenate([batch[k].astype(v.dtype), v]) for k, v in pool_batch.items()}
    (all_logits, all_outputs), new_model_state = apply_model(
        spec.model, forward_params, model_state, inputs, train_forward, dropout_key)
    labelled = batch["label"].shape[0]
    logits, outputs = all_logits[:labelled], jax.tree.map(lambda x: x[:labelled], all_outputs)
    loss = loss_term(losses.LossContext(batch, logits, outputs, params, hparams, counts))
    if spec.distill.active:
      # The frozen teachers on exactly the student's inputs, in inference mode.
      teacher_logits = [jax.lax.stop_gradient(teacher.apply(variables, inputs, train=False)[0])
                        for teacher, variables in zip(spec.distill.teachers, frozen["teachers"])]
      loss = (hparams["distill_labelled"] * loss
              + distill.distillation_loss(all_logits, teacher_logits, hparams))

    def anchor_outputs():
      # The frozen pretrained model on the same batch in the same forward mode: BatchNorm on
      # the batch's statistics (its own running ones untouched) and the same dropout masks, so
      # the two models' features differ by their weights alone.
      anchor_params, anchor_state = split_variables(frozen["anchor"])
      (_, outputs), _ = apply_model(spec.model, anchor_params, anchor_state, batch,
                                    train_forward, dropout_key)
      return outputs

    penalty = adapt_lib.penalty(adapt, adapt_lib.PenaltyContext(params, outputs, anchor_outputs,
                                                                frozen, hparams))
    return loss + penalty, new_model_state

  def sample(key, examples, batch_size, balanced=False):
    if balanced:
      index = class_balanced_indices(key, examples["label"], num_classes, batch_size)
    else:
      index = sample_batch_indices(key, jax.tree.leaves(examples)[0].shape[0], batch_size)
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x[index], batch_sharding),
                        examples)

  def one_step(state: TrainState, hparams, examples, frozen):
    key = jax.random.fold_in(state.rng, state.step)
    index_key, augment_key, dropout_key = jax.random.split(key, 3)
    batch = augment.augment(
        augment_key, sample(index_key, examples["train"], spec.batch_size,
                            balanced=spec.sampler == "class_balanced"),
        hparams, spec.augment)
    counts = class_counts(examples["train"]["label"], num_classes)
    pool_batch = None
    if spec.distill.pool_batch:
      # Its own stream (folded from the step's key) leaves the labelled draws as they were.
      pool_index_key, pool_augment_key, mixup_key = jax.random.split(
          jax.random.fold_in(key, 1), 3)
      pool_batch = augment.augment(
          pool_augment_key, sample(pool_index_key, examples["pool"], spec.distill.pool_batch),
          hparams, unlabelled_augment)
      if "image" in pool_batch:
        pool_batch = distill.mixup_inputs(mixup_key, pool_batch, hparams["distill_mixup"])
    grad_fn = jax.value_and_grad(
        lambda p: loss_fn(p, state.model_state, batch, pool_batch, hparams, key, dropout_key,
                          frozen, counts),
        has_aux=True)
    (loss, model_state), grads = adapt_lib.gradients(
        adapt, grad_fn, state.params, hparams,
        lambda: optim.path_labels(state.params, spec.optim.freeze, False, True))
    total_steps = spec.optim.total_steps
    grads = adapt_lib.gate_gradients(adapt, grads, hparams, state.step, total_steps)
    tx = optim.build_optimizer(spec.optim, hparams, state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = adapt_lib.scale_updates(updates, adapt_lib.update_multipliers(
        adapt, hparams, state.params, state.step, total_steps))
    params = optax.apply_updates(state.params, updates)
    if "masks" in state.extra:  # Pruning (compress/prune.py): pruned weights stay exactly 0.
      params = prune.apply_masks(params, state.extra["masks"])
    lr = optim.learning_rate_fn(spec.optim, hparams["lr"])(state.step)
    new_state = state.replace(step=state.step + 1, params=params, model_state=model_state,
                              opt_state=opt_state,
                              extra=adapt_lib.update_extra(adapt, state.extra, params, hparams))
    return new_state, {"loss": loss, "lr": lr}

  def chunk(state, hparams, examples, frozen=None):
    frozen = {} if frozen is None else frozen
    if spec.chunk_steps == 1:
      # XLA:CPU runs convolutions inside a loop ~20x slower than in straight-line code
      # (measured: 13 vs 260 steps/s for the default CNN, even for a 1-step scan), so on CPU
      # the host loop calls a one-step program; accelerators keep the loop on device.
      state, metrics = one_step(state, hparams, examples, frozen)
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, _: one_step(s, hparams, examples, frozen), state, None,
                        length=spec.chunk_steps)

  return chunk


def make_eval_logits(model: nn.Module, output: str = "logits") -> Callable:
  """``eval(variables, batch) -> logits`` for one padded batch of one run; with ``output`` a
  named intermediate (``"pre_logits"``) instead."""

  def evaluate(variables, batch):
    logits, intermediates = model.apply(variables, batch, train=False)
    return logits if output == "logits" else intermediates[output]

  return evaluate


def vmap_over_runs(fn: Callable, shared_argnums: Sequence[int] = ()) -> Callable:
  """Vmaps ``fn`` over the leading runs axis of every argument except ``shared_argnums``.

  A group of one run is indexed and re-stacked instead: vmap turns each convolution into a
  grouped one over the runs axis even when that axis has length 1, which costs XLA:CPU ~8% of
  the default CNN's step (results/bench_cpu.md, trainer overhead)."""

  def over_runs(*args):
    per_run = [arg for i, arg in enumerate(args) if i not in shared_argnums]
    if {x.shape[0] for x in jax.tree.leaves(per_run)} == {1}:
      single = [arg if i in shared_argnums else jax.tree.map(lambda x: x[0], arg)
                for i, arg in enumerate(args)]
      return jax.tree.map(lambda x: x[None], fn(*single))
    return jax.vmap(fn, in_axes=tuple(None if i in shared_argnums else 0
                                      for i in range(len(args))))(*args)

  return over_runs
