"""In-step augmentation: the contract every op keeps, and what each op does on real inputs."""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowres_jax.data import augment

MAGNITUDE_OPS = tuple(augment.MAGNITUDE_KERNELS)
IMAGE_OPS = ("crop", "flip", "resized_crop") + MAGNITUDE_OPS + ("randaugment", "trivialaugment")
MIXING_OPS = ("mixup", "cutmix")
# The ops that are the identity at aug_magnitude = 0.
ZERO_IS_IDENTITY = MAGNITUDE_OPS + ("randaugment", "trivialaugment")


def hparams(magnitude=1.0, crop_scale=0.35, mixup=1.0, cutmix=1.0):
  return {"aug_magnitude": jnp.float32(magnitude), "aug_crop_scale": jnp.float32(crop_scale),
          "aug_mixup": jnp.float32(mixup), "aug_cutmix": jnp.float32(cutmix)}


TRACES = collections.Counter()  # (names, num_classes, num_ops) -> times traced.


@functools.lru_cache(maxsize=None)
def jitted(names: tuple[str, ...], num_classes: int = 0, num_ops: int = 2):
  """One compiled step per op list (shared by the tests); hyperparameters are traced arguments."""
  settings = augment.AugmentSettings(names, crop_pad=2, num_classes=num_classes, num_ops=num_ops)

  def step(key, batch, hp):
    TRACES[names, num_classes, num_ops] += 1
    return augment.augment(key, batch, hp, settings)

  return jax.jit(step)


def run(names, batch, seed=0, num_classes=0, num_ops=2, **hp):
  names = (names,) if isinstance(names, str) else tuple(names)
  return jitted(names, num_classes, num_ops)(jax.random.PRNGKey(seed), batch, hparams(**hp))


def grey_uint8(seed=0, shape=(8, 16, 16, 1), low=0, high=256):
  return jnp.asarray(np.random.default_rng(seed).integers(low, high, shape), jnp.uint8)


def rgb_float(seed=1, shape=(4, 12, 12, 3)):
  # Fractional values: identity must hold bit for bit on floats too, not only after rounding.
  return jnp.asarray(np.random.default_rng(seed).uniform(0, 255, shape), jnp.float32)


INPUTS = {"grey_uint8": grey_uint8, "rgb_float": rgb_float}


# --- The contract ---------------------------------------------------------------------------

# The policies only compose the magnitude ops (each checked on both inputs); one input keeps
# their slow compiles to one each.
@pytest.mark.parametrize("name, kind", [(name, kind) for name in IMAGE_OPS for kind in INPUTS
                                        if name in MAGNITUDE_OPS + ("crop", "flip", "resized_crop")
                                        or kind == "grey_uint8"])
def test_shape_dtype_range_and_identity_at_zero(name, kind):
  images = INPUTS[kind]()
  full = run(name, {"image": images}, magnitude=1.0)["image"]
  assert full.shape == images.shape and full.dtype == images.dtype
  assert float(full.min()) >= 0 and float(full.max()) <= 255
  assert not np.array_equal(full, images), f"{name} at full strength changed nothing"
  if name in ZERO_IS_IDENTITY:
    zero = run(name, {"image": images}, magnitude=0.0)["image"]
    np.testing.assert_array_equal(np.asarray(zero), np.asarray(images), strict=True)


@pytest.mark.parametrize("name", IMAGE_OPS + MIXING_OPS)
def test_ops_without_images_say_so(name):
  settings = augment.AugmentSettings((name,), crop_pad=1, num_classes=3)
  with pytest.raises(ValueError, match=f"augmentation '{name}' needs images"):
    augment.augment(jax.random.PRNGKey(0), {"label": jnp.zeros(4, jnp.int32)}, hparams(),
                    settings)


def test_names_are_checked():
  augment.check_names(IMAGE_OPS + MIXING_OPS)
  with pytest.raises(ValueError, match="unknown augmentation.*'rotat'"):
    augment.check_names(["rotate", "rotat"])


def test_old_positional_settings_still_work():
  settings = augment.AugmentSettings(("crop",), 1)
  assert (settings.crop_pad, settings.num_classes, settings.num_ops, settings.mask_token) == (
      1, 0, 2, -1)


