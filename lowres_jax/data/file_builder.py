"""A user's files (``user_files.py``) prepared once as a TFDS array_record dataset.

The prepared dataset lives under ``DATA_DIR/lowres_files/KIND-HASH/1.0.0``, HASH being the
first 16 hex digits of ``user_files.content_sha256``: an edited file (or a changed option such
as ``image_size``) is prepared again into a new folder, an unchanged one is read as it is.
Every file is read and checked in memory before TFDS writes anything, and TFDS writes into an
``incomplete.*`` folder that it renames when done, so a bad file or a killed preparation never
leaves a dataset that reads as prepared. Reading goes through ``tfds.builder_from_directory``,
which restores the features (image shape, class names) from the stored metadata.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np
import tensorflow_datasets as tfds

from lowres_jax import storage
from lowres_jax.data import user_files

BUILDER_NAME = "lowres_files"
VERSION = "1.0.0"


class FileDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A user's folder/CSV/JSONL files, already read into memory by ``user_files.read``."""

  name = BUILDER_NAME
  VERSION = tfds.core.Version(VERSION)

  def __init__(self, *, dataset: user_files.FileDataset, **kwargs):
    self._dataset = dataset
    config = tfds.core.BuilderConfig(name=config_name(dataset.kind, dataset.sha256),
                                     description=f"{dataset.kind}:{dataset.path}")
    super().__init__(config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    train = self._dataset.splits["train"]
    if train.images is not None:
      inputs = {"image": tfds.features.Tensor(shape=train.images.shape[1:], dtype=np.uint8)}
    else:
      inputs = {"text": tfds.features.Text()}
    features = tfds.features.FeaturesDict({
        **inputs, "label": tfds.features.ClassLabel(names=list(self._dataset.class_names)),
        "id": tfds.features.Scalar(dtype=np.int64)})
    return tfds.core.DatasetInfo(
        builder=self, features=features,
        description=f"{self._dataset.kind}:{self._dataset.path} (sha256 {self._dataset.sha256})",
        metadata=tfds.core.MetadataDict(source=f"{self._dataset.kind}:{self._dataset.path}",
                                        sha256=self._dataset.sha256))

  def _split_generators(self, dl_manager):
    del dl_manager  # The files were read already.
    return {name: self._generate_examples(split)
            for name, split in self._dataset.splits.items()}

  def _generate_examples(self, split: user_files.Split):
    for i, (id_, label) in enumerate(zip(split.ids.tolist(), split.labels.tolist())):
      inputs = ({"image": split.images[i]} if split.images is not None
                else {"text": split.texts[i]})
      yield id_, {**inputs, "label": label, "id": id_}


def config_name(kind: str, sha256: str) -> str:
  return f"{kind}-{sha256[:16]}"


def dataset_dir(name: str, options: user_files.FileDataOptions, data_dir: str) -> str:
  kind, _ = user_files.parse(name)
  return os.path.join(data_dir, BUILDER_NAME,
                      config_name(kind, user_files.content_sha256(name, options)), VERSION)


def prepared_builder(name: str, options: user_files.FileDataOptions,
                     data_dir: str) -> tfds.core.DatasetBuilder:
  """The prepared dataset of a user's files, preparing it first if its hash is new (the
  files are hashed on every call, so an edit within one process is seen too)."""
  directory = dataset_dir(name, options, data_dir)
  if not os.path.exists(os.path.join(directory, "dataset_info.json")):
    storage.ensure_directory(data_dir, flag="config.data.data_dir")
    with storage.owner(data_dir, f"prepare-{os.path.basename(os.path.dirname(directory))}",
                       flag="config.data.data_dir", wait=True):
      if not os.path.exists(os.path.join(directory, "dataset_info.json")):
        _prepare(name, options, data_dir)
  return _read_prepared(directory)


@functools.lru_cache(maxsize=16)
def _read_prepared(directory: str) -> tfds.core.DatasetBuilder:
  return tfds.builder_from_directory(directory)


def _prepare(name: str, options: user_files.FileDataOptions, data_dir: str) -> None:
  dataset = user_files.read(name, options)
  skipped = dataset.splits["train"].skipped + dataset.splits["test"].skipped
  if skipped:
    logging.warning("%s: skipped %d unreadable file(s) (config.data.skip_bad_files), e.g. %s",
                    name, len(skipped), skipped[0])
  for split, examples in dataset.splits.items():
    logging.info("%s: %s split of %d examples, %d classes", name, split, len(examples.ids),
                 len(dataset.class_names))
  builder = FileDataset(dataset=dataset, data_dir=data_dir, file_format="array_record")
  tfds.disable_progress_bar()  # One-off preparation; its nested bars swamp the log.
  builder.download_and_prepare()


def source_record(name: str, options: user_files.FileDataOptions, data_dir: str) -> dict:
  """What split.json records of a file dataset: where it was read from and its hash."""
  metadata = prepared_builder(name, options, data_dir).info.metadata
  return {"source": metadata["source"], "sha256": metadata["sha256"]}
