"""Text data: the fortunes builder on a fake tree, tokenisation, text splits as Examples."""

import os

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from lowres_jax.data import builders, fewshot, sources, text_builders, text_sources
from lowres_jax.data.tokenize import TextTokenizer, TokenizerError

MINILM = "package:all_minilm_l6_v2"
MIN_ENTRIES = 5  # the fake tree's threshold (Fortunes.MIN_ENTRIES is 20)

ALPHA = [f"Alpha fortune number {i}.\n\t\t-- Someone {i}" for i in range(10)]
BETA = [f"Beta saying {i}: the quick brown fox" for i in range(8)]
GAMMA = [f"Gamma {i}" for i in range(7)]
SHARED = "A fortune in both alpha and beta."
STOLEN = "Tiny shares this with beta, but tiny is below the threshold."


def _write(path, entries, trailing="%\n"):
  path.write_text("\n%\n".join(entries) + "\n" + trailing)


@pytest.fixture(scope="module")
def fake_tree(tmp_path_factory):
  """A fortunes folder with every case the builder must skip, merge or drop."""
  root = tmp_path_factory.mktemp("fortunes")
  # alpha: a whitespace-variant duplicate of ALPHA[2], an empty and a blank entry, SHARED.
  _write(root / "alpha", ALPHA[:3] + ["", ALPHA[2].replace(" ", "   "), "   \n  "]
         + ALPHA[3:] + [SHARED])
  _write(root / "beta", [SHARED] + BETA[:4] + [STOLEN] + BETA[4:])
  _write(root / "gamma", GAMMA, trailing="")  # no final % line
  _write(root / "aaa-tiny", [STOLEN, "only two entries here"])
  (root / "alpha.dat").write_bytes(b"\x00\x00\x00\x02%\n\x00\xff\xfe binary index")
  _write(root / "alpha.u8", [f"from a .u8 file {i}" for i in range(10)])
  os.symlink(root / "gamma", root / "zeta")  # a link repeating a category
  (root / "off").mkdir()
  _write(root / "off" / "rude", [f"offensive {i}" for i in range(10)])
  return root


@pytest.fixture(scope="module")
def fake_data_dir(fake_tree, tmp_path_factory):
  """A TFDS data dir with the fake tree prepared as ``fortunes``."""
  data_dir = str(tmp_path_factory.mktemp("tfds_text"))
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv(text_builders.FORTUNES_DIR_ENV, str(fake_tree))
    patch.setattr(text_builders.Fortunes, "MIN_ENTRIES", MIN_ENTRIES)
    sources._data_source("fortunes", "train", data_dir)
  return data_dir


def _records(data_dir, split):
  records = sources._read_all(sources._data_source("fortunes", split, data_dir))
  return [(r["text"].decode(), int(r["label"]), int(r["id"])) for r in records]


def test_fake_tree_parsed_exactly(fake_data_dir):
  assert text_sources.label_names("fortunes", fake_data_dir) == ["alpha", "beta", "gamma"]
  train, test = _records(fake_data_dir, "train"), _records(fake_data_dir, "test")
  expected = {0: ALPHA + [SHARED], 1: BETA + [STOLEN], 2: GAMMA}
  for label, entries in expected.items():
    got_train = [t for t, l, _ in train if l == label]
    got_test = [t for t, l, _ in test if l == label]
    assert sorted(got_train + got_test) == sorted(entries)  # exact text, no duplicates
    assert len(got_test) == len(entries) * text_builders.TEST_PERCENT // 100
  for text, _, id_ in train + test:
    assert id_ == text_builders.entry_id(text) < 2**text_builders.ID_BITS
  assert not {i for *_, i in train} & {i for *_, i in test}


def test_split_is_a_fixed_function_of_the_entries():
  ids = [text_builders.entry_id(f"entry {i}") for i in range(40)]
  test = text_builders.is_test(ids)
  assert sum(test) == 12
  reordered = text_builders.is_test(ids[::-1])[::-1]
  assert reordered == test  # file order does not move an entry between splits


def test_missing_directory_names_the_package_and_variable(tmp_path, monkeypatch):
  monkeypatch.setenv(text_builders.FORTUNES_DIR_ENV, str(tmp_path / "nowhere"))
  with pytest.raises(builders.DatasetMissingError,
                     match=r"apt-get install fortunes.*LOWRES_FORTUNES_DIR"):
    text_sources.load_text_split("fortunes", "train", str(tmp_path / "tfds"), MINILM, 16)


SENTENCES = ["Hello, world!", "", "A literal [CLS] and [SEP] in the text.", "long " * 400,
             "Ünïcödé tëxt — with accents", "  spaced \n\t out  "]