def test_sweeping_hparams_does_not_recompile():
  batch, _ = constant_batch()
  names = ("cutmix", "mixup")
  outs = [run(names, batch, num_classes=8, magnitude=m, crop_scale=s, mixup=a, cutmix=a)
          for m, s, a in ((0.0, 1.0, 0.0), (0.5, 0.5, 0.4), (1.0, 0.35, 2.0))]
  assert TRACES[names, 8, 2] == 1
  np.testing.assert_array_equal(outs[0]["image"], batch["image"])
  assert not np.array_equal(outs[1]["image"], outs[2]["image"])


def test_vmap_over_runs_each_with_its_own_hparams():
  settings = augment.AugmentSettings(("rotate", "mixup"), num_classes=4)
  runs = 2
  batch = {"image": jnp.stack([grey_uint8(0), grey_uint8(1)]),
           "label": jnp.tile(jnp.arange(8, dtype=jnp.int32) % 4, (runs, 1))}
  hp = {k: jnp.stack([jnp.float32(0), v]) for k, v in hparams(1.0, 0.35, 1.0, 1.0).items()}
  keys = jax.random.split(jax.random.PRNGKey(0), runs)
  out = jax.jit(jax.vmap(lambda k, b, h: augment.augment(k, b, h, settings)))(keys, batch, hp)
  assert out["image"].shape == batch["image"].shape and out["image"].dtype == jnp.uint8
  assert out["target"].shape == (runs, 8, 4)
  # Run 0 has every strength at 0: untouched images, one-hot targets. Run 1 is augmented.
  np.testing.assert_array_equal(out["image"][0], batch["image"][0])
  np.testing.assert_array_equal(out["target"][0], jax.nn.one_hot(batch["label"][0], 4))
  assert not np.array_equal(out["image"][1], batch["image"][1])
  np.testing.assert_allclose(out["target"][1].sum(-1), 1.0, rtol=1e-6)


# --- Geometry --------------------------------------------------------------------------------

def test_flip_twice_with_the_same_key_is_the_identity():
  images = grey_uint8()
  key = jax.random.PRNGKey(3)
  once = augment.random_flip(key, {"image": images}, {})
  twice = augment.random_flip(key, once, {})
  np.testing.assert_array_equal(twice["image"], images)
  assert not np.array_equal(once["image"], images)


def test_translate_moves_a_pixel_by_the_offset():
  image = jnp.zeros((16, 16, 1)).at[5, 5, 0].set(200.0)
  moved = np.asarray(augment.translate(image, 2.0, -3.0, fill=0.0))
  expected = np.zeros((16, 16, 1))
  expected[7, 2, 0] = 200.0
  np.testing.assert_array_equal(moved, expected)
  # Half a pixel down: bilinear splits it between two rows.
  half = np.asarray(augment.translate(image, 0.5, 0.0, fill=0.0))
  np.testing.assert_allclose(half[5:7, 5, 0], [100.0, 100.0])
  assert half.sum() == pytest.approx(200.0)


def test_translate_fills_what_enters_from_outside():
  image = jnp.full((6, 6, 1), 10.0)
  moved = np.asarray(augment.translate(image, 0.0, 2.0))
  np.testing.assert_array_equal(moved[:, :2], augment.FILL)
  np.testing.assert_array_equal(moved[:, 2:], 10.0)


@pytest.mark.parametrize("size", [16, 9])
def test_rotate_by_90_degrees_matches_rot90(size):
  image = rgb_float(shape=(size, size, 3))
  np.testing.assert_allclose(augment.rotate(image, 90.0), jnp.rot90(image, 1), atol=1e-3)
  np.testing.assert_allclose(augment.rotate(image, -90.0), jnp.rot90(image, -1), atol=1e-3)


def test_shear_turns_a_centre_line_into_the_diagonal():
  vertical = jnp.zeros((9, 9, 1)).at[:, 4].set(100.0)
  np.testing.assert_allclose(augment.shear(vertical, 0.0, 1.0, fill=0.0)[..., 0],
                             100.0 * np.eye(9), atol=1e-4)
  horizontal = jnp.zeros((9, 9, 1)).at[4, :].set(100.0)
  np.testing.assert_allclose(augment.shear(horizontal, 1.0, 0.0, fill=0.0)[..., 0],
                             100.0 * np.eye(9), atol=1e-4)


