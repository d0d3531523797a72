"""Augmentation that runs inside the jitted train step, on batch dicts.

The k-shot training set lives on the accelerator; augmenting there keeps the host out of the
hot loop. Ops are looked up by name from ``config.train.augment`` and applied in order. Each op
is ``(key, batch, hparams) -> batch``: it may change any entry (mixup will change labels too)
and read traced hyperparameters (a mixup alpha swept without recompiling). Static settings that
shape the program (the crop padding) are bound when the op is built.

Images are ``batch["image"]``, NHWC, uint8 or float on the 0-255 scale. Every image op returns
the input's shape and dtype with values in [0, 255] (rounded for integer dtypes). Random
parameters are drawn per example, and nothing branches in Python on a traced value, so the ops
run under ``jax.jit`` and under ``jax.vmap`` over runs.

Traced hyperparameters (float32 scalars in ``hparams``):
  aug_magnitude   0..1, the fraction of each magnitude op's maximum strength; at 0 every
                  magnitude op (and randaugment, trivialaugment) is the identity, bit for bit.
  aug_crop_scale  the smallest area fraction ``resized_crop`` keeps.
  aug_mixup       mixup's Beta(alpha, alpha); 0 turns it off.
  aug_cutmix      cutmix's Beta(alpha, alpha); 0 turns it off.

Magnitude ops are built from deterministic cores (``rotate``, ``posterize``, ``equalize``, ...)
that take explicit parameters, plus a per-image kernel that draws those parameters from a key.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from lowres_jax.data.text_augment import TEXT_AUGMENTATIONS

Batch = dict[str, jax.Array]
AugmentOp = Callable[[jax.Array, Batch, Mapping[str, jax.Array]], Batch]
# One example: (key, image (H, W, C) float on the 0-255 scale, strength scalar) -> image.
ImageKernel = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

# Pixels that geometric ops bring in from outside the image, and cutout's square, are grey:
# mid-range is neutral on dark- and light-background datasets alike (reference RandAugment
# implementations fill with 128 too).
FILL = 128.0

# Each magnitude op's strength at aug_magnitude = 1.
MAX_ENHANCE = 0.9      # Brightness/contrast/sharpness factor 1 +- 0.9, RandAugment's [0.1, 1.9].
MAX_ROTATE = 30.0      # Degrees.
MAX_TRANSLATE = 0.3    # Fraction of the image's height or width.
MAX_SHEAR = 0.3        # Displacement per pixel of distance from the centre.
MAX_CUTOUT = 0.5       # Side of the square as a fraction of the image's shorter side.
MAX_POSTERIZE = 4      # Bits dropped: 8 kept at magnitude 0, 4 at magnitude 1.


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
  """The static part of augmentation: changing it changes the compiled step."""
  names: tuple[str, ...] = ()
  crop_pad: int = 0
  num_classes: int = 0   # Width of the soft targets mixup and cutmix write.
  num_ops: int = 2       # RandAugment's N: ops applied, one after another, to each example.
  mask_token: int = -1   # The token id text ops mask with.


def _images(batch: Batch, op: str) -> jax.Array:
  if "image" not in batch:
    raise ValueError(f"augmentation {op!r} needs images; this batch has {sorted(batch)}")
  return batch["image"]


def _hparam(hparams: Mapping[str, jax.Array], name: str, op: str) -> jax.Array:
  if name not in hparams:
    raise ValueError(f"augmentation {op!r} reads hparams[{name!r}], which this step does not "
                     f"provide; it has {sorted(hparams)}")
  return jnp.asarray(hparams[name], jnp.float32)


def _to_float(images: jax.Array) -> jax.Array:
  """Images in a float dtype at least as wide as float32 (no rounding between chained ops)."""
  if jnp.issubdtype(images.dtype, jnp.floating):
    return images.astype(jnp.promote_types(images.dtype, jnp.float32))
  return images.astype(jnp.float32)


def _from_float(images: jax.Array, dtype) -> jax.Array:
  """Back to the input's dtype, inside [0, 255] (rounded, not truncated, for integers)."""
  images = jnp.clip(images, 0.0, 255.0)
  if jnp.issubdtype(dtype, jnp.integer):
    images = jnp.round(images)
  return images.astype(dtype)


# --- Existing ops -----------------------------------------------------------------------------

