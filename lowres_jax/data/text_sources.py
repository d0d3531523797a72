"""Text-classification splits as ``Examples`` of fixed-length token arrays.

A split of any prepared TFDS dataset with a text feature and a label feature (the offline
``fortunes`` builder, or a catalogue dataset such as ``ag_news_subset``) is read through the
same data-source helpers as images (``sources._data_source``/``_read_all``), tokenised once to
``max_length`` and cached per process, like ``sources.load_split``.
"""

from __future__ import annotations

import functools

import numpy as np

from lowres_jax.data import sources, user_files
from lowres_jax.data.user_files import FileDataOptions
from lowres_jax.data.tokenize import TextTokenizer, TokenStats


@functools.lru_cache(maxsize=4)
def get_tokenizer(spec: str) -> TextTokenizer:
  """The tokenizer a spec names, loaded once per process."""
  return TextTokenizer.from_path(spec)


def _features(name: str, options: FileDataOptions) -> tuple[str, str]:
  """The text and label features to read: a user's files are stored as ``text``/``label``
  whatever their columns were called; a catalogue dataset's are named by the options."""
  if user_files.is_file_dataset(name):
    return "text", "label"
  return options.text_field, options.label_field


def load_texts(name: str, split: str, data_dir: str = "",
               options: FileDataOptions = FileDataOptions()
               ) -> tuple[np.ndarray, list[str], np.ndarray]:
  """(ids, texts, labels) of one split, sorted by id: the raw strings behind
  ``load_text_split`` (an outside implementation reads a run's examples through it)."""
  text_feature, label_feature = _features(name, options)
  source = sources._data_source(name, split, sources.resolve_data_dir(data_dir), options)
  records = sources._read_all(source)
  for feature in (text_feature, label_feature):
    if records and feature not in records[0]:
      raise sources.DatasetError(f"dataset {name!r} has no feature {feature!r}; it has "
                                 f"{', '.join(sorted(records[0]))}")
  texts = [_as_str(r[text_feature]) for r in records]
  labels = np.asarray([r[label_feature] for r in records], dtype=np.int32)
  has_ids = len(records) and "id" in records[0]
  ids = (np.asarray([r["id"] for r in records], dtype=np.int64) if has_ids
         else np.arange(len(records), dtype=np.int64))
  # TFDS shuffles records on disk; sorting by id makes every later step independent of that.
  order = np.argsort(ids, kind="stable")
  return ids[order], [texts[i] for i in order], labels[order]


@functools.lru_cache(maxsize=16)
def _load(name: str, split: str, data_dir: str, tokenizer: str, max_length: int,
          options: FileDataOptions) -> tuple[sources.Examples, TokenStats]:
  ids, texts, labels = load_texts(name, split, data_dir, options)
  tokens, stats = get_tokenizer(tokenizer).encode_with_stats(texts, max_length)
  examples = sources.Examples({"id": ids, "label": labels, **tokens})
  for array in (*examples.arrays.values(), stats.lengths):
    array.setflags(write=False)  # Shared by every run in the process through the cache.
  return examples, stats


def load_text_split(name: str, split: str, data_dir: str, tokenizer: str, max_length: int,
                    options: FileDataOptions = FileDataOptions()) -> sources.Examples:
  """One split as ``id``, ``label``, ``input_ids``, ``attention_mask``, ``token_type_ids``.

  ``tokenizer`` is a tokenizer.json path, a folder holding one, or a ``package:``/``hf:`` spec;
  token arrays are int32 (N, max_length). Sorted by id; cached per process.
  """
  return _load(name, split, data_dir, tokenizer, max_length, options)[0]


def text_split_stats(name: str, split: str, data_dir: str, tokenizer: str, max_length: int,
                     options: FileDataOptions = FileDataOptions()) -> TokenStats:
  """Token lengths of that split (how many texts ``max_length`` cut), from the same cache."""
  return _load(name, split, data_dir, tokenizer, max_length, options)[1]


def label_names(name: str, data_dir: str, options: FileDataOptions = FileDataOptions(),
                split: str = "train") -> list[str]:
  """The class names of a dataset's ClassLabel, in label order (zero-shot prompts, reports and
  predictions print them)."""
  label_feature = _features(name, options)[1]
  source = sources._data_source(name, split, sources.resolve_data_dir(data_dir), options)
  info = getattr(source, "dataset_info", None)
  if info is None or label_feature not in info.features:
    raise sources.DatasetError(f"dataset {name!r} has no ClassLabel feature {label_feature!r}")
  return list(info.features[label_feature].names)


def _as_str(text) -> str:
  return text.decode("utf-8") if isinstance(text, bytes) else str(text)
