import hashlib
import json

import numpy as np
import pytest

from lowres_jax.data import fewshot
from lowres_jax.data.sources import Examples


def make_pool(per_class=(30, 30, 8)) -> Examples:
  labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)]).astype(np.int32)
  ids = np.arange(len(labels), dtype=np.int64) * 7 + 3  # Ids need not be positions.
  images = np.zeros((len(labels), 2, 2, 1), np.uint8)
  return Examples({"id": ids, "label": labels, "image": images})


def test_manifest_is_deterministic_and_seed_dependent():
  pool = make_pool()
  a = fewshot.draw_manifest(pool, "toy", (0, 1), shots=5, val_per_class=3, seed=1)
  b = fewshot.draw_manifest(pool, "toy", (0, 1), shots=5, val_per_class=3, seed=1)
  c = fewshot.draw_manifest(pool, "toy", (0, 1), shots=5, val_per_class=3, seed=2)
  assert a == b
  assert a.train_ids != c.train_ids
  assert len(a.train_ids) == 10 and len(a.val_ids) == 6
  assert not set(a.train_ids) & set(a.val_ids)
  record = a.to_json()
  expected = hashlib.sha256(",".join(map(str, a.train_ids)).encode()).hexdigest()
  assert record["train_sha256"] == expected


def test_manifest_written_to_json_round_trips(tmp_path):
  pool = make_pool()
  manifest = fewshot.draw_manifest(pool, "toy", (0, 1), shots=4, val_per_class=2, seed=0)
  fewshot.write_manifest(manifest, tmp_path / "split.json")
  record = json.loads((tmp_path / "split.json").read_text())
  assert tuple(record["train_ids"]) == manifest.train_ids
  assert record["val_sha256"] == fewshot.ids_sha256(manifest.val_ids)


def test_more_shots_grow_the_training_set_and_keep_validation():
  pool = make_pool()
  small = fewshot.draw_manifest(pool, "toy", (0, 1), shots=2, val_per_class=3, seed=4)
  large = fewshot.draw_manifest(pool, "toy", (0, 1), shots=6, val_per_class=3, seed=4)
  assert small.val_ids == large.val_ids
  assert set(small.train_ids) <= set(large.train_ids)


def test_each_class_has_exactly_k_examples_with_remapped_labels():
  pool = make_pool()
  manifest = fewshot.draw_manifest(pool, "toy", (2, 0), shots=3, val_per_class=1, seed=0)
  train = fewshot.select(pool, manifest.train_ids, (2, 0))
  assert np.bincount(train.labels).tolist() == [3, 3]  # class 2 -> 0, class 0 -> 1.
  original = pool.labels[np.searchsorted(pool.ids, train.ids)]
  assert set(original[train.labels == 0]) == {2}


def test_too_many_shots_names_the_class_and_its_count():
  pool = make_pool()
  with pytest.raises(fewshot.ShotsError, match=r"class 2 of toy has 8 training examples.*shots=10"):
    fewshot.draw_manifest(pool, "toy", (0, 2), shots=10, val_per_class=0, seed=0)


def test_all_shots_uses_every_non_validation_example():
  pool = make_pool()
  manifest = fewshot.draw_manifest(pool, "toy", (0, 1, 2), shots=fewshot.ALL_SHOTS,
                                   val_per_class=2, seed=0)
  assert len(manifest.train_ids) == len(pool) - 6
