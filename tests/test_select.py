"""Choosing candidates to label under a budget (lowres_jax/data/select.py), on small numpy pools."""

from __future__ import annotations

import numpy as np
import pytest

from lowres_jax.data import select

ALL = sorted(select.STRATEGIES)
# Strategies whose output moves with the seed on any pool (typiclust's k-means may find the same
# clusters from every seed, so it is only required to be deterministic).
SEED_DEPENDENT = ["random", "stratified", "kcenter", "max_entropy"]


def blobs(num_blobs=4, per_blob=60, dim=4, spread=0.5, distance=8.0, seed=0):
  """Gaussian blobs around random centres; labels are the blob."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_blobs, dim)) * distance
  labels = np.repeat(np.arange(num_blobs), per_blob)
  features = centres[labels] + rng.normal(size=(len(labels), dim)) * spread
  return features, labels


def two_class_line(n=400, seed=0):
  """Two overlapping 2-D classes split by the line x0 = 0; the margin of a point is |x0|."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(2, size=n)
  features = rng.normal(size=(n, 2))
  features[:, 0] += np.where(labels == 1, 1.5, -1.5)
  return features, labels


@pytest.mark.parametrize("strategy", ALL)
def test_every_strategy_returns_distinct_positions_deterministically(strategy):
  features, labels = blobs()
  kwargs = dict(labels=labels, rounds=3)
  a = select.choose(strategy, features, 12, seed=0, **kwargs)
  assert a.dtype == np.int64 and a.shape == (12,)
  assert len(set(a.tolist())) == 12
  assert a.min() >= 0 and a.max() < len(features)
  np.testing.assert_array_equal(a, select.choose(strategy, features, 12, seed=0, **kwargs))
  if strategy in SEED_DEPENDENT:
    assert not np.array_equal(a, select.choose(strategy, features, 12, seed=1, **kwargs))
  # With labelled positions: none of them is chosen again.
  already = np.arange(0, len(features), 7)
  b = select.choose(strategy, features, 12, seed=0, already=already, **kwargs)
  assert len(set(b.tolist())) == 12 and not set(b.tolist()) & set(already.tolist())
  # The whole pool can be chosen.
  c = select.choose(strategy, features[:20], 20, seed=0, labels=labels[:20])
  assert sorted(c.tolist()) == list(range(20))


def test_cover_radius():
  line = np.arange(11.0)[:, None]
  assert select.cover_radius(line, np.array([0])) == 10.0
  assert select.cover_radius(line, np.array([0, 10])) == 5.0
  assert select.cover_radius(line, np.arange(11)) == 0.0


def test_kcenter_covers_better_than_random():
  features, _ = blobs(num_blobs=6, per_blob=50, dim=3, spread=1.0, distance=6.0)
  for seed in range(5):
    greedy = select.cover_radius(features, select.choose("kcenter", features, 15, seed))
    rand = select.cover_radius(features, select.choose("random", features, 15, seed))
    assert greedy <= rand, (seed, greedy, rand)


def brute_force_kcenter(features, first, budget, already=()):
  """The greedy rule recomputed from the full distance matrix at every step."""
  distances = np.linalg.norm(features[:, None] - features[None], axis=-1)
  chosen = [] if first is None else [first]
  while len(chosen) < budget:
    centres = list(already) + chosen
    gaps = distances[:, centres].min(axis=1)
    gaps[centres] = -1
    chosen.append(int(np.argmax(gaps)))
  return chosen


def test_kcenter_matches_brute_force():
  features = np.random.default_rng(3).normal(size=(30, 2))
  for seed in range(3):
    chosen = select.choose("kcenter", features, 8, seed)
    assert chosen.tolist() == brute_force_kcenter(features, int(chosen[0]), 8)
  # From labelled positions: no random start, every pick is greedy.
  already = np.array([4, 17])
  chosen = select.choose("kcenter", features, 6, 0, already=already)
  assert chosen.tolist() == brute_force_kcenter(features, None, 6, already)


def test_stratified_is_balanced():
  labels = np.repeat(np.arange(4), 50)
  features = np.random.default_rng(0).normal(size=(len(labels), 3))
  extra_to = set()
  for seed in range(6):
    chosen = select.choose("stratified", features, 10, seed, labels=labels)
    counts = np.bincount(labels[chosen], minlength=4)
    assert counts.sum() == 10 and counts.max() - counts.min() <= 1
    extra_to.add(tuple(counts))
    # Round-robin order: the first four picks are one per class.
    assert sorted(labels[chosen[:4]].tolist()) == [0, 1, 2, 3]
  assert len(extra_to) > 1  # The remainder goes to randomly chosen classes.


