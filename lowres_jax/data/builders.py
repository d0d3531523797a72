"""TFDS builders for the datasets that exist offline on the project's machines.

They are ordinary ``tfds.core.GeneratorBasedBuilder``s written as array_record, so they are read
like any prepared TFDS dataset through ``tfds.data_source`` and need no TensorFlow. Each example
carries a stable integer ``id`` (its index in the original release) so split manifests name
examples independently of TFDS's on-disk shuffle order.
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from lowres_jax.user_error import DatasetMissingError
from lowres_jax.data import text_builders

FASHION_MNIST_DIR_ENV = "LOWRES_FASHION_MNIST_DIR"
FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# scikit-learn's digits has no official test split; every 4th example (by original index)
# is held out so the test set is fixed, class-balanced in expectation, and documented.
DIGITS_TEST_EVERY = 4


def _image_features(shape: tuple[int, int, int], num_classes: int) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "image": tfds.features.Tensor(shape=shape, dtype=np.uint8),
      "label": tfds.features.ClassLabel(num_classes=num_classes),
      "id": tfds.features.Scalar(dtype=np.int64),
  })


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)."""

  name = "sklearn_digits"  # Explicit, so it never collides with a TFDS catalogue name.
  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=_image_features((8, 8, 1), 10),
                                 description=self.__doc__)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded: the data ships inside scikit-learn.
    return {"train": self._generate_examples(test=False),
            "test": self._generate_examples(test=True)}

  def _generate_examples(self, test: bool) -> Iterator[tuple[int, dict]]:
    from sklearn.datasets import load_digits
    digits = load_digits()
    # Pixel values are 0..16; scale to the usual 0..255 range of uint8 images.
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    for index, (image, label) in enumerate(zip(images, digits.target)):
      if (index % DIGITS_TEST_EVERY == 0) == test:
        yield index, {"image": image[..., None], "label": int(label), "id": index}


def fashion_mnist_dir() -> str:
  return os.environ.get(FASHION_MNIST_DIR_ENV, FASHION_MNIST_DEFAULT_DIR)


def read_idx(path: str) -> np.ndarray:
  """Reads a (gzipped) IDX file, the format of the MNIST family of datasets."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype_code != 0x08:
    raise ValueError(f"{path} is not an unsigned-byte IDX file (header {data[:4]!r})")
  shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
  if array.size != int(np.prod(shape)):
    raise ValueError(f"{path} is truncated: header says {shape}, found {array.size} bytes")
  return array.reshape(shape)


class FashionMnist(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST (28x28 grey, 10 classes) from Debian's dataset-fashion-mnist IDX files."""

  name = "fashion_mnist_idx"  # TFDS's own `fashion_mnist` downloads; this one reads local files.
  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=_image_features((28, 28, 1), 10),
                                 description=self.__doc__)

  def _split_generators(self, dl_manager):
    del dl_manager  # The files come from a Debian package, not a download.
    directory = fashion_mnist_dir()
    paths = {}
    for split, names in FASHION_MNIST_FILES.items():
      paths[split] = tuple(os.path.join(directory, name) for name in names)
      for path in paths[split]:
        if not os.path.exists(path):
          raise DatasetMissingError(
              f"Fashion-MNIST file {path} is missing. Install it with "
              "`sudo apt-get install dataset-fashion-mnist`, or point "
              f"${FASHION_MNIST_DIR_ENV} at a folder holding the four IDX .gz files.")
    return {split: self._generate_examples(*paths[split]) for split in paths}

  def _generate_examples(self, images_path: str, labels_path: str) -> Iterator[tuple[int, dict]]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if len(images) != len(labels):
      raise ValueError(f"{images_path} has {len(images)} images but {labels_path} "
                       f"has {len(labels)} labels")
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image[..., None], "label": int(label), "id": index}


# Names a config can give in ``config.data.name`` for the builders above. Any other name is
# looked up as an ordinary TFDS dataset that must already be prepared in the data dir.
LOCAL_BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "digits": Digits,
    "fashion_mnist": FashionMnist,
    "fortunes": text_builders.Fortunes,
}