def random_pad_crop(key: jax.Array, batch: Batch, hparams, *, pad: int) -> Batch:
  """Zero-pads each image by ``pad`` pixels and crops back to size at a random offset."""
  del hparams
  images = _images(batch, "crop")
  if pad <= 0:
    return batch
  _, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * pad + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

  return {**batch, "image": jax.vmap(crop)(padded, offsets)}


def random_flip(key: jax.Array, batch: Batch, hparams) -> Batch:
  """Mirrors each image left-right with probability 1/2."""
  del hparams
  images = _images(batch, "flip")
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return {**batch, "image": jnp.where(flip, images[:, :, ::-1, :], images)}


# --- Deterministic cores on one float image (H, W, C) -----------------------------------------

def blend(image: jax.Array, other: jax.Array, amount) -> jax.Array:
  """``image`` moved ``amount`` of the way towards ``other`` (away from it when negative).

  Written as ``image + amount * (other - image)`` so that amount 0 returns ``image`` bit for bit.
  """
  return image + amount * (other - image)


def enhance(image: jax.Array, degenerate: jax.Array, factor) -> jax.Array:
  """PIL's ImageEnhance: factor 1 is the image, 0 the degenerate image, 2 twice as far from it."""
  return jnp.clip(blend(image, degenerate, 1.0 - factor), 0.0, 255.0)


def grey(image: jax.Array) -> jax.Array:
  """Luminance (H, W, 1), with PIL's "L" weights for RGB."""
  if image.shape[-1] != 3:
    return image.mean(axis=-1, keepdims=True)
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  return (0.299 * r + 0.587 * g + 0.114 * b)[..., None]


def smooth(image: jax.Array) -> jax.Array:
  """PIL's SMOOTH filter (3x3, centre weight 5, others 1, over 13), border pixels unchanged.

  This is the degenerate image of PIL's sharpness enhancement: blending away from it sharpens.
  """
  height, width, _ = image.shape
  if height < 3 or width < 3:
    return image
  padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
  neighbourhood = sum(padded[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3))
  blurred = (neighbourhood + 4.0 * image) / 13.0
  interior = jnp.zeros((height, width, 1), bool).at[1:-1, 1:-1].set(True)
  return jnp.where(interior, blurred, image)


def bilinear_sample(image: jax.Array, ys: jax.Array, xs: jax.Array, fill) -> jax.Array:
  """``image`` read at fractional points (ys, xs), each (H', W'); points outside read ``fill``.

  At integer points the three other corners get weight exactly 0, so sampling the pixel grid
  returns the pixels bit for bit.
  """
  height, width, _ = image.shape
  y0, x0 = jnp.floor(ys), jnp.floor(xs)
  fy, fx = ys - y0, xs - x0
  out = jnp.zeros(ys.shape + image.shape[-1:], image.dtype)
  for dy, wy in ((0, 1.0 - fy), (1, fy)):
    for dx, wx in ((0, 1.0 - fx), (1, fx)):
      y, x = y0 + dy, x0 + dx
      inside = (y >= 0) & (y <= height - 1) & (x >= 0) & (x <= width - 1)
      value = image[jnp.clip(y, 0, height - 1).astype(jnp.int32),
                    jnp.clip(x, 0, width - 1).astype(jnp.int32)]
      out = out + (wy * wx)[..., None] * jnp.where(inside[..., None], value, fill)
  return out


def affine_warp(image: jax.Array, matrix, offset=(0.0, 0.0), fill=FILL) -> jax.Array:
  """Output pixel p shows the input at ``matrix @ (p - c) + c + offset``, c the centre.

  Points are (row, column). The sums are written out (no matmul) so the identity warp samples
  exactly the pixel grid, whatever the backend's matmul precision.
  """
  height, width, _ = image.shape
  cy, cx = (height - 1) / 2, (width - 1) / 2
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=image.dtype) - cy,
                            jnp.arange(width, dtype=image.dtype) - cx, indexing="ij")
  ys = matrix[0][0] * rows + matrix[0][1] * cols + cy + offset[0]
  xs = matrix[1][0] * rows + matrix[1][1] * cols + cx + offset[1]
  return bilinear_sample(image, ys, xs, fill)


def rotate(image: jax.Array, degrees, fill=FILL) -> jax.Array:
  """Rotates about the centre, counter-clockwise as displayed (90 degrees is ``jnp.rot90``)."""
  radians = jnp.deg2rad(degrees)
  cos, sin = jnp.cos(radians), jnp.sin(radians)
  return affine_warp(image, ((cos, sin), (-sin, cos)), fill=fill)


