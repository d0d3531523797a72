"""Choosing which candidates to label under a budget (host side, numpy).

A pretrained model embeds an unlabelled candidate pool (its ``pre_logits``, shape (N, D)), and
:func:`choose` picks ``budget`` distinct positions into that pool to send for labelling::

    positions = choose("typiclust", features, budget=40, seed=0)

Strategies, by name in :data:`STRATEGIES`:

``random``
    Uniform without replacement.
``stratified``
    A class-stratified *oracle*: it reads the true ``labels``, which a real labelling run would
    not have. The budget is split as evenly as possible over the classes present among the
    candidates (the remainder to randomly chosen classes); a class with too few candidates
    gives all it has and its shortfall goes to the others. Random within each class. The order
    goes round the classes, so every prefix of the result is itself nearly balanced.
``kcenter``
    k-center greedy (the coreset of Sener & Savarese, 2018): start from one random candidate,
    or from the ``already`` labelled ones, and repeatedly add the candidate farthest (Euclidean)
    from everything chosen so far. O(N * budget) time through a running min-distance vector.
``typiclust``
    TypiClust (Hacohen et al., 2022): k-means into ``budget`` clusters and, from each, its most
    typical candidate, where typicality is 1 / the mean distance to the candidate's
    max(1, min(20, cluster size // 2)) nearest neighbours inside its cluster, as the
    official code computes it (a singleton cluster's candidate is taken). With ``already``
    labelled positions it clusters into ``len(already) + budget`` clusters and takes the most
    typical candidate of each of the largest clusters that hold no labelled point, as the paper
    does. Picks come largest cluster first. One difference from the official code: it drops
    clusters of 5 or fewer points and cycles through the rest (several picks from one
    cluster); here every cluster gives one pick, the small ones last.
``max_entropy``
    Uncertainty sampling over ``rounds`` rounds of label, train, select. The budget is split
    over the rounds as evenly as possible, larger rounds first (so round 1 gets
    ceil(budget / rounds)). With nothing labelled yet, round 1 picks by the initial strategy
    (``random``); every later round fits a classifier to the labelled candidates' features and
    true labels (revealed as they are labelled: an oracle) and adds the unlabelled candidates of
    highest predictive entropy. With ``already`` labelled positions every round, the first
    included, is an entropy round. ``rounds=1`` with nothing labelled is therefore exactly the
    initial strategy. See :func:`max_entropy_strategy` for another initial strategy or
    classifier.

    The classifier only knows the classes it has seen labelled: a class not yet seen cannot be
    predicted, so its candidates add no entropy of their own and may look confidently
    classified as a seen class. While one class alone has been seen every entropy is 0 and the
    round picks uniformly at random (ties are always broken at random).

Every strategy is deterministic given ``seed`` (``np.random.default_rng(seed)``). Chosen
positions never repeat and never include ``already`` positions.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

# The typicality neighbourhood of TypiClust (the paper's k = 20).
TYPICALITY_NEIGHBOURS = 20
# k-means restarts for TypiClust: few, since the budget is usually small and each restart costs
# a full k-means run; the best of them (lowest inertia) is kept.
KMEANS_N_INIT = 3
# Inverse L2 strength of the default max_entropy classifier (sklearn's default). Features are
# standardised first, so C means the same thing whatever the backbone's feature scale.
LOGREG_C = 1.0
LOGREG_MAX_ITER = 1000

# A classifier for max_entropy: ``fit(x, y)`` gets the labelled candidates' standardised features
# (n, D) and their labels (n,), holding at least two classes, and returns ``predict_proba``: a
# function from standardised features (m, D) to class probabilities (m, classes seen).
Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Pool:
  """The checked inputs a strategy picks from."""
  features: np.ndarray  # (N, D) float64, finite.
  labels: np.ndarray | None  # (N,) integers, or None when not given.
  already: np.ndarray  # Distinct int64 positions already labelled; may be empty.

  @property
  def size(self) -> int:
    return self.features.shape[0]

  def unlabelled(self) -> np.ndarray:
    """Positions not in ``already``, ascending."""
    mask = np.ones(self.size, bool)
    mask[self.already] = False
    return np.flatnonzero(mask)


@dataclasses.dataclass(frozen=True)
class Strategy:
  """``pick(pool, budget, rng, rounds)`` returns ``budget`` distinct unlabelled positions."""
  pick: Callable[[Pool, int, np.random.Generator, int], np.ndarray]
  needs_labels: bool = False
  description: str = ""
  uses_rounds: bool = False  # Chooses over several rounds (label, fit, select again).


def choose(strategy: str, features: np.ndarray, budget: int, seed: int, *,
           labels: np.ndarray | None = None, num_classes: int | None = None, rounds: int = 1,
           already: np.ndarray | None = None) -> np.ndarray:
  """Chooses ``budget`` distinct positions into ``features`` to label, in the order chosen.

  Args:
    strategy: a name in :data:`STRATEGIES`.
    features: (N, D) features of the unlabelled candidate pool (e.g. ``pre_logits``).
    budget: how many candidates to choose, 1 to N - len(already).
    seed: seeds ``np.random.default_rng``; the result is a function of the inputs and the seed.
    labels: (N,) integer true labels; read only by the oracle strategies (``stratified``,
      ``max_entropy``), which need them, and checked for shape whenever given.
    num_classes: if given, every label must lie in [0, num_classes). A check only: the
      strategies work with whichever classes the labels hold.
    rounds: labelling rounds. Only strategies that learn from the labels they reveal
      (``max_entropy``) use it; for the others choosing in rounds would choose the same, so it
      is only checked.
    already: positions already labelled. They are never chosen again; ``kcenter``,
      ``typiclust`` and ``max_entropy`` also take them into account (see the module docstring);
      ``random`` and ``stratified`` only exclude them.

  Returns:
    An int64 array of ``budget`` distinct positions into ``features``.

  Raises:
    ValueError: unknown strategy, malformed features, labels or ``already``, a budget outside
      [1, N - len(already)], rounds < 1 or rounds > budget, or a label-reading strategy
      called without labels.
  """
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown selection strategy {strategy!r}; known strategies: "
                     f"{', '.join(sorted(STRATEGIES))}")
  entry = STRATEGIES[strategy]
  pool = _check_pool(features, labels, num_classes, already)
  budget = _check_int("budget", budget)
  rounds = _check_int("rounds", rounds)
  if budget < 1:
    raise ValueError(f"budget must be at least 1; got {budget}")
  left = pool.size - len(pool.already)
  if budget > left:
    if len(pool.already):
      where = (f"the pool has {pool.size} candidates, {len(pool.already)} already labelled, "
               f"so {left} to choose from")
    else:
      where = f"the pool has {pool.size} candidates"
    raise ValueError(f"budget {budget} is too large: {where}; lower the budget or raise the "
                     f"pool size")
  if rounds < 1:
    raise ValueError(f"rounds must be at least 1; got {rounds}")
  if rounds > budget:
    raise ValueError(f"rounds ({rounds}) exceeds the budget ({budget}): every round labels at "
                     f"least one candidate; lower rounds")
  if entry.needs_labels and pool.labels is None:
    raise ValueError(f"strategy {strategy!r} reads the true labels (an oracle); pass labels=")
  chosen = np.asarray(entry.pick(pool, budget, np.random.default_rng(seed), rounds), np.int64)
  # Cheap and catches a broken (or newly registered) strategy before anyone labels its output.
  if (chosen.shape != (budget,) or len(np.unique(chosen)) != budget
      or np.isin(chosen, pool.already).any()):
    raise AssertionError(f"strategy {strategy!r} returned {chosen!r}, not {budget} distinct "
                         f"unlabelled positions")
  return chosen


def cover_radius(features: np.ndarray, chosen: np.ndarray) -> float:
  """The largest distance from any candidate to its nearest chosen one (Euclidean).

  The k-center objective: the smaller it is, the better the chosen set covers the pool.
  """
  features = _check_features(features)
  chosen = np.asarray(chosen)
  if chosen.ndim != 1 or len(chosen) == 0 or not np.issubdtype(chosen.dtype, np.integer):
    raise ValueError(f"chosen must be a non-empty 1-D integer array; got {chosen!r}")
  if chosen.min() < 0 or chosen.max() >= len(features):
    raise ValueError(f"chosen positions must lie in [0, {len(features)}); got {chosen!r}")
  nearest = NearestNeighbors(n_neighbors=1).fit(features[chosen])
  distances, _ = nearest.kneighbors(features)
  return float(distances.max())


def cluster(features: np.ndarray, num_clusters: int, rng: np.random.Generator) -> np.ndarray:
  """k-means cluster of each row, as TypiClust draws it (its first use of ``rng``).

  Public so that a caller (or a test) can see the clusters TypiClust chose from: it is the
  clustering ``choose("typiclust", ...)`` uses when given ``np.random.default_rng(seed)``.
  """
  kmeans = KMeans(n_clusters=num_clusters, n_init=KMEANS_N_INIT,
                  random_state=int(rng.integers(2**31 - 1)))
  return kmeans.fit_predict(features)


# ---- strategies ----


def _random(pool: Pool, budget: int, rng: np.random.Generator, rounds: int) -> np.ndarray:
  del rounds
  return rng.choice(pool.unlabelled(), size=budget, replace=False)


def _stratified(pool: Pool, budget: int, rng: np.random.Generator, rounds: int) -> np.ndarray:
  del rounds
  candidates = pool.unlabelled()
  classes, counts = np.unique(pool.labels[candidates], return_counts=True)
  quota = _water_fill(counts, budget, rng)
  rank_parts, class_order, picked = [], rng.permutation(len(classes)), []
  for k, cls in enumerate(classes):
    members = candidates[pool.labels[candidates] == cls]
    picked.append(rng.choice(members, size=quota[k], replace=False))
    rank_parts.append(np.stack([np.arange(quota[k]), np.full(quota[k], class_order[k])], 1))
  picked, ranks = np.concatenate(picked), np.concatenate(rank_parts)
  # Round-robin: every class's first pick, then every class's second, ... (classes in a random
  # order), so that a prefix of the result is as balanced as the whole.
  return picked[np.lexsort((ranks[:, 1], ranks[:, 0]))]


def _water_fill(counts: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
  """Per-class quotas: as even as possible, capped at each class's count, summing to budget.

  Finds the largest level t with sum(min(counts, t)) <= budget, gives every class min(count, t),
  and one more to randomly chosen classes that still have candidates left.
  """
  low, high = 0, int(counts.max())  # filled(high) = counts.sum() >= budget.
  while low < high:  # Largest t with filled(t) <= budget.
    mid = (low + high + 1) // 2
    if np.minimum(counts, mid).sum() <= budget:
      low = mid
    else:
      high = mid - 1
  quota = np.minimum(counts, low)
  remainder = budget - int(quota.sum())
  # Fewer than remainder classes can't have spare: filled(low + 1) > budget.
  spare = np.flatnonzero(counts > low)
  quota[rng.choice(spare, size=remainder, replace=False)] += 1
  return quota


def _kcenter(pool: Pool, budget: int, rng: np.random.Generator, rounds: int) -> np.ndarray:
  del rounds
  features = pool.features
  # Written by hand: sklearn has no k-center greedy, and the loop is a few lines of numpy.
  # Squared distances order points as distances do; -inf marks positions that can't be chosen.
  nearest = np.full(pool.size, np.inf)
  for position in pool.already:
    np.minimum(nearest, _squared_distances(features, position), out=nearest)
  nearest[pool.already] = -np.inf
  chosen = []
  if not len(pool.already):
    chosen.append(int(rng.integers(pool.size)))
    nearest = _squared_distances(features, chosen[0])
    nearest[chosen[0]] = -np.inf
  while len(chosen) < budget:
    farthest = int(np.argmax(nearest))
    chosen.append(farthest)
    np.minimum(nearest, _squared_distances(features, farthest), out=nearest)
    nearest[farthest] = -np.inf
  return np.array(chosen, np.int64)


def _squared_distances(features: np.ndarray, position: int) -> np.ndarray:
  difference = features - features[position]
  return np.einsum("nd,nd->n", difference, difference)


def _typiclust(pool: Pool, budget: int, rng: np.random.Generator, rounds: int) -> np.ndarray:
  del rounds
  assignment = cluster(pool.features, len(pool.already) + budget, rng)
  sizes = np.bincount(assignment, minlength=len(pool.already) + budget)
  eligible = np.ones(len(sizes), bool)
  eligible[assignment[pool.already]] = False
  eligible &= sizes > 0
  # Largest clusters first; among equal sizes, the lower cluster index.
  order = [c for c in np.argsort(-sizes, kind="stable") if eligible[c]][:budget]
  chosen = [_most_typical(pool.features, np.flatnonzero(assignment == c)) for c in order]
  if len(chosen) < budget:
    # Only when k-means left clusters empty: the pool has fewer distinct points than clusters.
    # The rest are random, since the distinct points are all taken or in labelled clusters.
    rest = np.setdiff1d(pool.unlabelled(), chosen)
    chosen.extend(rng.choice(rest, size=budget - len(chosen), replace=False))
  return np.array(chosen, np.int64)


def _most_typical(features: np.ndarray, members: np.ndarray) -> int:
  """The member of highest typicality: lowest mean distance to its nearest fellow members."""
  if len(members) == 1:
    return int(members[0])
  # The official TypiClust code's neighbourhood: 20, or half the cluster when it is small (so a
  # small cluster's typicality is a density, not the distance to its farthest member).
  k = max(1, min(TYPICALITY_NEIGHBOURS, len(members) // 2))
  points = features[members]
  distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
  # The nearest of the k + 1 is the point itself at distance 0 (or a duplicate of it, also at
  # 0), so the other k columns are the distances to its k nearest fellow members.
  return int(members[np.argmin(distances[:, 1:].mean(axis=1))])


def max_entropy_strategy(initial: str = "random", fit: Fit | None = None) -> Strategy:
  """An uncertainty-sampling strategy whose first round uses ``initial``, with classifier ``fit``.

  ``STRATEGIES["max_entropy"]`` is ``max_entropy_strategy()``: random first round, multinomial
  logistic regression (C = LOGREG_C) on features standardised over the whole pool. Register
  another under a new name to choose it by name, e.g.
  ``STRATEGIES["max_entropy_kcenter"] = max_entropy_strategy("kcenter")``.
  """
  if initial not in STRATEGIES or initial == "max_entropy":
    raise ValueError(f"initial strategy must be a non-entropy strategy in STRATEGIES; "
                     f"got {initial!r} (known: {', '.join(sorted(STRATEGIES))})")
  first = STRATEGIES[initial]
  fit = fit or _fit_logistic_regression

  def pick(pool: Pool, budget: int, rng: np.random.Generator, rounds: int) -> np.ndarray:
    sizes = [budget // rounds + (r < budget % rounds) for r in range(rounds)]
    assert sizes[0] == math.ceil(budget / rounds) and sum(sizes) == budget
    # Standardised over the whole pool: the candidates' features are all known, and a few
    # labelled points would give a poor estimate of the scale.
    features = StandardScaler().fit_transform(pool.features)
    chosen = []
    if not len(pool.already):
      chosen.extend(int(p) for p in first.pick(pool, sizes[0], rng, 1))
      sizes = sizes[1:]
    for size in sizes:
      labelled = np.concatenate([pool.already, np.array(chosen, np.int64)])
      mask = np.ones(pool.size, bool)
      mask[labelled] = False
      unlabelled = np.flatnonzero(mask)
      y = pool.labels[labelled]
      if len(np.unique(y)) < 2:
        entropy = np.zeros(len(unlabelled))  # One class seen: it is predicted with certainty.
      else:
        entropy = _entropy(fit(features[labelled], y)(features[unlabelled]))
      # Highest entropy first; ties (e.g. all 0) broken by a random shuffle, stably sorted.
      shuffled = rng.permutation(len(unlabelled))
      top = shuffled[np.argsort(-entropy[shuffled], kind="stable")[:size]]
      chosen.extend(int(p) for p in unlabelled[top])
    return np.array(chosen, np.int64)

  return Strategy(pick, needs_labels=True, uses_rounds=True,
                  description=f"max predictive entropy, first round {initial}")


def _fit_logistic_regression(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
  # lbfgs fits the multinomial (softmax) model for more than two classes, and the equivalent
  # binary logistic model for two.
  model = LogisticRegression(C=LOGREG_C, max_iter=LOGREG_MAX_ITER).fit(x, y)
  return model.predict_proba


def _entropy(probabilities: np.ndarray) -> np.ndarray:
  p = np.clip(probabilities, 0.0, 1.0)
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(p > 0, -p * np.log(p), 0.0)
  return terms.sum(axis=1)


# ---- input checks ----


def _check_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name} must be an integer; got {value!r}")
  return int(value)


def _check_features(features) -> np.ndarray:
  features = np.asarray(features)
  if features.ndim != 2:
    raise ValueError(f"features must be 2-D (N candidates, D features); got shape "
                     f"{features.shape}")
  if not (np.issubdtype(features.dtype, np.floating) or np.issubdtype(features.dtype, np.integer)
          or features.dtype == bool):
    raise ValueError(f"features must be real numbers; got dtype {features.dtype}")
  if features.shape[1] == 0:
    raise ValueError(f"features have no columns (shape {features.shape})")
  features = features.astype(np.float64)
  bad = ~np.isfinite(features).all(axis=1)
  if bad.any():
    raise ValueError(f"features contain NaN or infinite values in {int(bad.sum())} of "
                     f"{len(features)} rows (first: row {int(np.flatnonzero(bad)[0])})")
  return features


def _check_pool(features, labels, num_classes, already) -> Pool:
  features = _check_features(features)
  n = len(features)
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != (n,):
      raise ValueError(f"labels must have shape ({n},), one per candidate; got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f"labels must be integers; got dtype {labels.dtype}")
  if num_classes is not None:
    num_classes = _check_int("num_classes", num_classes)
    if labels is not None and n and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(f"labels must lie in [0, num_classes={num_classes}); got values from "
                       f"{labels.min()} to {labels.max()}")
  if already is None:
    already = np.zeros(0, np.int64)
  else:
    already = np.asarray(already)
    if already.size == 0:
      already = np.zeros(0, np.int64)
    if already.ndim != 1 or not np.issubdtype(already.dtype, np.integer):
      raise ValueError(f"already must be a 1-D array of integer positions; got {already!r}")
    if len(already) and (already.min() < 0 or already.max() >= n):
      raise ValueError(f"already positions must lie in [0, {n}); got {already.min()} to "
                       f"{already.max()}")
    if len(np.unique(already)) != len(already):
      raise ValueError("already holds repeated positions")
    already = already.astype(np.int64)
  return Pool(features, labels, already)


STRATEGIES: dict[str, Strategy] = {
    "random": Strategy(_random, description="uniform without replacement"),
    "stratified": Strategy(_stratified, needs_labels=True,
                           description="class-balanced random (oracle: reads labels)"),
    "kcenter": Strategy(_kcenter, description="k-center greedy coreset"),
    "typiclust": Strategy(_typiclust, description="most typical point of each k-means cluster"),
}
STRATEGIES["max_entropy"] = max_entropy_strategy()