@pytest.mark.parametrize("name, candidates", [
    ("rotate", lambda x: [augment.rotate(x, d) for d in (30.0, -30.0)]),
    ("translate", lambda x: [augment.translate(x, dy, dx)
                             for dy, dx in ((4.8, 0), (-4.8, 0), (0, 4.8), (0, -4.8))]),
    ("shear", lambda x: [augment.shear(x, sy, sx)
                         for sy, sx in ((0.3, 0), (-0.3, 0), (0, 0.3), (0, -0.3))]),
])
def test_geometric_ops_at_full_magnitude_use_the_maximum_amount(name, candidates):
  images = grey_uint8()
  out = np.asarray(run(name, {"image": images}, magnitude=1.0)["image"], np.float32)
  chosen = []
  for image, result in zip(images.astype(jnp.float32), out):
    errors = [np.abs(np.asarray(c) - result).max() for c in candidates(image)]
    assert min(errors) <= 0.5 + 1e-3, f"{name}: no candidate within rounding, errors {errors}"
    chosen.append(int(np.argmin(errors)))
  assert len(set(chosen)) > 1  # Random per example.


def test_resized_crop_of_a_ramp_is_the_ramp_zoomed():
  ramp = jnp.tile(jnp.arange(16.0)[None, :, None] * 10, (16, 1, 1))
  np.testing.assert_array_equal(augment.resized_crop(ramp, 0.0, 0.0, 16.0, 16.0), ramp)
  # Columns 4..12 stretched over 16 pixels: sample points 4 + (j + 0.5) / 2 - 0.5.
  zoomed = np.asarray(augment.resized_crop(ramp, 3.0, 4.0, 8.0, 8.0))[..., 0]
  expected = 10 * (4 + (np.arange(16) + 0.5) / 2 - 0.5)
  np.testing.assert_allclose(zoomed, np.tile(expected, (16, 1)), atol=1e-4)


def test_resized_crop_keeps_at_least_the_crop_scale():
  ramp = jnp.tile(jnp.arange(16, dtype=jnp.uint8)[None, None, :, None] * 10, (8, 16, 1, 1))

  def spans(scale):
    out = np.asarray(run("resized_crop", {"image": ramp}, crop_scale=scale)["image"], float)
    assert (np.diff(out, axis=2) >= 0).all()  # Never mirrored.
    return (out[:, :, -1] - out[:, :, 0]).min(axis=1)

  # A box keeps >= scale of the area at aspect >= 3/4, so >= sqrt(scale * 3/4) of the width,
  # whose 16 output samples span 15/16 of it (less a pixel of rounding and edge clamping).
  whole, small = spans(1.0), spans(0.35)
  assert (whole >= 10 * (15 * np.sqrt(0.75) - 1)).all()
  assert (small >= 10 * (15 * np.sqrt(0.35 * 0.75) - 1)).all()
  assert small.min() < whole.min()


# --- Photometry, against PIL -----------------------------------------------------------------

def pil_reference(name):
  PIL = pytest.importorskip("PIL")
  from PIL import Image, ImageEnhance, ImageOps
  del PIL

  def each(fn):
    return lambda x: [np.asarray(fn(Image.fromarray(x[..., 0]), f))[..., None] for f in (1.9, 0.1)]

  return {
      "brightness": each(lambda im, f: ImageEnhance.Brightness(im).enhance(f)),
      "contrast": each(lambda im, f: ImageEnhance.Contrast(im).enhance(f)),
      "sharpness": each(lambda im, f: ImageEnhance.Sharpness(im).enhance(f)),
      "posterize": lambda x: [np.asarray(ImageOps.posterize(Image.fromarray(x[..., 0]), 4))],
      "solarize": lambda x: [np.asarray(ImageOps.solarize(Image.fromarray(x[..., 0]), 0))],
      "autocontrast": lambda x: [np.asarray(ImageOps.autocontrast(Image.fromarray(x[..., 0])))],
      "equalize": lambda x: [equalize_reference(x)],
  }[name]