def test_stratified_moves_a_small_class_shortfall_to_the_others():
  labels = np.repeat(np.arange(4), [50, 50, 50, 3])
  features = np.zeros((len(labels), 2))
  chosen = select.choose("stratified", features, 30, 0, labels=labels)
  assert np.bincount(labels[chosen]).tolist() == [9, 9, 9, 3]
  labels = np.repeat(np.arange(3), [1, 2, 100])
  chosen = select.choose("stratified", np.zeros((len(labels), 2)), 10, 0, labels=labels)
  assert np.bincount(labels[chosen]).tolist() == [1, 2, 7]
  # Classes present: a label value with no candidates gets nothing and breaks nothing.
  labels = np.repeat(np.array([0, 2, 5]), 10)
  chosen = select.choose("stratified", np.zeros((30, 2)), 7, 0, labels=labels)
  counts = np.unique(labels[chosen], return_counts=True)[1]
  assert sorted(counts.tolist()) == [2, 2, 3]


def brute_force_typicality(points):
  if len(points) == 1:
    return np.ones(1)
  distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
  k = max(1, min(20, len(points) // 2))
  nearest = np.sort(distances, axis=1)[:, 1:k + 1]  # Column 0 is the point itself.
  return 1.0 / nearest.mean(axis=1)


def test_typiclust_takes_the_most_typical_point_of_each_cluster():
  features, _ = blobs(num_blobs=3, per_blob=60, dim=5, spread=2.0, distance=3.0, seed=1)
  features = np.concatenate([features, np.full((1, 5), 50.0)])  # An outlier: a singleton.
  budget, seed = 8, 4
  chosen = select.choose("typiclust", features, budget, seed)
  assignment = select.cluster(features, budget, np.random.default_rng(seed))
  assert sorted(assignment[chosen].tolist()) == list(range(budget))  # One per cluster.
  sizes = np.bincount(assignment)
  # Every case of the neighbourhood: k = 20 (clusters of 40+) or size // 2, a singleton.
  assert sizes.max() > 3 and sizes[sizes > 1].min() < 40 and sizes.min() == 1
  assert len(features) - 1 in chosen.tolist()
  for position in chosen:
    members = np.flatnonzero(assignment == assignment[position])
    typicality = brute_force_typicality(features[members])
    assert members[np.argmax(typicality)] == position
  # Largest clusters first.
  assert np.all(np.diff(sizes[assignment[chosen]]) <= 0)


def test_typiclust_with_labelled_points_takes_the_largest_unlabelled_clusters():
  features, _ = blobs(num_blobs=3, per_blob=40, dim=5, spread=2.0, distance=3.0, seed=1)
  already = np.array([0, 50, 100, 101])
  budget, seed = 5, 2
  chosen = select.choose("typiclust", features, budget, seed, already=already)
  assignment = select.cluster(features, len(already) + budget, np.random.default_rng(seed))
  sizes = np.bincount(assignment, minlength=len(already) + budget)
  labelled = set(assignment[already].tolist())
  picked = assignment[chosen].tolist()
  assert len(set(picked)) == budget and not labelled & set(picked)
  left = [c for c in range(len(sizes)) if c not in labelled and c not in picked]
  assert all(sizes[c] <= sizes[picked].min() for c in left)
  for position in chosen:
    members = np.flatnonzero(assignment == assignment[position])
    assert members[np.argmax(brute_force_typicality(features[members]))] == position


def test_typiclust_picks_one_per_well_separated_blob():
  features, labels = blobs(num_blobs=5, per_blob=40, dim=8, spread=0.3, distance=10.0)
  for seed in range(3):
    chosen = select.choose("typiclust", features, 5, seed)
    assert sorted(labels[chosen].tolist()) == [0, 1, 2, 3, 4]


def test_typiclust_with_fewer_distinct_points_than_budget():
  features = np.repeat(np.eye(3), 10, axis=0)
  with pytest.warns(Warning):  # sklearn: fewer distinct clusters than asked for.
    chosen = select.choose("typiclust", features, 5, 0)
  assert len(set(chosen.tolist())) == 5
  assert len({tuple(features[p]) for p in chosen}) == 3  # Every distinct point is taken.


def test_max_entropy_picks_near_the_boundary():
  features, labels = two_class_line()
  margin = np.abs(features[:, 0])
  budget, rounds = 40, 4
  first = budget // rounds
  for seed in range(3):
    chosen = select.choose("max_entropy", features, budget, seed, labels=labels, rounds=rounds)
    random = select.choose("random", features, budget, seed)
    later = margin[chosen[first:]].mean()
    assert later < 0.5 * margin[random].mean(), (seed, later, margin[random].mean())
    # The first round is the random one: as far from the boundary as random.
    assert margin[chosen[:first]].mean() > later


def test_max_entropy_with_one_round_is_the_initial_strategy():
  features, labels = two_class_line()
  for seed in range(3):
    np.testing.assert_array_equal(
        select.choose("max_entropy", features, 15, seed, labels=labels, rounds=1),
        select.choose("random", features, 15, seed))


def test_max_entropy_strategy_options():
  features, labels = two_class_line(n=200)
  select.STRATEGIES["max_entropy_kcenter"] = select.max_entropy_strategy("kcenter")
  try:
    np.testing.assert_array_equal(
        select.choose("max_entropy_kcenter", features, 12, 0, labels=labels),
        select.choose("kcenter", features, 12, 0))
  finally:
    del select.STRATEGIES["max_entropy_kcenter"]
  # A custom classifier: one that is sure of everything gives zero entropy, so random picks.
  calls = []

  def certain(x, y):
    calls.append(len(y))
    return lambda z: np.eye(2)[np.zeros(len(z), int)]

  strategy = select.max_entropy_strategy(fit=certain)
  already = np.array([np.flatnonzero(labels == 0)[0], np.flatnonzero(labels == 1)[0]])
  pool = select.Pool(features, labels, already)
  chosen = strategy.pick(pool, 12, np.random.default_rng(0), 3)
  # Labelled points from the start: every round fits, on 2, then 2 + 4, then 2 + 8 labels.
  assert len(set(chosen.tolist()) - set(already.tolist())) == 12 and calls == [2, 6, 10]
  with pytest.raises(ValueError, match="initial strategy"):
    select.max_entropy_strategy("max_entropy")


def test_max_entropy_with_labelled_points_starts_with_entropy():
  features, labels = two_class_line()
  margin = np.abs(features[:, 0])
  already = np.flatnonzero(labels == 0)[:20].tolist() + np.flatnonzero(labels == 1)[:20].tolist()
  chosen = select.choose("max_entropy", features, 10, 0, labels=labels, already=already)
  assert margin[chosen].mean() < 0.5 * margin.mean()


BAD = [
    (dict(strategy="coreset"), "unknown selection strategy 'coreset'; known strategies: "
     "kcenter, max_entropy, random, stratified, typiclust"),
    (dict(budget=0), "budget must be at least 1"),
    (dict(budget=101), "the pool has 100 candidates; lower the budget or raise the pool size"),
    (dict(budget=98, already=[1, 2, 3]), "3 already labelled, so 97 to choose from"),
    (dict(strategy="stratified", labels=None), "'stratified' reads the true labels"),
    (dict(strategy="max_entropy", labels=None), "'max_entropy' reads the true labels"),
    (dict(rounds=0), "rounds must be at least 1"),
    (dict(rounds=6, budget=5), r"rounds \(6\) exceeds the budget \(5\)"),
    (dict(features=np.zeros(100)), r"features must be 2-D"),
    (dict(features=np.zeros((2, 50, 2))), r"features must be 2-D"),
    (dict(features=np.where(np.arange(100)[:, None] == 7, np.nan, np.ones((100, 3)))),
     "NaN.*first: row 7"),
    (dict(labels=np.zeros(99, int)), r"labels must have shape \(100,\)"),
    (dict(labels=np.zeros(100)), "labels must be integers"),
    (dict(labels=np.full(100, 3), num_classes=3), r"labels must lie in \[0, num_classes=3\)"),
    (dict(already=[1, 1]), "repeated"),
    (dict(already=[100]), r"already positions must lie in \[0, 100\)"),
    (dict(budget=2.0), "budget must be an integer"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_inputs_raise_clear_errors(change, message):
  args = dict(strategy="max_entropy", features=np.ones((100, 3)), budget=5, seed=0,
              labels=np.zeros(100, int), rounds=1, already=None)
  args.update(change)
  with pytest.raises(ValueError, match=message):
    select.choose(args.pop("strategy"), args.pop("features"), args.pop("budget"), args.pop("seed"),
                  **args)