def test_encode_matches_tokenizers_encode_batch():
  tokenizer = TextTokenizer.from_path(MINILM)
  arrays, stats = tokenizer.encode_with_stats(SENTENCES, 16)
  reference = Tokenizer.from_file(tokenizer.source)
  reference.enable_truncation(16)
  reference.enable_padding(length=16)
  expected = reference.encode_batch(SENTENCES)
  assert set(arrays) == {"input_ids", "attention_mask", "token_type_ids"}
  for name, array in arrays.items():
    assert array.shape == (len(SENTENCES), 16) and array.dtype == np.int32, name
  np.testing.assert_array_equal(arrays["input_ids"], [e.ids for e in expected])
  np.testing.assert_array_equal(arrays["attention_mask"], [e.attention_mask for e in expected])
  np.testing.assert_array_equal(arrays["token_type_ids"], [e.type_ids for e in expected])
  # The post-processor is kept: [CLS] first, [SEP] last among the attended tokens.
  last = arrays["attention_mask"].sum(1) - 1
  assert (arrays["input_ids"][:, 0] == 101).all()
  assert (arrays["input_ids"][np.arange(len(SENTENCES)), last] == 102).all()
  assert arrays["input_ids"][1].tolist()[:3] == [101, 102, 0]  # the empty string
  reference.no_truncation()
  reference.no_padding()
  full = [len(e.ids) for e in reference.encode_batch(SENTENCES)]
  assert stats.lengths.tolist() == full and full[3] == 402
  assert stats.num_truncated == sum(n > 16 for n in full) == 1
  assert stats.to_json()["max_seen"] == 402
  np.testing.assert_array_equal(tokenizer.encode(SENTENCES, 16)["input_ids"], arrays["input_ids"])


def test_tokenizer_paths_and_a_file_without_padding(tmp_path):
  directory = TextTokenizer.from_path(MINILM).source
  assert TextTokenizer.from_path(os.path.dirname(directory)).source == directory
  with pytest.raises(TokenizerError, match="no tokenizer"):
    TextTokenizer.from_path(str(tmp_path / "absent.json"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(TokenizerError, match="tokenizer.json"):
    TextTokenizer.from_path(str(tmp_path / "empty"))
  bare = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "a": 2, "b": 3}, unk_token="<unk>"))
  bare.pre_tokenizer = pre_tokenizers.Whitespace()
  bare.save(str(tmp_path / "tokenizer.json"))
  arrays, stats = TextTokenizer.from_path(str(tmp_path)).encode_with_stats(
      ["a b c", "b", "a a a a a"], 4)
  assert arrays["input_ids"].tolist() == [[2, 3, 1, 0], [3, 0, 0, 0], [2, 2, 2, 2]]
  assert stats.lengths.tolist() == [3, 1, 5] and stats.num_truncated == 1


def test_text_split_is_aligned_and_drawable(fake_data_dir):
  examples = text_sources.load_text_split("fortunes", "train", fake_data_dir, MINILM, 12)
  raw = {i: (t, l) for t, l, i in _records(fake_data_dir, "train")}
  assert set(examples.arrays) == {"id", "label", "input_ids", "attention_mask",
                                  "token_type_ids"}
  assert len(examples) == len(raw) == 8 + 7 + 5
  assert (np.diff(examples.ids) > 0).all()
  texts = [raw[int(i)][0] for i in examples.ids]
  assert examples.labels.tolist() == [raw[int(i)][1] for i in examples.ids]
  expected = TextTokenizer.from_path(MINILM).encode(texts, 12)
  for name, array in expected.items():
    np.testing.assert_array_equal(examples.arrays[name], array)
  stats = text_sources.text_split_stats("fortunes", "train", fake_data_dir, MINILM, 12)
  assert len(stats.lengths) == len(examples) and stats.max_length == 12
  manifest = fewshot.draw_manifest(examples, "fortunes", (0, 1, 2), shots=3, val_per_class=2,
                                   seed=0)
  train = fewshot.select(examples, manifest.train_ids, (2, 0))
  assert len(manifest.train_ids) == 9 and len(manifest.val_ids) == 6
  assert np.bincount(fewshot.select(examples, manifest.train_ids, (0, 1, 2)).labels).tolist() \
      == [3, 3, 3]
  assert train.arrays["input_ids"].shape == (9, 12)


@pytest.mark.skipif(not os.path.isdir(text_builders.FORTUNES_DEFAULT_DIR),
                    reason="Debian's fortunes package is not installed")
def test_real_fortunes_have_many_large_categories(tmp_path, monkeypatch):
  monkeypatch.delenv(text_builders.FORTUNES_DIR_ENV, raising=False)
  data_dir = str(tmp_path)
  names = text_sources.label_names("fortunes", data_dir)
  counts = {}
  for split in ("train", "test"):
    labels = [label for _, label, _ in _records(data_dir, split)]
    counts[split] = np.bincount(labels, minlength=len(names))
  print({n: f"{a}/{b}" for n, a, b in zip(names, counts["train"], counts["test"])})
  total = counts["train"] + counts["test"]
  assert (total >= text_builders.Fortunes.MIN_ENTRIES).all()
  assert (total >= 200).sum() >= 8