def translate(image: jax.Array, dy, dx, fill=FILL) -> jax.Array:
  """Moves the content ``dy`` pixels down and ``dx`` right."""
  return affine_warp(image, ((1.0, 0.0), (0.0, 1.0)), (-dy, -dx), fill=fill)


def shear(image: jax.Array, along_y, along_x, fill=FILL) -> jax.Array:
  """Shears along one axis (the other amount is 0): each row moves ``along_x`` pixels right per
  pixel it lies below the centre; each column ``along_y`` down per pixel right of the centre."""
  return affine_warp(image, ((1.0, -along_y), (-along_x, 1.0)), fill=fill)


def posterize(image: jax.Array, bits) -> jax.Array:
  """Keeps the top ``bits`` of each 8-bit value (PIL's posterize); 8 bits is the identity."""
  step = 2.0 ** (8 - bits)
  return jnp.where(bits >= 8, image, jnp.floor(image / step) * step)


def solarize(image: jax.Array, threshold) -> jax.Array:
  """Inverts values at or above ``threshold`` (PIL's solarize); 256 is the identity."""
  return jnp.where(image >= threshold, 255.0 - image, image)


def autocontrast(image: jax.Array) -> jax.Array:
  """Stretches each channel to span [0, 255]; a constant channel is left alone."""
  lo = image.min(axis=(0, 1), keepdims=True)
  span = image.max(axis=(0, 1), keepdims=True) - lo
  return jnp.where(span > 0, (image - lo) * (255.0 / jnp.where(span > 0, span, 1.0)), image)


def _equalize_channel(channel: jax.Array) -> jax.Array:
  levels = jnp.clip(jnp.round(channel), 0, 255).astype(jnp.int32)
  histogram = jnp.bincount(levels.ravel(), length=256)
  # As PIL: the pixels below the top used level are spread evenly over 255 steps, and a channel
  # with one level (step 0) is left alone. PIL floors the step to an integer, which leaves
  # images of under 256 pixels (8x8 digits, 12x12 crops) untouched; a fractional step
  # equalises those too.
  top_count = histogram[jnp.max(jnp.where(histogram > 0, jnp.arange(256), 0))]
  step = (levels.size - top_count) / 255.0
  below = jnp.cumsum(histogram) - histogram
  lut = jnp.minimum(jnp.floor((below + step / 2) / jnp.where(step > 0, step, 1.0)), 255.0)
  return jnp.where(step > 0, lut[levels].astype(channel.dtype), channel)


def equalize(image: jax.Array) -> jax.Array:
  """Histogram equalisation of each channel (PIL's equalize)."""
  return jax.vmap(_equalize_channel, in_axes=-1, out_axes=-1)(image)


def resized_crop(image: jax.Array, top, left, height, width) -> jax.Array:
  """The box [top, top + height) x [left, left + width) (fractional) resized to the image's size.

  Bilinear with pixel centres aligned (the half-pixel convention); sample points are clamped to
  the image, so the edges replicate. The whole image is returned bit for bit.
  """
  out_height, out_width, _ = image.shape
  ys = top + (jnp.arange(out_height, dtype=image.dtype) + 0.5) * (height / out_height) - 0.5
  xs = left + (jnp.arange(out_width, dtype=image.dtype) + 0.5) * (width / out_width) - 0.5
  ys, xs = jnp.meshgrid(jnp.clip(ys, 0, out_height - 1), jnp.clip(xs, 0, out_width - 1),
                        indexing="ij")
  return bilinear_sample(image, ys, xs, fill=0.0)


def box_mask(key: jax.Array, height: int, width: int, box_height, box_width) -> jax.Array:
  """A (height, width) mask of a box centred at a uniform random pixel, clipped at the border
  (so it can be smaller than asked); a box of side 0 is empty."""
  row_key, col_key = jax.random.split(key)
  top = jax.random.randint(row_key, (), 0, height) - box_height // 2
  left = jax.random.randint(col_key, (), 0, width) - box_width // 2
  rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
  return (rows >= top) & (rows < top + box_height) & (cols >= left) & (cols < left + box_width)


# --- Per-image kernels: draw the core's parameters; strength 0 is the identity ----------------

def _sign(key: jax.Array) -> jax.Array:
  return jnp.where(jax.random.bernoulli(key), 1.0, -1.0)


