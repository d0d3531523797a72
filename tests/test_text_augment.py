"""EDA-style token augmentation: identities, invariants per op, jit with traced rates, vmap."""

import types
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowres_jax.data import text_augment
from lowres_jax.data.text_augment import TEXT_AUGMENTATIONS

CLS, SEP, MASK = 101, 102, 103
SETTINGS = types.SimpleNamespace(mask_token=MASK)
RATE_KEY = {"token_delete": "aug_delete", "token_swap": "aug_swap",
            "token_insert": "aug_insert", "token_mask": "aug_mask"}
NAMES = sorted(TEXT_AUGMENTATIONS)
L = 16
# Empty row, full row, one content token, two, odd and even counts in between.
LENGTHS = (2, L, 3, 4, 7, 10, 11, 5)


def make_batch(lengths, width=L, seed=0, type_rows=(3,)):
  """Rows ``[CLS] c ... c [SEP] pad ...``; content ids distinct within a row so moves can be
  traced back. Rows in ``type_rows`` carry type id 1, so type handling is visible."""
  rng = np.random.default_rng(seed)
  batch = {name: np.zeros((len(lengths), width), np.int32)
           for name in ("input_ids", "attention_mask", "token_type_ids")}
  for row, n in enumerate(lengths):
    content = 1000 + rng.permutation(5000)[:n - 2]
    batch["input_ids"][row, :n] = [CLS, *content, SEP]
    batch["attention_mask"][row, :n] = 1
    batch["token_type_ids"][row, :n] = 1 if row in type_rows else 0
  batch["label"] = np.arange(len(lengths), dtype=np.int32) % 3
  return batch


def random_batch(rows, width, seed):
  lengths = np.random.default_rng(seed).integers(2, width + 1, rows)
  return make_batch(lengths, width, seed, type_rows=())


# One jitted function per op, built once: the rate is a traced argument.
_JITTED = {name: jax.jit(lambda key, batch, hp, _op=TEXT_AUGMENTATIONS[name](SETTINGS):
                         _op(key, batch, hp)) for name in NAMES}


def apply(name, batch, rate, seed=0):
  hparams = {RATE_KEY[name]: jnp.float32(rate)}
  out = _JITTED[name](jax.random.PRNGKey(seed), batch, hparams)
  return {k: np.asarray(v) for k, v in out.items()}


def rows(batch):
  """Per row: the attended ids as a list."""
  return [list(ids[mask == 1]) for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]


def check_layout(out, in_batch=None):
  """Mask is a prefix, [CLS] first and [SEP] last, padding zero, types constant per row."""
  lengths = out["attention_mask"].sum(1)
  positions = np.arange(out["input_ids"].shape[1])[None, :]
  np.testing.assert_array_equal(out["attention_mask"], (positions < lengths[:, None]))
  assert (out["input_ids"][:, 0] == CLS).all()
  np.testing.assert_array_equal(out["input_ids"][np.arange(len(lengths)), lengths - 1], SEP)
  assert (out["input_ids"][out["attention_mask"] == 0] == 0).all()
  if in_batch is not None:
    row_type = in_batch["token_type_ids"][:, :1]
    np.testing.assert_array_equal(out["token_type_ids"], row_type * out["attention_mask"])
    np.testing.assert_array_equal(out["label"], in_batch["label"])
  return lengths


def is_subsequence(small, big):
  it = iter(big)
  return all(x in it for x in small)


