"""A TFDS text-classification builder over Debian's ``fortunes`` files, without TensorFlow.

Each fortune file (``art``, ``computers``, ``science``, ...) is one class and each entry (the
text between lines holding only ``%``) one example: a small, offline, many-class text dataset
for low-resource and zero-shot experiments. Written as array_record like the image builders in
``builders.py`` and read through ``tfds.data_source``.

Decisions, fixed so that split manifests stay valid:

* Files read: the regular files directly in the directory. Skipped: ``.dat`` (strfile's binary
  index) and ``.u8`` files, every symlink (Debian's ``.u8`` links, or a link that would repeat a
  category), dotfiles, and every folder (``off/`` holds the offensive fortunes).
* Entries are stripped; empty ones dropped. Two entries are the same when equal after
  whitespace normalisation (runs of whitespace -> one space). Within a category the first
  (file order) is kept. Categories with fewer than ``MIN_ENTRIES`` distinct entries are ignored
  altogether; among the others an entry found in several categories is kept in the first in
  sorted name order only, and a category that this leaves below ``MIN_ENTRIES`` is ignored too.
* ``id``: the first 52 bits of sha256 of the normalised text (``entry_id``), so an id names the
  same text whatever else the tree holds; below 2**52 so it survives any JSON reader.
* ``label``: index into the kept category names, sorted.
* Test split: in each category, entries ordered by sha256 of ``f"{SPLIT_SEED}:{id}"`` (a seeded
  permutation that does not move when other entries come or go); the first
  ``n * TEST_PERCENT // 100`` are test, the rest train.

The prepared dataset is not rebuilt when the tree, ``$LOWRES_FORTUNES_DIR`` or ``MIN_ENTRIES``
change: prepare into a fresh data dir (or bump ``VERSION``) after changing them.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from lowres_jax.user_error import DatasetMissingError

FORTUNES_DIR_ENV = "LOWRES_FORTUNES_DIR"
FORTUNES_DEFAULT_DIR = "/usr/share/games/fortunes"
SKIPPED_SUFFIXES = (".dat", ".u8")
TEST_PERCENT = 30  # of each category's entries, rounded down
SPLIT_SEED = 0
ID_BITS = 52


def fortunes_dir() -> str:
  return os.environ.get(FORTUNES_DIR_ENV, FORTUNES_DEFAULT_DIR)


def normalise(text: str) -> str:
  """The de-duplication key: whitespace runs collapsed to one space, ends stripped."""
  return " ".join(text.split())


def entry_id(text: str) -> int:
  """The stable example id of an entry: leading ``ID_BITS`` bits of sha256(normalised text)."""
  digest = hashlib.sha256(normalise(text).encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") >> (64 - ID_BITS)


def split_entries(text: str) -> list[str]:
  """The stripped, non-empty entries of one fortune file's text, in file order."""
  entries, lines = [], []
  for line in text.splitlines() + ["%"]:
    if line.strip() == "%":
      entry = "\n".join(lines).strip()
      if entry:
        entries.append(entry)
      lines = []
    else:
      lines.append(line)
  return entries


def category_files(directory: str) -> dict[str, str]:
  """Category name -> path, for the files of ``directory`` that hold fortunes."""
  files = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if (name.startswith(".") or name.endswith(SKIPPED_SUFFIXES) or os.path.islink(path)
        or not os.path.isfile(path)):
      continue
    files[name] = path
  return files


def read_fortunes(directory: str, min_entries: int) -> dict[str, list[str]]:
  """Kept category (sorted) -> its de-duplicated entries in file order (rules: module doc)."""
  if not os.path.isdir(directory):
    raise DatasetMissingError(
        f"no fortunes directory at {directory}. Install Debian's fortunes with "
        f"`sudo apt-get install fortunes`, or point ${FORTUNES_DIR_ENV} at a folder of fortune "
        "files (entries separated by lines holding only %).")
  categories = {}
  for name, path in category_files(directory).items():
    with open(path, "rb") as f:
      text = f.read().decode("utf-8", errors="replace")
    unique = {}
    for entry in split_entries(text):
      unique.setdefault(normalise(entry), entry)
    if len(unique) >= min_entries:
      categories[name] = unique
  seen, kept = set(), {}
  for name, unique in categories.items():  # sorted by name: the first category keeps an entry
    entries = [entry for key, entry in unique.items() if key not in seen]
    seen.update(unique)
    if len(entries) >= min_entries:
      kept[name] = entries
  return kept


def is_test(entry_ids: list[int]) -> list[bool]:
  """Which of one category's entries are in the test split (rule: module doc)."""
  rank = sorted(range(len(entry_ids)), key=lambda i: hashlib.sha256(
      f"{SPLIT_SEED}:{entry_ids[i]}".encode()).digest())
  test = [False] * len(entry_ids)
  for i in rank[:len(entry_ids) * TEST_PERCENT // 100]:
    test[i] = True
  return test


class Fortunes(tfds.core.GeneratorBasedBuilder):
  """Debian fortunes: one class per fortune file, one example per entry."""

  name = "debian_fortunes"
  VERSION = tfds.core.Version("1.0.0")
  MIN_ENTRIES = 20  # distinct entries a category needs to be a class (tests lower it)

  def _info(self) -> tfds.core.DatasetInfo:
    # Label names come from the tree at preparation (set in _split_generators) and, for a
    # prepared dataset, from its stored metadata, so reading never needs the fortunes files.
    features = tfds.features.FeaturesDict({
        "text": tfds.features.Text(),
        "label": tfds.features.ClassLabel(),
        "id": tfds.features.Scalar(dtype=np.int64),
    })
    return tfds.core.DatasetInfo(builder=self, features=features, description=self.__doc__)

  def _split_generators(self, dl_manager):
    del dl_manager  # The files come from a Debian package, not a download.
    categories = read_fortunes(fortunes_dir(), self.MIN_ENTRIES)
    if not categories:
      raise DatasetMissingError(
          f"{fortunes_dir()} holds no fortune file with at least {self.MIN_ENTRIES} distinct "
          f"entries; install `sudo apt-get install fortunes` or fix ${FORTUNES_DIR_ENV}.")
    self.info.features["label"].names = list(categories)
    return {"train": self._generate_examples(categories, test=False),
            "test": self._generate_examples(categories, test=True)}

  def _generate_examples(self, categories: dict[str, list[str]],
                         test: bool) -> Iterator[tuple[int, dict]]:
    for label, entries in enumerate(categories.values()):
      ids = [entry_id(entry) for entry in entries]
      for entry, id_, in_test in zip(entries, ids, is_test(ids)):
        if in_test == test:
          yield id_, {"text": entry, "label": label, "id": id_}
