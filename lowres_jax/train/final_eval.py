"""A group's final evaluation: every run's validation and test metrics, its evaluation
variants (EMA weights, WiSE-FT mixtures) with the one chosen on validation, and the probes
fitted on its final embeddings.

``task`` is the loop's task: per-run ``trains`` and ``vals``, the shared ``test``, and
``num_classes``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from lowres_jax import parallel
from lowres_jax.compress import distill
from lowres_jax.data import sources
from lowres_jax.eval import imbalance
from lowres_jax.train import embedding_cache
from lowres_jax.train import adapt as adapt_lib
from lowres_jax.train import probes as probes_lib
from lowres_jax.train.evaluate import Evaluator, split_metrics
from lowres_jax.train.plan import RunPlan
from lowres_jax.train.state import TrainState, stack, unstack


def final_metrics(plan: RunPlan, evaluator: Evaluator, state: TrainState, task,
                  anchor: dict | None, teachers: Sequence = ()
                  ) -> tuple[list[dict], np.ndarray]:
  """Validation and test metrics of every run. With evaluation variants (EMA weights, WiSE-FT
  mixtures), each is evaluated too, under its name ('ema/test/accuracy'; the final weights as
  'final/...'), and the run reports the one with the best validation accuracy (``variant``).
  With distillation teachers, the final weights' agreement with them on test
  ('test/teacher_agreement', 'test/teacher_kl') and the teachers' own test accuracy.
  Also returns the final weights' test logits (runs, N, classes)."""
  final, test_logits = evaluate_with_logits(plan, evaluator, state.variables(), task)
  if teachers:
    teacher_logits = _teacher_test_logits(evaluator, teachers, task)
    teacher_accuracy = split_metrics(teacher_logits, task.test.labels, task.num_classes,
                                     "test")["test/accuracy"]
    for i, metrics in enumerate(final):
      metrics["teacher/test/accuracy"] = teacher_accuracy
      metrics.update(distill.agreement_metrics(test_logits[i], teacher_logits, "test"))
  for i, probed in enumerate(probe_metrics(plan, evaluator, state.variables(), task)):
    final[i].update(probed)
  variants = adapt_lib.eval_variants(plan.adapt, state.variables(), state.extra, anchor)
  if not variants:
    return final, test_logits
  candidates = {"final": final, **{name: evaluate(plan, evaluator, variables, task)
                                   for name, variables in variants.items()}}
  results = []
  for i in range(len(final)):
    # Ties keep the earlier candidate, the final weights first.
    chosen = max(candidates, key=lambda name: candidates[name][i].get("val/accuracy", -1.0))
    merged = {"variant": chosen, **candidates[chosen][i]}
    for name, metrics in candidates.items():
      merged.update({f"{name}/{key}": value for key, value in metrics[i].items()})
    results.append(merged)
  return results, test_logits


def probe_metrics(plan: RunPlan, evaluator: Evaluator, stacked_variables: dict,
                   task) -> list[dict]:
  """``config.eval.probes`` fitted on each run's final embeddings (train/probes.py)."""
  if not plan.eval_probes:
    return [{} for _ in task.trains]
  variables = parallel.fetch(stacked_variables)
  results = []
  for i, (train, val) in enumerate(zip(task.trains, task.vals)):
    run_variables = unstack(variables, i)
    fingerprint = embedding_cache.shared_fingerprint(unstack(variables, i, keepdims=True))
    splits = {"train": (plan.train_split, train), "val": (plan.train_split, val),
              "test": (plan.test_split, task.test)}

    def features(split: str):
      name, examples = splits[split]
      if not len(examples):
        return np.zeros((0, 1), np.float32)
      return cached_features(plan, evaluator, run_variables, fingerprint, name, examples)

    labels = {split: examples.labels for split, (_, examples) in splits.items()}
    results.append(probes_lib.run_probes(plan.eval_probes, features, labels, task.num_classes))
  return results


