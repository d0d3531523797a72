"""Text -> fixed-length token arrays with a Hugging Face ``tokenizers`` tokenizer.json.

Every text is truncated and padded to the same ``max_length`` so a model compiles once per
length. Normaliser, pre-tokeniser and post-processor (BERT's ``[CLS] ... [SEP]``) come from the
tokenizer.json unchanged; only its truncation length (and padding to exactly that length) is
set here, keeping the file's truncation direction and pad token. ``encode_batch`` runs in Rust,
in parallel. How many texts were cut is returned alongside (``TokenStats``), since a run
should record how much text its max_length threw away.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from tokenizers import Tokenizer

from lowres_jax.user_error import UserError
from lowres_jax.weights import sources as weight_sources
from lowres_jax.weights.errors import WeightsError

TOKENIZER_FILE = "tokenizer.json"
ARRAY_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class TokenizerError(UserError, ValueError):
  """No usable tokenizer.json at the given path or spec."""


@dataclasses.dataclass(frozen=True)
class TokenStats:
  """Token counts of one encode: ``lengths`` before truncation, special tokens included."""
  max_length: int
  lengths: np.ndarray  # (N,) int32

  @property
  def num_truncated(self) -> int:
    return int((self.lengths > self.max_length).sum())

  def to_json(self) -> dict:
    lengths = self.lengths if len(self.lengths) else np.zeros(1, np.int32)
    return {"count": int(len(self.lengths)), "max_length": self.max_length,
            "num_truncated": self.num_truncated,
            "fraction_truncated": self.num_truncated / max(len(self.lengths), 1),
            "mean_length": float(lengths.mean()), "p50_length": float(np.median(lengths)),
            "p95_length": float(np.percentile(lengths, 95)), "max_seen": int(lengths.max())}


class TextTokenizer:
  """A tokenizer.json, encoding lists of texts to (N, max_length) int32 arrays."""

  def __init__(self, json_text: str, source: str = ""):
    self.json_text = json_text
    self.source = source
    try:
      self.tokenizer = Tokenizer.from_str(json_text)  # as loaded; never reconfigured
    except Exception as error:  # tokenizers raises a bare Exception for a malformed file.
      raise TokenizerError(f"{source or 'the tokenizer'} is not a Hugging Face tokenizer.json "
                           f"({error}); point config.data.tokenizer at one") from None
    self._fixed_by_length: dict[int, Tokenizer] = {}

  @classmethod
  def from_path(cls, path_or_spec: str) -> "TextTokenizer":
    """A tokenizer.json file, a folder holding one, ``package:NAME`` or ``hf:ORG/NAME[@REV]``."""
    path = _tokenizer_file(path_or_spec)
    with open(path, encoding="utf-8") as f:
      return cls(f.read(), source=path)

  def mask_token_id(self) -> int:
    """The id of the mask token (BERT's ``[MASK]``, RoBERTa's ``<mask>``), which masking
    augmentation writes."""
    for token in ("[MASK]", "<mask>"):
      token_id = self.tokenizer.token_to_id(token)
      if token_id is not None:
        return int(token_id)
    raise TokenizerError(f"the tokenizer {self.source or '(in memory)'} has no [MASK] or "
                         "<mask> token, which augmentation 'token_mask' writes; drop that op")

  def _fixed(self, max_length: int) -> Tokenizer:
    """A copy truncating and padding to exactly ``max_length`` (stride 0, so overflow counts)."""
    if max_length not in self._fixed_by_length:
      self._fixed_by_length[max_length] = self._configure(max_length)
    return self._fixed_by_length[max_length]

  def _configure(self, max_length: int) -> Tokenizer:
    if max_length < 1:
      raise ValueError(f"max_length must be positive, got {max_length}")
    tokenizer = Tokenizer.from_str(self.json_text)
    truncation = tokenizer.truncation or {}
    tokenizer.enable_truncation(max_length, stride=0,
                                strategy=truncation.get("strategy", "longest_first"),
                                direction=truncation.get("direction", "right"))
    padding = tokenizer.padding or _default_padding(tokenizer)
    tokenizer.enable_padding(direction=padding["direction"], pad_id=padding["pad_id"],
                             pad_type_id=padding["pad_type_id"],
                             pad_token=padding["pad_token"], length=max_length)
    return tokenizer

  def encode_with_stats(self, texts: list[str],
                        max_length: int) -> tuple[dict[str, np.ndarray], TokenStats]:
    """``input_ids``, ``attention_mask``, ``token_type_ids`` (N, max_length) and TokenStats."""
    encodings = self._fixed(max_length).encode_batch(list(texts))
    arrays = {name: np.zeros((len(encodings), max_length), np.int32) for name in ARRAY_NAMES}
    for row, encoding in enumerate(encodings):
      arrays["input_ids"][row] = encoding.ids
      arrays["attention_mask"][row] = encoding.attention_mask
      arrays["token_type_ids"][row] = encoding.type_ids
    lengths = np.asarray([_untruncated_length(e) for e in encodings], np.int32)
    return arrays, TokenStats(max_length=max_length, lengths=lengths)

  def encode(self, texts: list[str], max_length: int) -> dict[str, np.ndarray]:
    return self.encode_with_stats(texts, max_length)[0]


def _untruncated_length(encoding) -> int:
  """Tokens the text would have untruncated: its special tokens plus every content token.

  With stride 0 the cut-off tokens are in ``overflowing`` exactly once each (every piece wrapped
  in its own special tokens and padded), so content = attended non-special positions summed
  over the pieces.
  """
  def content(e) -> int:
    return sum(a and not s for a, s in zip(e.attention_mask, e.special_tokens_mask))
  specials = sum(a and s for a, s in zip(encoding.attention_mask, encoding.special_tokens_mask))
  return specials + content(encoding) + sum(content(e) for e in encoding.overflowing)


def _default_padding(tokenizer: Tokenizer) -> dict:
  """Pad settings for a tokenizer.json without any: its [PAD]/<pad> token, on the right."""
  for token in ("[PAD]", "<pad>"):
    pad_id = tokenizer.token_to_id(token)
    if pad_id is not None:
      return {"direction": "right", "pad_id": pad_id, "pad_type_id": 0, "pad_token": token}
  raise TokenizerError("the tokenizer.json sets no padding and has no [PAD] or <pad> token")


def _tokenizer_file(path_or_spec: str) -> str:
  spec = path_or_spec.strip()
  try:
    path = weight_sources.resolve(spec)
  except WeightsError as error:
    # The resolver's advice names config.init.path, its usual caller; here the key is another.
    reason = str(error).replace("config.init.path", "config.data.tokenizer")
    raise TokenizerError(f"no tokenizer at {spec!r} (config.data.tokenizer): {reason}") from None
  if os.path.isdir(path):
    path = os.path.join(path, TOKENIZER_FILE)
  if not os.path.isfile(path):
    raise TokenizerError(f"{spec!r}: no {TOKENIZER_FILE} (a Hugging Face fast-tokenizer file) "
                         f"at {path}")
  return path
