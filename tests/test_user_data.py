"""A user's own files as datasets (lowres_jax/data/user_files.py, file_builder.py): class
folders of PNG/JPEG images and CSV/JSONL texts read back as written, prepared once per content,
and trained on like the built-in datasets."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import REPO, tiny_config
from file_datasets import write_image_folder, write_texts
from lowres_jax.config import load_module
from lowres_jax.data import builders, file_builder, sources, text_sources, user_files
from lowres_jax.data.user_files import FileDataOptions
from lowres_jax.train import loop

FASHION = builders.fashion_mnist_dir()
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION),
                                   reason="needs Debian's dataset-fashion-mnist")
NAMES = ("bag", "coat", "shirt")


def _fashion(count: int, classes=(0, 4, 8)) -> tuple[np.ndarray, np.ndarray]:
  """The first ``count`` Fashion-MNIST test images of each of ``classes``; labels 0..C-1."""
  images = builders.read_idx(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"))
  labels = builders.read_idx(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz"))
  picked = np.concatenate([np.flatnonzero(labels == c)[:count] for c in classes])
  remap = {c: i for i, c in enumerate(classes)}
  return images[picked][..., None], np.asarray([remap[int(l)] for l in labels[picked]])


def _by_path(split: user_files.Split, root: str, paths: list[str]) -> np.ndarray:
  """The positions in ``split`` of each written path (ids are hashes of relative paths)."""
  position = {int(i): p for p, i in enumerate(split.ids)}
  return np.asarray([position[user_files._path_id(os.path.relpath(p, root))] for p in paths])


@needs_fashion
def test_png_and_jpeg_class_folders_read_back_as_the_images_and_labels_written(tmp_path):
  images, labels = _fashion(8)
  root = str(tmp_path / "photos")
  paths = write_image_folder(root, images, labels, NAMES, formats=("png", "jpg"))
  dataset = user_files.read(f"folder:{root}", FileDataOptions(test_fraction=0.25))
  assert dataset.class_names == NAMES  # sorted folder names, which here are NAMES' order
  train, test = dataset.splits["train"], dataset.splits["test"]
  assert (len(train.ids), len(test.ids)) == (18, 6)  # 2 of each class's 8 held out
  assert np.bincount(test.labels).tolist() == [2, 2, 2]
  merged = {int(i): (img, lab) for s in (train, test) for i, img, lab in
            zip(s.ids, s.images, s.labels)}
  for i, path in enumerate(paths):
    image, label = merged[user_files._path_id(os.path.relpath(path, root))]
    assert label == labels[i] and image.shape == (28, 28, 1)  # every image grey: 1 channel
    error = np.abs(image.astype(int) - images[i].astype(int))
    if path.endswith(".png"):
      assert error.max() == 0
    else:  # JPEG is lossy: close, not equal.
      assert 0 < error.mean() < 4


@needs_fashion
def test_images_are_stored_at_the_configured_size_and_channels(tmp_path):
  images, labels = _fashion(2)
  root = str(tmp_path / "photos")
  write_image_folder(root, images, labels, NAMES)
  dataset = user_files.read(f"folder:{root}", FileDataOptions(image_size=16, image_channels=3,
                                                               test_fraction=0.5))
  stored = dataset.splits["train"].images
  assert stored.shape[1:] == (16, 16, 3)
  assert (stored[..., 0] == stored[..., 1]).all()  # grey repeated into RGB


def test_csv_and_jsonl_read_back_as_the_texts_and_labels_written(tmp_path):
  texts = [f"example number {i} of class {i % 3}" for i in range(30)]
  labels = [("neg", "neu", "pos")[i % 3] for i in range(30)]
  for kind in ("csv", "jsonl"):
    path = write_texts(str(tmp_path / f"texts.{kind}"), texts, labels, text_field="body",
                       label_field="sentiment")
    options = FileDataOptions(text_field="body", label_field="sentiment", test_fraction=0.2)
    dataset = user_files.read(f"{kind}:{path}", options)
    assert dataset.class_names == ("neg", "neu", "pos")
    read_back = {t: dataset.class_names[l] for s in dataset.splits.values()
                 for t, l in zip(s.texts, s.labels)}
    assert read_back == dict(zip(texts, labels))
    assert np.bincount(dataset.splits["test"].labels).tolist() == [2, 2, 2]


def test_integer_labels_sort_numerically_and_an_id_column_gives_the_ids(tmp_path):
  texts = [f"text {i}" for i in range(12)]
  path = write_texts(str(tmp_path / "t.jsonl"), texts, [(2, 10, 1)[i % 3] for i in range(12)],
                     ids=[1000 + i for i in range(12)])
  dataset = user_files.read(f"jsonl:{path}", FileDataOptions(id_field="id", test_fraction=0.0))
  assert dataset.class_names == ("1", "2", "10")
  train = dataset.splits["train"]
  assert sorted(train.ids.tolist()) == list(range(1000, 1012))
  assert [dataset.class_names[l] for l in train.labels[train.ids == 1004]] == ["10"]


def test_the_held_out_split_is_seeded_and_stays_put_when_examples_are_added(tmp_path):
  texts = [f"sentence {i}" for i in range(40)]
  labels = ["a", "b"] * 20
  first = write_texts(str(tmp_path / "a.csv"), texts, labels)
  grown = write_texts(str(tmp_path / "b.csv"), texts + ["sentence 40", "sentence 41"],
                      labels + ["a", "b"])
  test_of = lambda path, seed: set(user_files.read(
      f"csv:{path}", FileDataOptions(split_seed=seed)).splits["test"].texts)
  assert test_of(first, 0) == test_of(first, 0) and test_of(first, 0) != test_of(first, 1)
  assert len(test_of(first, 0)) == 8
  assert len(test_of(first, 0) - test_of(grown, 0)) <= 2  # at most the displaced ones move


def test_a_file_is_prepared_once_and_again_only_when_edited(tmp_path):
  texts, labels = [f"line {i}" for i in range(20)], ["x", "y"] * 10
  path = write_texts(str(tmp_path / "t.csv"), texts, labels)
  data_dir = str(tmp_path / "tfds")
  name = f"csv:{path}"
  first = file_builder.dataset_dir(name, FileDataOptions(), data_dir)
  file_builder.prepared_builder(name, FileDataOptions(), data_dir)
  stamp = os.stat(os.path.join(first, "dataset_info.json")).st_mtime_ns
  file_builder.prepared_builder(name, FileDataOptions(), data_dir)
  assert os.stat(os.path.join(first, "dataset_info.json")).st_mtime_ns == stamp
  write_texts(path, texts[:-1] + ["an edited line"], labels)
  edited = file_builder.dataset_dir(name, FileDataOptions(), data_dir)
  assert edited != first
  ids, read_texts, _ = text_sources.load_texts(name, "train", data_dir)
  assert "an edited line" in read_texts + list(text_sources.load_texts(name, "test", data_dir)[1])
  assert os.path.exists(os.path.join(edited, "dataset_info.json"))


def test_a_bad_file_leaves_no_prepared_dataset_behind(tmp_path):
  path = tmp_path / "t.jsonl"
  path.write_text('{"text": "fine", "label": "a"}\n{"text": "", "label": "b"}\n')
  data_dir = str(tmp_path / "tfds")
  with pytest.raises(user_files.FileDataError, match="line 2: the text .* is empty"):
    file_builder.prepared_builder(f"jsonl:{path}", FileDataOptions(), data_dir)
  assert not os.path.exists(os.path.join(data_dir, file_builder.BUILDER_NAME))


@needs_fashion
def test_skip_bad_files_skips_and_counts_an_unreadable_image(tmp_path):
  images, labels = _fashion(4)
  root = tmp_path / "photos"
  write_image_folder(str(root), images, labels, NAMES)
  (root / "coat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  with pytest.raises(user_files.FileDataError, match="broken.png.*skip_bad_files"):
    user_files.read(f"folder:{root}")
  dataset = user_files.read(f"folder:{root}", FileDataOptions(skip_bad_files=True))
  assert [os.path.basename(p) for p in dataset.splits["train"].skipped] == ["broken.png"]
  assert sum(len(s.ids) for s in dataset.splits.values()) == 12


def test_a_folder_run_gets_the_accuracy_of_the_same_images_through_the_builtin_dataset(
    tmp_path, data_dir):
  """Digits 5-9 written as PNG class folders (train and test apart) and the built-in digits:
  a nearest-class-mean run on all examples (no training, so no dependence on example order)
  gets the same test accuracy."""
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.train.duration, config.head_init = "0 steps", "class_means"
  config.data.shots, config.data.val_per_class = -1, 0
  builtin = loop.run(config, str(tmp_path / "builtin"), show_progress=False)
  for split in ("train", "test"):
    examples = sources.load_split("digits", split, data_dir)
    keep = np.isin(examples.labels, config.data.classes)
    write_image_folder(str(tmp_path / split), examples.arrays["image"][keep],
                       examples.labels[keep], names=[str(c) for c in range(10)])
  config.data.name = f"folder:{tmp_path / 'train'}"
  config.data.classes = tuple(range(5))  # folders '5'..'9' are classes 0..4
  config.data.test = str(tmp_path / "test")
  own = loop.run(config, str(tmp_path / "own"), show_progress=False)
  assert own["test/accuracy"] == builtin["test/accuracy"]
  split = json.loads((tmp_path / "own" / "split.json").read_text())
  assert split["source"]["source"] == f"folder:{tmp_path / 'train'}"
  assert len(split["source"]["sha256"]) == 64


def test_a_csv_dataset_trains_through_the_text_config(tmp_path):
  texts = [f"{word} story number {i}" for i in range(24) for word in ("space", "court")]
  labels = [label for i in range(24) for label in ("science", "law")]
  path = write_texts(str(tmp_path / "t.csv"), texts, labels)
  text_config = load_module(str(REPO / "configs" / "text_fortunes.py"))
  config = text_config.get_config(f"dataset=csv:{path},tiny=1")
  config.data.data_dir, config.cache_dir = str(tmp_path / "tfds"), str(tmp_path / "cache")
  summary = loop.run(config, str(tmp_path / "run"), show_progress=False)
  assert summary["test/num_examples"] == 8  # floor(20% of 24) = 4 of each class
  assert config.data.classes == (0, 1)
