"""What a run's inputs are, images or tokenised text, and everything that depends on it.

A run plan's ``modality`` (``of(tokenizer, max_length)``) owns loading a split in the form the
model reads, the input statistics a run records, which augmentations apply, the tokenizer and
the mask token, so the trainer, the predictor and the exporter ask it instead of testing
whether a tokenizer is set.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import numpy as np

from lowres_jax.data import sources, text_sources
from lowres_jax.data.augment import AUGMENTATIONS
from lowres_jax.data.text_augment import TEXT_AUGMENTATIONS
from lowres_jax.data.user_files import FileDataOptions


@dataclasses.dataclass(frozen=True)
class Images:
  """uint8 images (N, H, W, C) as the dataset stores them; the model resizes and normalises."""
  is_text: ClassVar[bool] = False
  kind: ClassVar[str] = "image"
  input_names: ClassVar[tuple[str, ...]] = ("image",)

  def load_split(self, dataset: str, split: str, data_dir: str,
                 options: FileDataOptions) -> sources.Examples:
    return sources.load_split(dataset, split, data_dir, options)

  def input_stats(self, dataset: str, splits: Sequence[str], data_dir: str,
                  options: FileDataOptions) -> dict:
    return {}

  def augmentations(self) -> list[str]:
    return sorted(n for n in AUGMENTATIONS if n not in TEXT_AUGMENTATIONS)

  def mask_token_id(self) -> int:
    return -1  # No token to mask.

  def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
    raise ValueError("an image run has no tokenizer to encode texts with")


@dataclasses.dataclass(frozen=True)
class Text:
  """Texts tokenised to ``max_length`` token ids (``input_ids``, ``attention_mask``,
  ``token_type_ids``) with the tokenizer ``tokenizer`` names."""
  tokenizer: str
  max_length: int
  is_text: ClassVar[bool] = True
  kind: ClassVar[str] = "text"
  input_names: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "token_type_ids")

  def get_tokenizer(self):
    return text_sources.get_tokenizer(self.tokenizer)

  def load_split(self, dataset: str, split: str, data_dir: str,
                 options: FileDataOptions) -> sources.Examples:
    return text_sources.load_text_split(dataset, split, data_dir, self.tokenizer,
                                        self.max_length, options)

  def input_stats(self, dataset: str, splits: Sequence[str], data_dir: str,
                  options: FileDataOptions) -> dict:
    """Token lengths per split (how many texts ``max_length`` cut)."""
    return {f"tokens/{split}": text_sources.text_split_stats(
        dataset, split, data_dir, self.tokenizer, self.max_length, options).to_json()
            for split in splits}

  def augmentations(self) -> list[str]:
    return sorted(TEXT_AUGMENTATIONS)

  def mask_token_id(self) -> int:
    return self.get_tokenizer().mask_token_id()

  def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
    return self.get_tokenizer().encode(list(texts), self.max_length)


def of(tokenizer: str, max_length: int) -> Images | Text:
  """A run's modality from its ``config.data.tokenizer`` ('' for images) and max_length."""
  return Text(tokenizer, max_length) if tokenizer else Images()