@pytest.mark.parametrize("name", NAMES)
def test_rate_zero_is_identity(name):
  batch = make_batch(LENGTHS)
  out = apply(name, batch, 0.0, seed=3)
  for k, v in batch.items():
    assert out[k].dtype == v.dtype
    np.testing.assert_array_equal(out[k], v, err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_row_without_content_is_unchanged(name):
  batch = make_batch((2, 2, 2, 2))
  out = apply(name, batch, 1.0)
  for k, v in batch.items():
    np.testing.assert_array_equal(out[k], v, err_msg=k)


def test_delete_rate_one_keeps_one_content_token():
  batch = make_batch(LENGTHS)
  out = apply("token_delete", batch, 1.0)
  lengths = check_layout(out, batch)
  np.testing.assert_array_equal(lengths, np.minimum(LENGTHS, 3))
  for before, after in zip(rows(batch), rows(out)):
    assert set(after[1:-1]) <= set(before[1:-1])


def test_delete_keeps_order_and_drops_at_rate():
  batch = random_batch(128, 24, seed=1)
  out = apply("token_delete", batch, 0.4, seed=7)
  check_layout(out, batch)
  dropped = total = 0
  for before, after in zip(rows(batch), rows(out)):
    # Distinct ids: the kept tokens are a subsequence, i.e. the numpy reference
    # ``[t for t in before if t kept]`` given these drop decisions.
    assert is_subsequence(after, before)
    assert after[0] == CLS and after[-1] == SEP
    if len(before) > 2:
      assert len(after) > 2
    if len(before) > 8:  # rows where the keep-one rule almost never fires
      dropped += len(before) - len(after)
      total += len(before) - 2
  assert abs(dropped / total - 0.4) < 0.06


def test_swap_preserves_tokens_and_length():
  batch = make_batch(LENGTHS)
  out = apply("token_swap", batch, 1.0, seed=2)
  check_layout(out, batch)
  np.testing.assert_array_equal(out["attention_mask"], batch["attention_mask"])
  for before, after, n in zip(rows(batch), rows(out), LENGTHS):
    assert Counter(before) == Counter(after)
    moved = [i for i in range(n) if before[i] != after[i]]
    # Rate 1 swaps every pair: all content but an odd one out moves, each as a transposition.
    assert len(moved) == 2 * ((n - 2) // 2)
    for i in moved:
      j = before.index(after[i])
      assert after[j] == before[i]


def test_swap_rate_half_moves_some_but_not_all():
  batch = random_batch(64, 20, seed=4)
  out = apply("token_swap", batch, 0.5, seed=5)
  check_layout(out, batch)
  changed = content = 0
  for before, after in zip(rows(batch), rows(out)):
    assert Counter(before) == Counter(after)
    changed += sum(a != b for a, b in zip(before, after))
    content += 2 * ((len(before) - 2) // 2)
  assert abs(changed / content - 0.5) < 0.08


@pytest.mark.parametrize("rate", [1.0, 0.5])
def test_insert_adds_tokens_from_the_same_row(rate):
  batch = make_batch(LENGTHS)
  out = apply("token_insert", batch, rate, seed=6)
  lengths = check_layout(out, batch)
  assert (lengths <= L).all()
  for before, after, n in zip(rows(batch), rows(out), LENGTHS):
    assert is_subsequence(before, after)  # every original token survives, in order
    inserted = Counter(after) - Counter(before)
    assert len(after) == n + sum(inserted.values())
    assert set(inserted) <= set(before[1:-1])
    if n > 2:
      assert after[1] == before[1]  # nothing is inserted after [CLS]
    if rate == 1.0:
      assert len(after) == min(n + (n - 2), L)  # one per content token, while there is room
  assert (lengths > np.asarray(LENGTHS)).any()


def test_insert_rate_on_average():
  batch = random_batch(128, 32, seed=8)
  batch_lengths = batch["attention_mask"].sum(1)
  out = apply("token_insert", batch, 0.25, seed=9)
  check_layout(out, batch)
  short = batch_lengths <= 16  # room for any number of insertions
  added = out["attention_mask"].sum(1) - batch_lengths
  assert abs(added[short].sum() / (batch_lengths[short] - 2).sum() - 0.25) < 0.06


def test_mask_changes_only_content_to_mask_id():
  batch = random_batch(256, 32, seed=10)
  out = apply("token_mask", batch, 0.3, seed=11)
  for k in ("attention_mask", "token_type_ids", "label"):
    np.testing.assert_array_equal(out[k], batch[k])
  changed = out["input_ids"] != batch["input_ids"]
  assert (out["input_ids"][changed] == MASK).all()
  lengths = batch["attention_mask"].sum(1)
  positions = np.arange(32)[None, :]
  content = (positions >= 1) & (positions < lengths[:, None] - 1)
  assert not (changed & ~content).any()
  assert abs(changed.sum() / content.sum() - 0.3) < 0.03


@pytest.mark.parametrize("name", NAMES)
def test_rates_are_traced_no_recompile(name):
  batch = make_batch(LENGTHS)
  fn = jax.jit(lambda key, b, hp: TEXT_AUGMENTATIONS[name](SETTINGS)(key, b, hp))
  outs = [fn(jax.random.PRNGKey(0), batch, {RATE_KEY[name]: jnp.float32(r)})
          for r in (0.0, 0.7, 1.0)]
  assert fn._cache_size() == 1
  np.testing.assert_array_equal(outs[0]["input_ids"], batch["input_ids"])
  assert not np.array_equal(outs[2]["input_ids"], batch["input_ids"])


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_runs(name):
  batch = make_batch(LENGTHS)
  runs = 3
  stacked = {k: np.stack([v] * runs) for k, v in batch.items()}
  keys = jax.random.split(jax.random.PRNGKey(1), runs)
  rates = jnp.asarray([0.0, 0.5, 1.0], jnp.float32)
  op = TEXT_AUGMENTATIONS[name](SETTINGS)
  out = jax.jit(jax.vmap(lambda key, b, r: op(key, b, {RATE_KEY[name]: r})))(
      keys, stacked, rates)
  for run in range(runs):
    single = op(keys[run], batch, {RATE_KEY[name]: rates[run]})
    for k in batch:
      np.testing.assert_array_equal(np.asarray(out[k][run]), np.asarray(single[k]), err_msg=k)
  np.testing.assert_array_equal(np.asarray(out["input_ids"][0]), batch["input_ids"])


def test_examples_get_their_own_randomness():
  batch = make_batch([10] * 8, type_rows=())
  batch["input_ids"][:] = batch["input_ids"][0]  # identical rows
  out = apply("token_swap", batch, 0.5, seed=12)
  assert len({tuple(r) for r in out["input_ids"]}) > 1


def test_errors():
  hparams = {key: jnp.float32(0.5) for key in RATE_KEY.values()}
  key = jax.random.PRNGKey(0)
  for name in NAMES:
    with pytest.raises(ValueError, match="input_ids"):
      TEXT_AUGMENTATIONS[name](SETTINGS)(key, {"image": jnp.zeros((2, 4, 4, 3))}, hparams)
  with pytest.raises(ValueError, match=r"\[MASK\] id"):
    TEXT_AUGMENTATIONS["token_mask"](types.SimpleNamespace(mask_token=-1))
  with pytest.raises(ValueError, match=r"\[MASK\] id"):
    TEXT_AUGMENTATIONS["token_mask"](types.SimpleNamespace())
  with pytest.raises(ValueError, match="aug_delete"):
    text_augment.token_delete(key, make_batch(LENGTHS), {})