def _one_axis(key: jax.Array, amount) -> tuple[jax.Array, jax.Array]:
  """``amount`` with a random sign along one random axis: (along rows, along columns)."""
  sign_key, axis_key = jax.random.split(key)
  amount = _sign(sign_key) * amount
  along_rows = jax.random.bernoulli(axis_key)
  return jnp.where(along_rows, amount, 0.0), jnp.where(along_rows, 0.0, amount)


def _enhance_kernel(degenerate: Callable[[jax.Array], jax.Array]) -> ImageKernel:
  def kernel(key, image, strength):
    return enhance(image, degenerate(image), 1.0 + _sign(key) * MAX_ENHANCE * strength)
  return kernel


def _brightness_degenerate(image):
  return jnp.zeros_like(image)


def _contrast_degenerate(image):
  return jnp.full_like(image, grey(image).mean())


def _rotate_kernel(key, image, strength):
  return rotate(image, _sign(key) * MAX_ROTATE * strength)


def _translate_kernel(key, image, strength):
  dy, dx = _one_axis(key, MAX_TRANSLATE * strength)
  return translate(image, dy * image.shape[0], dx * image.shape[1])


def _shear_kernel(key, image, strength):
  return shear(image, *_one_axis(key, MAX_SHEAR * strength))


def _cutout_kernel(key, image, strength):
  height, width, _ = image.shape
  side = jnp.round(MAX_CUTOUT * strength * min(height, width)).astype(jnp.int32)
  return jnp.where(box_mask(key, height, width, side, side)[..., None], FILL, image)


def _posterize_kernel(key, image, strength):
  del key
  return posterize(image, 8 - jnp.round(MAX_POSTERIZE * strength))


def _solarize_kernel(key, image, strength):
  del key
  return solarize(image, 256.0 * (1.0 - strength))


def _switched_kernel(core: Callable[[jax.Array], jax.Array]) -> ImageKernel:
  """For ops with no strength of their own (autocontrast, equalize): applied in full at any
  strength above 0, as RandAugment and TrivialAugment apply them, and not at all at 0."""
  def kernel(key, image, strength):
    del key
    return jnp.where(strength > 0, core(image), image)
  return kernel


def _identity_kernel(key, image, strength):
  del key, strength
  return image


# The ops RandAugment and TrivialAugment choose from (order fixes the switch index).
MAGNITUDE_KERNELS: dict[str, ImageKernel] = {
    "brightness": _enhance_kernel(_brightness_degenerate),
    "contrast": _enhance_kernel(_contrast_degenerate),
    "sharpness": _enhance_kernel(smooth),
    "rotate": _rotate_kernel,
    "translate": _translate_kernel,
    "shear": _shear_kernel,
    "cutout": _cutout_kernel,
    "posterize": _posterize_kernel,
    "solarize": _solarize_kernel,
    "autocontrast": _switched_kernel(autocontrast),
    "equalize": _switched_kernel(equalize),
}
# RandAugment's and TrivialAugment's draws: the ops above and the identity (both papers list
# it, so an example may come through unchanged).
RANDOM_OP_KERNELS: dict[str, ImageKernel] = {"identity": _identity_kernel, **MAGNITUDE_KERNELS}


def _random_ops_kernel(num_ops: int) -> ImageKernel:
  """``num_ops`` ops, each chosen uniformly (with replacement) from RANDOM_OP_KERNELS."""
  kernels = list(RANDOM_OP_KERNELS.values())

  def kernel(key, image, strength):
    for op_key in jax.random.split(key, num_ops):
      choice_key, kernel_key = jax.random.split(op_key)
      choice = jax.random.randint(choice_key, (), 0, len(kernels))
      # Under the vmap over examples this becomes a select: every op runs, each example keeps
      # its own choice. Cheap at these image sizes, and shapes stay static.
      image = jax.lax.switch(choice, kernels, kernel_key, image, strength)
    return image

  return kernel


def _random_resized_crop_kernel(key, image, min_area):
  height, width, _ = image.shape
  area_key, ratio_key, row_key, col_key = jax.random.split(key, 4)
  area = jax.random.uniform(area_key, minval=min_area, maxval=1.0) * height * width
  ratio = jnp.exp(jax.random.uniform(ratio_key, minval=math.log(3 / 4), maxval=math.log(4 / 3)))
  # width / height = ratio. A box too tall or wide is clipped to the image (torchvision redraws
  # instead; a loop would not keep shapes static), which keeps a little less area than drawn.
  box_height = jnp.minimum(jnp.sqrt(area / ratio), height)
  box_width = jnp.minimum(jnp.sqrt(area * ratio), width)
  top = jax.random.uniform(row_key) * (height - box_height)
  left = jax.random.uniform(col_key) * (width - box_width)
  return resized_crop(image, top, left, box_height, box_width)