def equalize_reference(image):
  """PIL's equalize, but with a fractional step: PIL's integer one does nothing to images of
  under 256 pixels, 16x16 ones here included."""
  histogram = np.bincount(image.ravel(), minlength=256)
  step = (image.size - histogram[np.nonzero(histogram)[0][-1]]) / 255
  below = np.concatenate([[0], np.cumsum(histogram)[:-1]])
  return np.minimum(np.floor((below + step / 2) / step), 255)[image]


@pytest.mark.parametrize("name, atol", [
    ("brightness", 2), ("contrast", 2), ("sharpness", 2),  # PIL truncates where we round.
    ("posterize", 0), ("solarize", 0), ("autocontrast", 1), ("equalize", 1)])
def test_photometric_ops_at_full_magnitude_match_pil(name, atol):
  reference = pil_reference(name)
  images = grey_uint8(seed=4, low=60, high=180)  # Room to move both ways before clipping.
  out = np.asarray(run(name, {"image": images}, magnitude=1.0)["image"], int)
  chosen = []
  for image, result in zip(np.asarray(images), out):
    errors = [np.abs(np.asarray(r, int).reshape(result.shape) - result).max()
              for r in reference(image)]
    assert min(errors) <= atol, f"{name}: off PIL by {errors}"
    chosen.append(int(np.argmin(errors)))
  if name in ("brightness", "contrast", "sharpness"):
    assert set(chosen) == {0, 1}, "the sign should be random per example"


def test_posterize_zeroes_the_low_bits():
  images = grey_uint8()
  np.testing.assert_array_equal(run("posterize", {"image": images}, magnitude=1.0)["image"],
                                images & 0xF0)
  np.testing.assert_array_equal(run("posterize", {"image": images}, magnitude=0.5)["image"],
                                images & 0xFC)


def test_solarize_inverts_above_the_threshold():
  images = grey_uint8()
  out = run("solarize", {"image": images}, magnitude=0.5)["image"]  # Threshold 128.
  np.testing.assert_array_equal(out, jnp.where(images >= 128, 255 - images, images))


def test_autocontrast_stretches_each_channel_to_the_full_range():
  images = rgb_float().at[..., 1].multiply(0.3)
  out = run("autocontrast", {"image": images}, magnitude=1.0)["image"]
  np.testing.assert_allclose(out.min(axis=(1, 2)), 0.0, atol=1e-3)
  np.testing.assert_allclose(out.max(axis=(1, 2)), 255.0, atol=1e-3)
  # No strength of its own: any magnitude above 0 applies it in full (as RandAugment does).
  half = run("autocontrast", {"image": images}, magnitude=0.3)["image"]
  np.testing.assert_allclose(half, out, atol=1e-6)


def test_equalize_flattens_the_histogram():
  images = grey_uint8(low=100, high=120)  # Low contrast: 20 levels of 256.
  out = np.asarray(run("equalize", {"image": images}, magnitude=1.0)["image"])

  def distance_from_uniform(values):
    cdf = np.searchsorted(np.sort(values.ravel()), np.arange(256), side="right") / values.size
    return np.abs(cdf - (np.arange(256) + 1) / 256).max()

  for before, after in zip(np.asarray(images), out):
    assert distance_from_uniform(after) < 0.1 < distance_from_uniform(before)


def test_contrast_on_rgb_scales_distance_from_the_grey_mean():
  images = rgb_float() * 0.2 + 100  # Stays inside [0, 255] at factor 1.9.
  out = run("contrast", {"image": images}, magnitude=0.5)["image"]
  weights = jnp.array([0.299, 0.587, 0.114])
  mean = (images @ weights).mean(axis=(1, 2))[:, None, None, None]
  factors = []
  for moved, before in zip(np.asarray(out - mean), np.asarray(images - mean)):
    factors += [f for f in (1.45, 0.55) if np.allclose(moved, f * before, atol=1e-3)]
  assert len(factors) == len(images) and len(set(factors)) == 2


