"""A user's own files as a dataset: ``folder:PATH``, ``csv:PATH`` and ``jsonl:PATH``.

- ``folder:PATH``: one sub-folder per class of image files (JPEG, PNG, WebP, BMP, GIF, TIFF;
  grey or colour, any size), the layout torchvision's ImageFolder and TFDS's ImageFolder read.
  Files with other extensions and hidden entries are ignored, as ImageFolder ignores them.
  Images are decoded with Pillow, converted to ``image_channels`` (0: 1 if every image is grey,
  else 3) and resized (bilinear) to ``image_size`` x ``image_size`` (0: the images' own size,
  which must then be one size).
- ``csv:PATH`` / ``jsonl:PATH``: one row per example, its text in ``text_field`` and its class
  in ``label_field`` (strings or integers), an optional ``id_field`` of unique integer ids.

Class names are the folder names, or the label values sorted (integers numerically); a label
is the class's index in that order. The test split is a second path of the same kind
(``test``) or, without one, ``test_fraction`` of each class held out by a seeded hash of the
example's id (``split_seed``), so a split does not move when other examples come or go.

Nothing here writes: ``read`` returns every example in memory or raises ``FileDataError`` that
names the file (and row) at fault; ``file_builder.py`` turns what it returns into a prepared
TFDS dataset, so a bad file never leaves half a dataset behind.

Over 300 lines on purpose: the three kinds share the id, hashing, held-out split and error
rules, and keeping them in one file keeps those rules one copy.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import os
from typing import Iterable, Sequence

import numpy as np

from lowres_jax.user_error import MissingInputError, UserError

KINDS = ("folder", "csv", "jsonl")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
ID_BITS = 52  # Ids from hashes stay below 2**52, so they survive any JSON reader.


class FileDataError(UserError, ValueError):
  """A user's dataset file cannot be read as a dataset; the message names the file."""


@dataclasses.dataclass(frozen=True)
class FileDataOptions:
  """The ``config.data`` keys that say how a user's files become a dataset (module doc)."""
  text_field: str = "text"
  label_field: str = "label"
  id_field: str = ""
  image_size: int = 0
  image_channels: int = 0
  test: str = ""
  test_fraction: float = 0.2
  split_seed: int = 0
  skip_bad_files: bool = False

  def __post_init__(self):
    if not 0.0 <= self.test_fraction < 1.0:
      raise FileDataError(f"config.data.test_fraction = {self.test_fraction} must be in [0, 1)")
    if self.image_channels not in (0, 1, 3):
      raise FileDataError(f"config.data.image_channels = {self.image_channels}: use 1 (grey), "
                          "3 (RGB) or 0 (1 if every image is grey, else 3)")
    if self.image_size < 0:
      raise FileDataError(f"config.data.image_size = {self.image_size} must be >= 0 "
                          "(0 keeps the images' own size)")


OPTION_KEYS = tuple(field.name for field in dataclasses.fields(FileDataOptions))


def config_defaults(**overrides) -> dict:
  """Every option as a ``config.data`` key, so each can be set from the command line."""
  return {**dataclasses.asdict(FileDataOptions()), **overrides}


def parse(name: str) -> tuple[str, str] | None:
  """'folder:/photos' -> ('folder', '/photos'); None for any other dataset name."""
  kind, sep, path = name.partition(":")
  if not sep or kind not in KINDS:
    return None
  if not path:
    raise FileDataError(f"config.data.name = {name!r} names no path: write {kind}:PATH")
  return kind, os.path.abspath(os.path.expanduser(path))


def is_file_dataset(name: str) -> bool:
  return parse(name) is not None


def is_text(name: str) -> bool:
  parsed = parse(name)
  return parsed is not None and parsed[0] != "folder"


@dataclasses.dataclass(frozen=True)
class Split:
  """One split's examples: ids, labels and either uint8 NHWC images or texts."""
  ids: np.ndarray
  labels: np.ndarray
  images: np.ndarray | None = None
  texts: tuple[str, ...] | None = None
  skipped: tuple[str, ...] = ()  # Files left out under skip_bad_files, for the log.


@dataclasses.dataclass(frozen=True)
class FileDataset:
  kind: str
  path: str
  class_names: tuple[str, ...]
  splits: dict  # 'train' / 'test' -> Split
  sha256: str   # Of the files and of every option that shapes the prepared dataset.


# ----------------------------------------------------------------------------- listing


def _require(path: str, what: str) -> None:
  if not os.path.exists(path):
    raise MissingInputError(f"{what} {path} does not exist. Check config.data.name "
                            "(folder:PATH, csv:PATH or jsonl:PATH).")