def _teacher_test_logits(evaluator: Evaluator, teachers: Sequence, task) -> np.ndarray:
  """The teachers' test logits; several teachers as the log of their mean probabilities."""
  probabilities = []
  for teacher in teachers:
    teacher_evaluator = dataclasses.replace(evaluator, model=teacher.model)
    stacked = jax.tree.map(lambda leaf: np.asarray(leaf)[None], teacher.variables)
    logits = teacher_evaluator.logits(parallel.put_replicated(stacked, evaluator.mesh),
                                      task.test.inputs(), shared=True)[0]
    probabilities.append(np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1)))
  return np.log(np.clip(np.mean(probabilities, axis=0), 1e-12, 1.0))


def evaluate(plan: RunPlan, evaluator: Evaluator, stacked_variables: dict,
             task) -> list[dict]:
  """Validation and test metrics of stacked variables (``evaluate_with_logits``'s first)."""
  return evaluate_with_logits(plan, evaluator, stacked_variables, task)[0]


def evaluate_with_logits(plan: RunPlan, evaluator: Evaluator, stacked_variables: dict,
                         task) -> tuple[list[dict], np.ndarray]:
  """Validation and test metrics of stacked variables, and their test logits (runs, N,
  classes; before any post-hoc adjustment, which only the metrics see). A long-tail run's
  test metrics include its many/medium/few-shot groups (eval/imbalance.py). When all runs share one backbone (nothing trained but the heads), their logits
  come from cached features (train/embedding_cache.py)."""
  variables = parallel.fetch(stacked_variables)
  fingerprint = embedding_cache.shared_fingerprint(variables)
  backbone = unstack(variables, 0)

  def split_logits(examples: list[sources.Examples], split: str, shared: bool) -> np.ndarray:
    """(runs, N, classes); ``examples`` is the one shared split or one per run."""
    if fingerprint is None:
      inputs = examples[0].inputs() if shared else stack([e.inputs() for e in examples])
      return evaluator.logits(stacked_variables, inputs, shared)
    features = [cached_features(plan, evaluator, backbone, fingerprint, split, e) for e in examples]
    if shared:
      return embedding_cache.head_logits(features[0], variables["params"])
    return np.stack([embedding_cache.head_logits(f, unstack(variables["params"], i, keepdims=True))[0]
                     for i, f in enumerate(features)])

  counts = [imbalance.class_counts(train.labels, task.num_classes) for train in task.trains]

  def predicted(logits: np.ndarray, run: int) -> np.ndarray:
    return imbalance.as_predicted(logits, task.trains[run].labels, task.num_classes,
                                  plan.logit_adjust)

  results = [{} for _ in task.vals]
  if len(task.vals[0]):
    val_logits = split_logits(task.vals, plan.train_split, shared=False)
    for i, val in enumerate(task.vals):
      results[i].update(split_metrics(predicted(val_logits[i], i), val.labels,
                                      task.num_classes, "val"))
  test_logits = split_logits([task.test], plan.test_split, shared=True)
  for i in range(len(task.vals)):
    logits = predicted(test_logits[i], i)
    results[i].update(split_metrics(logits, task.test.labels, task.num_classes, "test"))
    results[i].update(imbalance.group_metrics(logits, task.test.labels, counts[i], "test"))
  return results, test_logits


def cached_features(plan: RunPlan, evaluator: Evaluator, variables: dict, fingerprint: str,
              split: str, examples: sources.Examples) -> np.ndarray:
  """``pre_logits`` of ``examples`` (from ``split``) under the backbone ``fingerprint``,
  embedded once per process and example (train/embedding_cache.py)."""
  source = (plan.dataset, split, plan.data_dir, plan.modality)
  inputs = examples.inputs()
  return embedding_cache.FEATURES.features(
      fingerprint, source, examples.ids,
      lambda rows: evaluator.features(variables, {k: v[rows] for k, v in inputs.items()}))