# --- Batch ops ---------------------------------------------------------------------------------

def _per_example(kernel: ImageKernel, key: jax.Array, batch: Batch, strength: jax.Array,
                 op: str) -> Batch:
  """Runs ``kernel`` on each image with its own key and ``strength`` (B,)."""
  images = _images(batch, op)
  keys = jax.random.split(key, images.shape[0])
  out = jax.vmap(kernel)(keys, _to_float(images), strength)
  return {**batch, "image": _from_float(out, images.dtype)}


def _magnitude_op(name: str) -> AugmentOp:
  kernel = MAGNITUDE_KERNELS[name]

  def op(key, batch, hparams):
    images = _images(batch, name)
    strength = jnp.full(images.shape[0], _hparam(hparams, "aug_magnitude", name))
    return _per_example(kernel, key, batch, strength, name)

  return op


def randaugment(key: jax.Array, batch: Batch, hparams, *, num_ops: int) -> Batch:
  """RandAugment: per example, ``num_ops`` random ops, each at ``aug_magnitude``."""
  images = _images(batch, "randaugment")
  strength = jnp.full(images.shape[0], _hparam(hparams, "aug_magnitude", "randaugment"))
  return _per_example(_random_ops_kernel(num_ops), key, batch, strength, "randaugment")


def trivialaugment(key: jax.Array, batch: Batch, hparams) -> Batch:
  """TrivialAugment: per example, one random op at a magnitude uniform in [0, aug_magnitude]."""
  images = _images(batch, "trivialaugment")
  strength_key, op_key = jax.random.split(key)
  strength = (jax.random.uniform(strength_key, images.shape[:1])
              * _hparam(hparams, "aug_magnitude", "trivialaugment"))
  return _per_example(_random_ops_kernel(1), op_key, batch, strength, "trivialaugment")


def random_resized_crop(key: jax.Array, batch: Batch, hparams) -> Batch:
  """Per example: a box of area fraction uniform in [aug_crop_scale, 1] and aspect ratio
  log-uniform in [3/4, 4/3], resized back to the image's size."""
  images = _images(batch, "resized_crop")
  min_area = jnp.clip(_hparam(hparams, "aug_crop_scale", "resized_crop"), 1e-3, 1.0)
  return _per_example(_random_resized_crop_kernel, key, batch,
                      jnp.full(images.shape[0], min_area), "resized_crop")


def _beta_or_one(key: jax.Array, alpha: jax.Array, shape) -> jax.Array:
  """Beta(alpha, alpha) draws; alpha 0 means no mixing (lambda 1), as Beta(0, 0) is undefined."""
  on = alpha > 0
  safe_alpha = jnp.where(on, alpha, 1.0)
  return jnp.where(on, jax.random.beta(key, safe_alpha, safe_alpha, shape), 1.0)


def _write_mix(batch: Batch, images: jax.Array, partner: jax.Array, lam: jax.Array,
               num_classes: int) -> Batch:
  """The mixed images, and targets weighted ``lam`` own and ``1 - lam`` partner's.

  The targets mixed are the batch's soft ones when an earlier op wrote them (cutmix then mixup),
  otherwise one-hot labels. A batch with neither (distillation's unlabelled pool) mixes inputs
  only. ``label`` keeps each example's own hard label.
  """
  out = {**batch, "image": _from_float(images, batch["image"].dtype)}
  if "target" in batch:
    targets = batch["target"].astype(jnp.float32)
  elif "label" in batch:
    targets = jax.nn.one_hot(batch["label"], num_classes, dtype=jnp.float32)
  else:
    return out
  out["target"] = blend(targets, targets[partner], (1.0 - lam)[:, None])
  return out


def mixup(key: jax.Array, batch: Batch, hparams, *, num_classes: int) -> Batch:
  """Mixup with a random partner from the batch and a lambda drawn per example, so one batch
  sees a range of mixing strengths."""
  images = _to_float(_images(batch, "mixup"))
  partner_key, lam_key = jax.random.split(key)
  partner = jax.random.permutation(partner_key, images.shape[0])
  lam = _beta_or_one(lam_key, _hparam(hparams, "aug_mixup", "mixup"), images.shape[:1])
  mixed = blend(images, images[partner], (1.0 - lam)[:, None, None, None])
  return _write_mix(batch, mixed, partner, lam, num_classes)


