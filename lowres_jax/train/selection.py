"""Label-budget runs: which training examples a run labels, chosen by a strategy.

With ``config.data.selection.strategy`` set, a run's training set is not k examples per class
but ``budget`` examples chosen from an unlabelled candidate pool (``pool_size`` examples of the
task's classes from the training split, validation excluded, drawn from the run's seed) by a
strategy of data/select.py, reading the ``pre_logits`` of the run's initial (pretrained)
model. The chosen ids go to ``split.json`` like any k-shot draw, with the strategy and the
candidates' sha256, so a table can say exactly what each seed labelled.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lowres_jax.data import fewshot
from lowres_jax.data import select as select_lib

CONFIG_DEFAULTS = {"strategy": "", "budget": 0, "rounds": 1, "pool_size": 2000}


@dataclasses.dataclass(frozen=True)
class SelectionSpec:
  strategy: str = ""   # '' is off (k-shot per class); else a name in data/select.STRATEGIES.
  budget: int = 0      # Labels in all, over all classes.
  rounds: int = 1      # max_entropy: label, train a probe, select again, this many times.
  pool_size: int = 2000  # Unlabelled candidates the strategy chooses from.

  def __post_init__(self):
    if not self.strategy:
      changed = sorted(k for k, v in CONFIG_DEFAULTS.items()
                       if k != "strategy" and getattr(self, k) != v)
      if changed:
        raise ValueError(f"sets {changed} but strategy is '' (off: k shots per class); set a "
                         "strategy or leave them at their defaults")
      return
    if self.strategy not in select_lib.STRATEGIES:
      raise ValueError(f"strategy {self.strategy!r} is unknown; known: "
                       f"{sorted(select_lib.STRATEGIES)}")
    if self.budget < 1:
      raise ValueError(f"budget = {self.budget} must be >= 1 (labels in all)")
    if self.pool_size < self.budget:
      raise ValueError(f"pool_size = {self.pool_size} is below budget = {self.budget}: the "
                       "strategy needs at least as many candidates as labels")
    if not 1 <= self.rounds <= self.budget:
      raise ValueError(f"rounds = {self.rounds} must be in [1, budget = {self.budget}] (each "
                       "round labels at least one example)")
    if self.rounds > 1 and not select_lib.STRATEGIES[self.strategy].uses_rounds:
      raise ValueError(f"rounds = {self.rounds}, but {self.strategy!r} chooses in one pass; "
                       "rounds are max_entropy's (label, fit, select again)")

  @property
  def active(self) -> bool:
    return bool(self.strategy)


def candidates(manifest: fewshot.SplitManifest, spec: SelectionSpec, pool) -> np.ndarray:
  """The unlabelled candidates' ids: ``pool_size`` training examples of the task's classes
  outside validation, from the run's seed (the distillation pool's draw)."""
  return np.asarray(fewshot.with_pool(manifest, pool, spec.pool_size).pool_ids, np.int64)


def select_manifest(manifest: fewshot.SplitManifest, spec: SelectionSpec, candidate_ids,
                    features: np.ndarray, candidate_labels: np.ndarray
                    ) -> fewshot.SplitManifest:
  """``manifest`` (its validation set) with the training ids the strategy labels.

  ``candidate_labels`` are read only by the oracle strategies (stratified; max_entropy's
  labelling of the examples it has chosen, as an annotator would)."""
  chosen = select_lib.choose(spec.strategy, features, spec.budget, manifest.seed,
                             labels=candidate_labels, num_classes=len(manifest.classes),
                             rounds=spec.rounds)
  return dataclasses.replace(
      manifest, shots=0, train_ids=tuple(int(candidate_ids[i]) for i in chosen),
      selection=dict(strategy=spec.strategy, budget=spec.budget, rounds=spec.rounds,
                     pool_size=len(candidate_ids),
                     candidates_sha256=fewshot.ids_sha256(candidate_ids)))


def _saved_choice(workdir: str, manifest: fewshot.SplitManifest, spec: SelectionSpec,
                  candidate_ids: np.ndarray) -> fewshot.SplitManifest | None:
  """A resumed run's labelled set as its split.json records it, when it was chosen by the same
  strategy from the same candidates (so a resume never re-embeds the pool)."""
  import os
  from lowres_jax import storage
  from lowres_jax.train import workdir as workdir_lib
  path = os.path.join(workdir, "split.json")
  if not (os.path.exists(path) and workdir_lib.has_progress(workdir)):
    return None
  saved = storage.read_json(path, "the examples the run trained on")
  recorded = saved.get("selection") or {}
  if (recorded.get("strategy"), recorded.get("budget"), recorded.get("rounds"),
      recorded.get("candidates_sha256")) != (spec.strategy, spec.budget, spec.rounds,
                                             fewshot.ids_sha256(candidate_ids)):
    return None
  return dataclasses.replace(manifest, shots=0,
                             train_ids=tuple(int(i) for i in saved["train_ids"]),
                             selection=recorded)


def choose_training_sets(manifests: list[fewshot.SplitManifest], spec: SelectionSpec, pool,
                         workdirs: list[str], embed) -> list[fewshot.SplitManifest]:
  """Each run's manifest with its labelled set chosen by ``spec``'s strategy.

  ``embed(run_index, examples) -> (N, D)`` gives the pretrained model's ``pre_logits`` of a
  run's candidates; ``pool`` is the training split (ids, labels, inputs)."""
  chosen = []
  for i, (manifest, workdir) in enumerate(zip(manifests, workdirs)):
    candidate_ids = candidates(manifest, spec, pool)
    saved = _saved_choice(workdir, manifest, spec, candidate_ids)
    if saved is not None:
      chosen.append(saved)
      continue
    examples = fewshot.select(pool, candidate_ids, manifest.classes)
    chosen.append(select_manifest(manifest, spec, candidate_ids, embed(i, examples),
                                  examples.labels))
  return chosen
