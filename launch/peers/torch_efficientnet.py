"""PyTorch fine-tuning of ImageNet EfficientNet-Lite0 on exactly the Fashion-MNIST k-shot
examples of lowres_jax's ``image_transfer`` fine-tuning runs: an independent implementation
(the weights' own ``efficientnet-lite-pytorch`` model) with the same recipe.

  pip install -e '.[peers]'   # torch first, as the parity extra says
  python launch/peers/torch_efficientnet.py --sweep=workdirs/image_transfer --shots=10 \
      --seeds=0,1,2,3,4 [--out=results/peers.runs.csv]

The recipe, as ``configs/image_efficientnet.py`` sets it for lowres_jax: grey 28x28 images
repeated to RGB, resized bilinearly (antialiased) to 32x32, (pixel - 127) / 128; a fresh
zero-initialised 10-class head, dropout 0.2 before it, no stochastic depth, BatchNorm in
training mode with momentum 0.9 (torch 0.1) and epsilon 1e-3; 100 steps of batch 32 drawn
without replacement from the k-shot set each step; SGD momentum 0.9, peak lr from the run's
config, linear warm-up over the first 10% then cosine decay to 0, weight decay 1e-4 on
kernels only; zero-padded random crops (pad 2) and horizontal flips. Evaluation: the 10,000
test images with BatchNorm's running statistics. Rows are appended to ``--out``; finished
rows are skipped.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import peer_records  # noqa: E402  (launch/peers/, beside this script)

from lowres_jax.data import sources  # noqa: E402
from lowres_jax.weights import sources as weight_sources  # noqa: E402

PEER = "torch_efficientnet"
VARIANT = "same recipe"
IMAGE_SIZE, CROP_PAD = 32, 2


def build_model(num_classes: int):
  import efficientnet_lite_pytorch
  import torch
  model = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
      "efficientnet-lite0", weights_path=weight_sources.resolve("package:efficientnet_lite0"),
      image_size=IMAGE_SIZE, drop_connect_rate=0.0, dropout_rate=0.2,
      batch_norm_momentum=0.9)  # The package's convention: torch momentum = 1 - this.
  model._fc = torch.nn.Linear(model._fc.in_features, num_classes)
  torch.nn.init.zeros_(model._fc.weight)
  torch.nn.init.zeros_(model._fc.bias)
  return model


def prepare(images: np.ndarray):
  """uint8 NHWC grey to normalised NCHW RGB at IMAGE_SIZE."""
  import torch
  x = torch.from_numpy(np.array(images)).float().permute(0, 3, 1, 2)
  x = x.repeat(1, 3, 1, 1)
  x = torch.nn.functional.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                                      antialias=True, align_corners=False)
  return (x - 127.0) / 128.0


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Zero-pad by CROP_PAD, crop back at a random offset, flip half the images."""
  n, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (CROP_PAD, CROP_PAD), (CROP_PAD, CROP_PAD), (0, 0)))
  offsets = rng.integers(0, 2 * CROP_PAD + 1, (n, 2))
  out = np.stack([padded[i, y:y + h, x:x + w] for i, (y, x) in enumerate(offsets)])
  flip = rng.random(n) < 0.5
  out[flip] = out[flip][:, :, ::-1]
  return out


def learning_rate(step: int, peak: float, total: int) -> float:
  warmup = int(0.1 * total)
  if step < warmup:
    return peak * step / warmup
  return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def check_recipe(config: dict) -> None:
  """The run's config must be the recipe this script implements: a different one would make
  the comparison about recipes, not implementations."""
  found = (tuple(config["train"]["augment"]), config["train"]["crop_pad"],
           config["model"]["name"], config["model"]["image_size"], config["model"]["dropout"],
           config["model"]["bn_momentum"], config["optim"]["name"], config["optim"]["warmup"],
           config["train"]["loss"], config["train"]["sampler"], config["train"]["label_smoothing"],
           config["freeze"], config["adapt"]["methods"] if "methods" in config["adapt"] else ())
  expected = (("crop", "flip"), CROP_PAD, "efficientnet_lite", IMAGE_SIZE, 0.2, 0.9, "sgd", 0.1,
              "cross_entropy", "uniform", 0.0, "", ())
  if found[:-1] != expected[:-1] or tuple(found[-1]) != expected[-1]:
    raise SystemExit(f"the run's recipe {found} is not the one this peer implements {expected}")


def run_one(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
            config: dict, seed: int) -> tuple[float, float]:
  """(test accuracy, seconds) of one fine-tuning run."""
  import torch
  start = time.perf_counter()
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  num_classes = len(config["data"]["classes"])
  model = build_model(num_classes)
  decay = [p for n, p in model.named_parameters() if p.ndim > 1]
  no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
  optim = config["optim"]
  # Coupled decay as lowres_jax's optax chain adds it (to the gradient, before momentum).
  optimizer = torch.optim.SGD([{"params": decay, "weight_decay": optim["weight_decay"]},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=0.0, momentum=optim["momentum"])
  steps = int(config["train"]["duration"].split()[0])
  batch = config["train"]["batch_size"]
  images, labels = train
  model.train()
  for step in range(steps):
    for group in optimizer.param_groups:
      group["lr"] = learning_rate(step, optim["lr"], steps)
    index = rng.choice(len(labels), batch, replace=batch > len(labels))
    x = prepare(augment(images[index], rng))
    loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(labels[index]).long())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
  model.eval()
  correct = 0
  with torch.no_grad():
    for i in range(0, len(test[1]), 500):
      logits = model(prepare(test[0][i:i + 500]))
      correct += int((logits.argmax(-1).numpy() == test[1][i:i + 500]).sum())
  return correct / len(test[1]), time.perf_counter() - start


def main() -> int:
  parser = peer_records.parser(__doc__, "image_transfer", shots=10)
  args = parser.parse_args()
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  versions = f"torch {torch.__version__}, efficientnet-lite-pytorch 0.1.0"
  pool = sources.load_split("fashion_mnist", "train", args.data_dir)
  test_split = sources.load_split("fashion_mnist", "test", args.data_dir)
  test = (test_split.arrays["image"], test_split.arrays["label"])
  by_id = dict(zip(pool.arrays["id"].tolist(), range(len(pool.arrays["id"]))))
  for seed in (int(s) for s in args.seeds.split(",")):
    if peer_records.done(args.out, PEER, VARIANT, args.shots, seed):
      continue
    run = peer_records.find_run(
        args.sweep, f"name=fashion_mnist,method=finetune,shots={args.shots},seed={seed},")
    split = peer_records.read_split(run)
    with open(os.path.join(run, "config.json")) as f:
      config = json.load(f)
    check_recipe(config)
    rows = [by_id[i] for i in split["train_ids"]]
    classes = list(split["classes"])
    labels = np.asarray([classes.index(int(c)) for c in pool.arrays["label"][rows]])
    accuracy, seconds = run_one((pool.arrays["image"][rows], labels), test, config, seed)
    peer_records.record(args.out, PEER, VARIANT, "fashion_mnist", args.shots, seed, run, split,
                        len(test[1]), accuracy, seconds, versions)
  return 0


if __name__ == "__main__":
  sys.exit(main())