def cutmix(key: jax.Array, batch: Batch, hparams, *, num_classes: int) -> Batch:
  """CutMix: a box of the partner's image pasted in, per example. The box covers about
  1 - lambda of the image; lambda is then set to the area actually kept, after rounding the
  box to pixels and clipping it at the border."""
  images = _to_float(_images(batch, "cutmix"))
  batch_size, height, width, _ = images.shape
  partner_key, lam_key, box_key = jax.random.split(key, 3)
  partner = jax.random.permutation(partner_key, batch_size)
  lam = _beta_or_one(lam_key, _hparam(hparams, "aug_cutmix", "cutmix"), (batch_size,))
  side = jnp.sqrt(1.0 - lam)
  box_heights = jnp.round(side * height).astype(jnp.int32)
  box_widths = jnp.round(side * width).astype(jnp.int32)

  def one_box(mask_key, box_height, box_width):
    return box_mask(mask_key, height, width, box_height, box_width)

  masks = jax.vmap(one_box)(jax.random.split(box_key, batch_size), box_heights, box_widths)
  mixed = jnp.where(masks[..., None], images[partner], images)
  kept = 1.0 - masks.mean(axis=(1, 2), dtype=jnp.float32)
  return _write_mix(batch, mixed, partner, kept, num_classes)


def _mixing_builder(name: str, op) -> Callable[[AugmentSettings], AugmentOp]:
  def build(settings: AugmentSettings) -> AugmentOp:
    if settings.num_classes < 1:
      raise ValueError(f"augmentation {name!r} writes soft targets over the classes and needs "
                       f"AugmentSettings.num_classes >= 1; got {settings.num_classes}")
    return functools.partial(op, num_classes=settings.num_classes)
  return build


# name -> builder from the static settings to the op.
AUGMENTATIONS: dict[str, Callable[[AugmentSettings], AugmentOp]] = {
    "crop": lambda s: (lambda key, batch, hp: random_pad_crop(key, batch, hp, pad=s.crop_pad)),
    "flip": lambda s: random_flip,
    "resized_crop": lambda s: random_resized_crop,
    **{name: (lambda s, name=name: _magnitude_op(name)) for name in MAGNITUDE_KERNELS},
    "randaugment": lambda s: functools.partial(randaugment, num_ops=s.num_ops),
    "trivialaugment": lambda s: trivialaugment,
    "mixup": _mixing_builder("mixup", mixup),
    "cutmix": _mixing_builder("cutmix", cutmix),
    # The token-id ops: one registry, so a config names either kind and one augment() runs it.
    **TEXT_AUGMENTATIONS,
}


# config.augment key -> the ops that read it (a strength set for no op that reads it would
# silently do nothing: train/plan.py refuses it), with the values it may take.
STRENGTH_READERS: dict[str, tuple[str, ...]] = {
    "magnitude": (*MAGNITUDE_KERNELS, "randaugment", "trivialaugment"),
    "num_ops": ("randaugment",),
    "crop_scale": ("resized_crop",),
    "mixup": ("mixup",), "cutmix": ("cutmix",),
    "delete": ("token_delete",), "swap": ("token_swap",), "insert": ("token_insert",),
    "mask": ("token_mask",),
}
STRENGTH_RANGES: dict[str, tuple[float, float]] = {
    "magnitude": (0.0, 1.0), "crop_scale": (1e-3, 1.0), "mixup": (0.0, float("inf")),
    "cutmix": (0.0, float("inf")), "delete": (0.0, 1.0), "swap": (0.0, 1.0),
    "insert": (0.0, 1.0), "mask": (0.0, 1.0),
}
# Ops that mix examples' labels: never applied to unlabelled batches (distillation's pool,
# which has its own input mixup).
LABEL_MIXING = ("mixup", "cutmix")


def check_names(names: Sequence[str]) -> None:
  unknown = [n for n in names if n not in AUGMENTATIONS]
  if unknown:
    raise ValueError(f"unknown augmentation(s) {unknown}; known: {sorted(AUGMENTATIONS)}")


def augment(key: jax.Array, batch: Batch, hparams: Mapping[str, jax.Array],
            settings: AugmentSettings) -> Batch:
  """Applies the named ops in order, each with its own key."""
  for name, op_key in zip(settings.names, jax.random.split(key, max(len(settings.names), 1))):
    batch = AUGMENTATIONS[name](settings)(op_key, batch, hparams)
  return batch