def test_sharpness_leaves_flat_images_and_borders_alone():
  flat = jnp.full((4, 12, 12, 3), 77.0)
  np.testing.assert_array_equal(run("sharpness", {"image": flat})["image"], flat)
  images = rgb_float()
  out = np.asarray(run("sharpness", {"image": images})["image"])
  border = np.ones((12, 12), bool)
  border[1:-1, 1:-1] = False
  np.testing.assert_array_equal(out[:, border], np.asarray(images)[:, border])


def test_cutout_fills_one_square_and_leaves_the_rest():
  images = grey_uint8(high=128)  # No 128s in the input: every filled pixel shows.
  out = np.asarray(run("cutout", {"image": images}, magnitude=1.0)["image"])
  for image, result in zip(np.asarray(images), out):
    rows, cols = np.nonzero((result != image)[..., 0])
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # Side 8 = half of 16, clipped at the border to no less than 4.
    assert 4 <= bottom - top <= 8 and 4 <= right - left <= 8
    assert (result[top:bottom, left:right] == 128).all()
    outside = np.ones(image.shape, bool)
    outside[top:bottom, left:right] = False
    np.testing.assert_array_equal(result[outside], image[outside])


def test_randaugment_picks_a_different_op_per_example():
  # Posterize, solarize, autocontrast and equalize are deterministic at full magnitude: the
  # examples RandAugment gave one of them show which, and more than one kind should show up.
  deterministic = ("posterize", "solarize", "autocontrast", "equalize")
  kinds = []
  for seed in range(4):
    images = grey_uint8(seed)
    out = np.asarray(run("randaugment", {"image": images}, seed=seed, num_ops=1)["image"])
    candidates = [np.asarray(run(name, {"image": images})["image"]) for name in deterministic]
    for i, result in enumerate(out):
      kinds.append(next((name for name, c in zip(deterministic, candidates)
                         if np.array_equal(c[i], result)), None))
  assert len(set(kinds) - {None}) >= 2
  assert kinds.count(None) >= len(kinds) // 3  # The other seven ops ran too.


def test_trivialaugment_draws_magnitudes_below_the_maximum():
  # One op per example either way; TrivialAugment's strength is uniform in [0, 1], so on
  # average it moves images less than RandAugment's full strength.
  def distance(name, num_ops):
    total = 0.0
    for seed in range(4):
      images = grey_uint8(seed)
      out = run(name, {"image": images}, seed=seed, num_ops=num_ops)["image"]
      total += float(jnp.abs(out.astype(jnp.float32) - images).mean())
    return total

  assert 0 < distance("trivialaugment", 2) < 0.8 * distance("randaugment", 1)


def test_randaugment_applies_num_ops_in_sequence():
  images = grey_uint8(high=128)
  one = np.asarray(run("randaugment", {"image": images}, num_ops=1)["image"])
  two = np.asarray(run("randaugment", {"image": images}, num_ops=2)["image"])
  none = np.asarray(run("randaugment", {"image": images}, num_ops=0)["image"])
  np.testing.assert_array_equal(none, images)
  distance = lambda x: np.abs(x.astype(float) - np.asarray(images, float)).mean()
  assert distance(two) > distance(one) > 0


# --- Mixing -----------------------------------------------------------------------------------

def constant_batch(size=8):
  """Example i is the constant image 10 i + 5 with label i: a mixed image's pixels tell which
  examples went into it, and in what proportion."""
  values = 10.0 * np.arange(size) + 5
  images = jnp.asarray(np.broadcast_to(values[:, None, None, None], (size, 16, 16, 1)),
                       jnp.float32)
  return {"image": images, "label": jnp.arange(size, dtype=jnp.int32)}, values


def partners(targets):
  """Each row's other class, or its own when paired with itself; must be a permutation."""
  found = []
  for i, row in enumerate(np.asarray(targets)):
    others = [k for k in np.nonzero(row > 1e-6)[0] if k != i]
    assert len(others) <= 1
    found.append(others[0] if others else i)
  assert sorted(found) == list(range(len(found)))
  return np.asarray(found)