def _class_folders(root: str) -> dict[str, list[str]]:
  """Class name -> its image files (sorted relative paths), for a folder: dataset."""
  _require(root, "the image folder")
  if not os.path.isdir(root):
    raise FileDataError(f"folder:{root} is not a folder: a folder dataset has one sub-folder "
                        "per class of image files")
  classes = {}
  for name in sorted(os.listdir(root)):
    if name.startswith(".") or not os.path.isdir(os.path.join(root, name)):
      continue
    files = []
    for base, dirs, names in os.walk(os.path.join(root, name)):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      files += [os.path.relpath(os.path.join(base, n), root) for n in sorted(names)
                if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
      raise FileDataError(f"class folder {os.path.join(root, name)} holds no image file "
                          f"({', '.join(IMAGE_EXTENSIONS)}): remove it or add its images")
    classes[name] = files
  if not classes:
    raise FileDataError(f"folder:{root} has no class sub-folders: put each class's images "
                        "in a sub-folder named after the class")
  return classes


def class_names(name: str, options: FileDataOptions = FileDataOptions()) -> tuple[str, ...]:
  """The classes of a file dataset, without decoding any image (configs count them)."""
  kind, path = parse(name)
  if kind == "folder":
    return tuple(_class_folders(path))
  return _sorted_labels(label for _, _, label, _ in read_rows(kind, path, options))


def _listing(kind: str, part: str) -> tuple[tuple[str, str, int, int], ...]:
  """(root, relative path, size, mtime_ns) of every file one path of a dataset reads."""
  if kind == "folder":
    rels = [f for files in _class_folders(part).values() for f in files]
    root = part
  else:
    _require(part, f"the {kind} file")
    root, rels = os.path.dirname(part), [os.path.basename(part)]
  stats = [os.stat(os.path.join(root, rel)) for rel in rels]
  return tuple((root, rel, st.st_size, st.st_mtime_ns) for rel, st in zip(rels, stats))


@functools.lru_cache(maxsize=32)
def _hash_listing(header: str, listings: tuple) -> str:
  """sha256 of the header and of every listed file's name and bytes. Cached by the listing,
  whose sizes and modification times change with any edit, so a file is read once per
  process however often its dataset is opened."""
  digest = hashlib.sha256(header.encode())
  for listing in listings:
    for root, rel, _, _ in listing:
      digest.update(rel.encode("utf-8") + b"\0")
      with open(os.path.join(root, rel), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
      digest.update(b"\0")
    digest.update(b"|")
  return digest.hexdigest()


def content_sha256(name: str, options: FileDataOptions) -> str:
  """sha256 of every file the dataset reads and of the options that shape it: an edited
  file gives a new hash (so it is prepared again), an unchanged one the same."""
  kind, path = parse(name)
  parts = [part for part in (path, _test_path(kind, options)) if part]
  return _hash_listing(json.dumps([kind, dataclasses.asdict(options)]),
                       tuple(_listing(kind, part) for part in parts))


def _test_path(kind: str, options: FileDataOptions) -> str:
  return os.path.abspath(os.path.expanduser(options.test)) if options.test else ""


# ----------------------------------------------------------------------------- images


def _path_id(relpath: str) -> int:
  digest = hashlib.sha256(relpath.replace(os.sep, "/").encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") >> (64 - ID_BITS)


def open_image(path: str, decode: bool = True):
  """A Pillow image; ``decode`` reads the pixels now, so a truncated file fails here."""
  from PIL import Image
  image = Image.open(path)
  if decode:
    image.load()
  return image


def _readable(path: str, options: FileDataOptions, skipped: list[str], decode: bool):
  """The image at ``path``, or None (and ``path`` in ``skipped``) if it cannot be read and
  ``skip_bad_files`` is set; otherwise an unreadable file is one FileDataError."""
  from PIL import Image
  try:
    return open_image(path, decode)
  except (OSError, ValueError, Image.DecompressionBombError) as error:
    if not options.skip_bad_files:
      raise FileDataError(
          f"cannot read image {path} ({type(error).__name__}: {str(error)[:120]}). Fix or "
          "delete it, or set config.data.skip_bad_files=True to skip unreadable files (they "
          "are counted in the log).") from None
    skipped.append(path)
    return None


def _read_images(root: str, classes: Sequence[str], options: FileDataOptions,
                 namespace: str = "") -> Split:
  """``namespace`` prefixes the relative paths that ids are hashed from: a test folder's
  ``cat/001.jpg`` is another image than the training folder's.

  Two passes: the headers (mode and size, no pixels) decide the stored channels and size,
  then each image is decoded and converted on its own, so only the stored arrays are held."""
  folders = _class_folders(root)
  unknown = sorted(set(folders) - set(classes))
  if unknown:
    raise FileDataError(f"{root} has class folder(s) {unknown} that the training folder does "
                        f"not have (classes: {list(classes)})")
  entries = [(label, rel) for label, name in enumerate(classes) for rel in folders.get(name, ())]
  headers, skipped = {}, []
  for _, rel in entries:
    image = _readable(os.path.join(root, rel), options, skipped, decode=False)
    if image is not None:
      headers[rel] = (image.mode, image.size)
  channels = options.image_channels or (
      1 if all(mode in GREY_MODES for mode, _ in headers.values()) else 3)
  size = (options.image_size, options.image_size) if options.image_size else None
  if size is None:
    sizes = {image_size for _, image_size in headers.values()}
    if len(sizes) > 1:
      raise FileDataError(f"the images of {root} have {len(sizes)} sizes (e.g. "
                          f"{', '.join(f'{w}x{h}' for w, h in sorted(sizes)[:3])}): set "
                          "config.data.image_size to the one size to store them at")
  arrays, labels, ids = [], [], []
  for label, rel in entries:
    image = (_readable(os.path.join(root, rel), options, skipped, decode=True)
             if rel in headers else None)
    if image is None:
      continue
    arrays.append(image_array(image, channels, size))
    labels.append(label)
    ids.append(_path_id(namespace + rel))
  return Split(ids=np.asarray(ids, np.int64), labels=np.asarray(labels, np.int32),
               images=np.stack(arrays) if arrays else np.zeros((0, 1, 1, channels), np.uint8),
               skipped=tuple(skipped))


def image_array(image, channels: int, size: tuple[int, int] | None) -> np.ndarray:
  """uint8 (H, W, channels) of a Pillow image, resized bilinearly to ``size`` = (width,
  height) unless None: how every stored and every predicted image is made."""
  from PIL import Image
  if image.mode in ("I;16", "I", "F"):  # Wide grey: scale to 8 bits before converting.
    image = image.convert("F").point(lambda v: v / 256.0 if image.mode == "I;16" else v)
  image = image.convert("L" if channels == 1 else "RGB")
  if size and image.size != tuple(size):
    image = image.resize(tuple(size), Image.Resampling.BILINEAR)
  array = np.asarray(image, dtype=np.uint8)
  return array[..., None] if array.ndim == 2 else array


# ----------------------------------------------------------------------------- text


def read_utf8(path: str) -> str:
  """A file's text, or one FileDataError naming the byte and line that is not UTF-8."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as error:
    line = data[:error.start].count(b"\n") + 1
    raise FileDataError(f"{path} is not UTF-8 (byte {error.start}, line {line}): save it as "
                        "UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None


def read_rows(kind: str, path: str, options: FileDataOptions, labelled: bool = True
              ) -> list[tuple[str, str, str | None, object]]:
  """(where, text, label, id or None) per row of a CSV or JSONL file, in file order;
  ``labelled=False`` (texts to predict) needs no label column and gives None labels."""
  _require(path, f"the {kind} file")
  text = read_utf8(path)
  fields = (options.text_field,) + ((options.label_field,) if labelled else ()) + (
      (options.id_field,) if options.id_field else ())
  rows = []
  if kind == "csv":
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    missing = [f for f in fields if f not in columns]
    if missing:
      raise FileDataError(f"{path} has no column {missing[0]!r}; its columns are "
                          f"{columns}. Set config.data.text_field / label_field / id_field.")
    for number, record in enumerate(reader, start=2):
      rows.append((f"{path} line {number}", record[options.text_field],
                   record[options.label_field] if labelled else None,
                   record[options.id_field] if options.id_field else None))
  else:
    for number, line in enumerate(text.splitlines(), start=1):
      if not line.strip():
        continue
      where = f"{path} line {number}"
      try:
        record = json.loads(line)
      except json.JSONDecodeError as error:
        raise FileDataError(f"{where} is not JSON ({error.msg}): a JSONL file holds one "
                            "JSON object per line") from None
      if not isinstance(record, dict):
        raise FileDataError(f"{where} is not a JSON object")
      missing = [f for f in fields if f not in record]
      if missing:
        raise FileDataError(f"{where} has no field {missing[0]!r}; it has {sorted(record)}. "
                            "Set config.data.text_field / label_field / id_field.")
      rows.append((where, record[options.text_field],
                   record[options.label_field] if labelled else None,
                   record.get(options.id_field) if options.id_field else None))
  for where, text_value, label, _ in rows:
    if not isinstance(text_value, str) or not text_value.strip():
      raise FileDataError(f"{where}: the text ({options.text_field!r}) is empty; every row "
                          "needs a text")
    if labelled and (label is None or str(label).strip() == ""):
      raise FileDataError(f"{where}: the label ({options.label_field!r}) is empty")
  if not rows:
    raise FileDataError(f"{path} holds no examples")
  return [(where, t, str(label).strip() if labelled else None, i) for where, t, label, i in rows]


def _sorted_labels(labels: Iterable[str]) -> tuple[str, ...]:
  unique = set(labels)
  if all(label.lstrip("-").isdigit() for label in unique):
    return tuple(sorted(unique, key=int))
  return tuple(sorted(unique))


def _text_id(where: str, text: str, given) -> int:
  if given is None:
    digest = hashlib.sha256(" ".join(text.split()).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - ID_BITS)
  try:
    value = int(given)
  except (TypeError, ValueError):
    raise FileDataError(f"{where}: id {given!r} is not an integer") from None
  if not 0 <= value < 2 ** ID_BITS:
    raise FileDataError(f"{where}: id {value} is outside [0, 2**{ID_BITS})")
  return value


def _read_texts(kind: str, path: str, classes: Sequence[str] | None,
                options: FileDataOptions) -> tuple[Split, tuple[str, ...]]:
  rows = read_rows(kind, path, options)
  names = tuple(classes) if classes is not None else _sorted_labels(r[2] for r in rows)
  index = {name: i for i, name in enumerate(names)}
  unseen = sorted({label for _, _, label, _ in rows if label not in index})
  if unseen:
    raise FileDataError(f"{path} has label(s) {unseen[:5]} that the training file never has "
                        f"(its classes: {list(names)[:10]}): a test label must be a training "
                        "class")
  ids = [_text_id(where, text, given) for where, text, _, given in rows]
  _check_unique(ids, [r[0] for r in rows], "id" if options.id_field else "text")
  return Split(ids=np.asarray(ids, np.int64),
               labels=np.asarray([index[r[2]] for r in rows], np.int32),
               texts=tuple(r[1] for r in rows)), names


def _check_unique(ids: Sequence[int], wheres: Sequence[str], what: str) -> None:
  first = {}
  for id_, where in zip(ids, wheres):
    if id_ in first:
      detail = (f"the same id {id_}" if what == "id" else "the same text (ids come from the "
                "text when there is no id column)")
      raise FileDataError(f"{first[id_]} and {where} have {detail}: ids must be unique. "
                          "Remove the duplicate" + ("" if what == "id" else
                                                    " or give an id column (config.data.id_field)"))
    first[id_] = where


# ----------------------------------------------------------------------------- splits


def _held_out(ids: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Which examples are test: per class, floor(n * fraction) chosen by sha256(seed:id)."""
  test = np.zeros(len(ids), bool)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    order = sorted(members, key=lambda i: hashlib.sha256(f"{seed}:{ids[i]}".encode()).digest())
    test[order[:int(len(members) * fraction)]] = True
  return test


def _take(split: Split, mask: np.ndarray) -> Split:
  return Split(ids=split.ids[mask], labels=split.labels[mask],
               images=None if split.images is None else split.images[mask],
               texts=None if split.texts is None else tuple(
                   t for t, keep in zip(split.texts, mask) if keep),
               skipped=split.skipped)


def read(name: str, options: FileDataOptions = FileDataOptions()) -> FileDataset:
  """Every example of a file dataset, split into train and test (module doc)."""
  kind, path = parse(name)
  test_path = _test_path(kind, options)
  if kind == "folder":
    classes = tuple(_class_folders(path))
    everything = _read_images(path, classes, options)
    test = None
    if test_path:
      # The test images are stored like the training images: same channels, same size.
      test = _read_images(test_path, classes, dataclasses.replace(
          options, image_channels=everything.images.shape[-1]), namespace="test:")
      if test.images.shape[1:3] != everything.images.shape[1:3]:
        raise FileDataError(f"the images of {test_path} are {test.images.shape[1:3]} and those "
                            f"of {path} {everything.images.shape[1:3]}: set "
                            "config.data.image_size to store both at one size")
  else:
    everything, classes = _read_texts(kind, path, None, options)
    test = _read_texts(kind, test_path, classes, options)[0] if test_path else None
  if test is None:
    mask = _held_out(everything.ids, everything.labels, options.test_fraction, options.split_seed)
    train, test = _take(everything, ~mask), _take(everything, mask)
  else:
    train = everything
    overlap = set(train.ids.tolist()) & set(test.ids.tolist())
    if overlap:  # Text ids are the texts' hashes (or the id column): the same examples.
      raise FileDataError(f"{len(overlap)} example(s) of {test_path} are also in {path} (same "
                          f"{'id' if options.id_field else 'text'}): the test split must not "
                          "hold training examples")
  return FileDataset(kind=kind, path=path, class_names=classes,
                     splits={"train": train, "test": test},
                     sha256=content_sha256(name, options))
