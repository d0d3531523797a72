"""Augmentation sets on k-shot Fashion-MNIST from ImageNet EfficientNet-Lite0.

The image task of configs/image_efficientnet.py (all 10 classes, 32x32 RGB inside the step, 100
SGD steps of batch 32 at learning rate 0.01, the rate results/image_transfer.md selected for
fine-tuning in every cell), k in {1, 5, 10} examples per class, 5 seeds, 10 validation images
per class, the 10,000-image test split. Every augmentation runs inside the jitted step on the
raw 28x28 images (lowres_jax/data/augment.py), per example:

- ``none``: no augmentation;
- ``crop_flip``: 2-pixel pad-and-crop and horizontal flip (the image configs' default);
- ``resized_crop``: random resized crop (area 0.35-1, aspect 3/4-4/3) and flip;
- ``randaugment``: flip, then 2 ops per example, each drawn from identity and the 11 ops
  (brightness, contrast, sharpness, rotate, translate, shear, cutout, posterize, solarize,
  autocontrast, equalize) at magnitude 0.3 (RandAugment's N = 2, M = 9 of 30);
- ``trivialaugment``: flip, then one op per example from the same 12 at a magnitude uniform in
  [0, 1];
- ``mixup``: crop and flip, then mixup with alpha 0.2 (soft targets);
- ``cutmix``: crop and flip, then CutMix with alpha 1.0 (soft targets).

One setting per set (no tuning: the 90-minute budget holds one run per set, k and seed).

  python -m lowres_jax.sweep --config=configs/ablations/augment_image.py \\
      --workdir=workdirs/augment_image --results=results/augment_image
"""

import os

from lowres_jax.config import load_module

_HERE = os.path.dirname(os.path.abspath(__file__))
image_config = load_module(os.path.join(_HERE, "..", "image_efficientnet.py"))

TITLE = ("Augmentation: ImageNet EfficientNet-Lite0 on k-shot Fashion-MNIST "
         "(test accuracy, 10 classes)")
NOTES = """
- **Policy augmentation has the best means**: against no augmentation,
  TrivialAugment adds +9.2 ± 6.6* points at 1 shot (47.4 vs 38.2), +7.4 ± 3.3* at 5 and
  +2.0 ± 2.5 (n.s.) at 10; RandAugment (N = 2, M = 0.3) +8.5 ± 9.2 (n.s.), +8.4 ± 2.2* and
  +2.3 ± 2.8 (n.s.): TrivialAugment is significant at 1 and 5 shots, RandAugment at 5 only,
  neither at 10. The two hold the best two means of every column, and neither is
  significantly ahead of the other (+0.8 ± 4.4, +1.0 ± 3.8, +0.3 ± 2.4, all n.s.).
- **Crop and flip** (the image configs' default): +4.0 ± 6.8 (n.s.) at 1 shot, +3.7 ± 3.4*
  at 5, +0.4 ± 3.1 (n.s.) at 10.
- **Label-mixing** does not help significantly in any column: mixup +5.0 / +1.6 / -1.3,
  CutMix +3.3 / -0.1 at 1 / 5 shots (all n.s.); CutMix hurts at 10 shots (-6.9 ± 5.0*).
  Only 100-step schedules are measured here.
- **Random resized crop** (area 0.35-1) on 28x28 clothes costs -2.8 ± 2.0* at 10 shots and
  is not significantly different from none at 1 and 5.
- Caveats: one setting per set (no tuning), 100 steps, one ImageNet checkpoint for every seed;
  21 paired tests, none corrected for multiple comparisons.
- **Time**: 105 runs and 22 compilations in 4,753 s of wall time (sweep.json), on 2 cores
  shared with other work for part of it.
"""
BASELINE = "none"
TUNED = ("optim.lr",)
NAME_KEYS = ("method", "data.shots", "seed")
SHOTS = (1, 5, 10)
SEEDS = range(5)

SETS = {
    "none": {"train.augment": ()},
    "crop_flip": {"train.augment": ("crop", "flip")},
    "resized_crop": {"train.augment": ("resized_crop", "flip")},
    "randaugment": {"train.augment": ("flip", "randaugment"), "augment.magnitude": 0.3},
    "trivialaugment": {"train.augment": ("flip", "trivialaugment"), "augment.magnitude": 1.0},
    "mixup": {"train.augment": ("crop", "flip", "mixup")},
    "cutmix": {"train.augment": ("crop", "flip", "cutmix")},
}


def get_config():
  config = image_config.get_config("shots=10")
  config.keep_checkpoints = 0  # The table is what is kept.
  return config


def get_sweep():
  base = get_config()
  reset = {"augment.magnitude": base.augment.magnitude}
  return [{**reset, "method": name, **overrides, "data.shots": shots, "seed": seed}
          for name, overrides in SETS.items() for shots in SHOTS for seed in SEEDS]