def test_mixup_mixes_images_and_one_hot_labels_with_the_same_lambda():
  batch, values = constant_batch()
  out = run("mixup", batch, num_classes=8, mixup=1.0)
  targets = np.asarray(out["target"])
  assert out["target"].dtype == jnp.float32
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  partner = partners(targets)
  lam = targets[np.arange(8), np.arange(8)]
  assert ((lam > 0.01) & (lam < 0.99)).sum() >= 4  # Beta(1, 1) draws, one per example.
  expected = lam[:, None] * np.eye(8) + (1 - lam[:, None]) * np.eye(8)[partner]
  np.testing.assert_allclose(targets, expected, atol=1e-6)
  mixed_value = lam * values + (1 - lam) * values[partner]
  np.testing.assert_allclose(out["image"], np.broadcast_to(
      mixed_value[:, None, None, None], batch["image"].shape), rtol=1e-5)
  np.testing.assert_array_equal(out["label"], batch["label"])


def test_mixup_loss_equals_lambda_weighted_cross_entropies():
  """The training loss on mixup's soft targets = lam * CE(own label) + (1 - lam) * CE(partner's)
  (the hand computation of Zhang et al.'s objective)."""
  from lowres_jax.train import losses
  batch, _ = constant_batch()
  out = run("mixup", batch, num_classes=8, mixup=0.4)
  targets = np.asarray(out["target"])
  partner, lam = partners(targets), targets[np.arange(8), np.arange(8)]
  logits = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (8, 8)), np.float64)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  labels = np.asarray(batch["label"])
  expected = np.mean(-lam * log_p[np.arange(8), labels]
                     - (1 - lam) * log_p[np.arange(8), labels[partner]])
  context = losses.LossContext(out, jnp.asarray(logits, jnp.float32), {}, {},
                               {"label_smoothing": jnp.float32(0.0)})
  assert float(losses.cross_entropy(context)) == pytest.approx(expected, rel=1e-5)


def test_cutmix_lambda_is_the_area_left_unpasted():
  batch, values = constant_batch()
  out = run("cutmix", batch, num_classes=8, cutmix=1.0)
  targets, images = np.asarray(out["target"]), np.asarray(out["image"])[..., 0]
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  partner = partners(targets)
  pasted_somewhere = False
  for i, p in enumerate(partner):
    if p == i:
      continue
    pasted = images[i] == values[p]
    assert (pasted | (images[i] == values[i])).all()
    assert targets[i, p] == pytest.approx(pasted.mean(), abs=1e-6)
    rows, cols = np.nonzero(pasted)
    if rows.size:  # A rectangle: its bounding box is full.
      pasted_somewhere = True
      assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
  assert pasted_somewhere


def test_cutmix_then_mixup_mixes_the_soft_targets():
  batch, values = constant_batch()
  out = run(("cutmix", "mixup"), batch, num_classes=8)
  targets = np.asarray(out["target"])
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  assert ((targets > 1e-6).sum(-1) > 2).any()  # Some example holds three or four classes.
  # Both steps are linear: each image's mean is its targets' weighted class values.
  np.testing.assert_allclose(np.asarray(out["image"]).mean(axis=(1, 2, 3)), targets @ values,
                             rtol=1e-5)


@pytest.mark.parametrize("name", MIXING_OPS)
def test_alpha_zero_mixes_nothing(name):
  batch, _ = constant_batch()
  out = run(name, batch, num_classes=8, mixup=0.0, cutmix=0.0)
  np.testing.assert_array_equal(out["image"], batch["image"], strict=True)
  np.testing.assert_array_equal(out["target"], np.eye(8))


@pytest.mark.parametrize("name", MIXING_OPS)
def test_mixing_needs_the_number_of_classes(name):
  with pytest.raises(ValueError, match=f"'{name}'.*num_classes >= 1; got 0"):
    augment.AUGMENTATIONS[name](augment.AugmentSettings((name,)))


def test_text_ops_are_in_the_same_registry():
  from lowres_jax.data.text_augment import TEXT_AUGMENTATIONS
  assert set(TEXT_AUGMENTATIONS) <= set(augment.AUGMENTATIONS)
  assert not set(TEXT_AUGMENTATIONS) & set(IMAGE_OPS + MIXING_OPS)
