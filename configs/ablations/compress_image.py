"""Compression pipeline: ImageNet EfficientNet-Lite0 fine-tuned on 10-shot Fashion-MNIST,
distilled into a small CNN, pruned and quantized to int8 (5 seeds).

  python launch/compress.py --config=configs/ablations/compress_image.py \\
      --workdir=workdirs/compress_image --out=results/compress_image.md

Stages (lowres_jax/pipeline.py), each starting from the one before:

- finetune: configs/image_efficientnet.py at 10 shots (100 SGD steps, 32x32 RGB inside the
  model, the teacher);
- distill: configs/default.py's CNN (width 32, depth 2, hidden 128; 467k parameters, 0.14 of
  the teacher's 3.4M) on the 28x28 grey images, from scratch: cross-entropy on the 100
  labelled images plus KL to the frozen teacher on the same augmented views and on 64
  unlabelled training images per step (10,000 in the pool, mixup 0.5: function matching);
- prune: the student's kernels but the head at 50% global magnitude sparsity, one-shot, then
  200 steps with the masks fixed, still distilling from the teacher;
- quantize: w8a8 with static activation scales calibrated on 4 training batches (qwix).
"""

import os

from lowres_jax.compress.table import PIPELINE_TARGETS
from lowres_jax.config import load_module

_HERE = os.path.dirname(os.path.abspath(__file__))
image_config = load_module(os.path.join(_HERE, "..", "image_efficientnet.py"))

TITLE = ("Compression: EfficientNet-Lite0 teacher (10-shot Fashion-MNIST) -> CNN student -> "
         "50% pruned -> int8")
NOTES = """
- **The student beats its teacher by 6.4 ± 0.9 points** (72.3 vs 65.9; 7 times fewer
  parameters). The teacher learned from 100 labelled images in 100 steps; the student trains
  600 steps on those labels plus the teacher's outputs on 10,000 unlabelled training images,
  mixed up. This table has no student trained on the labels alone with the same steps and
  augmentation, so it does not show how much of the gain the teacher's outputs bring.
  The teacher's 65.9 matches results/image_transfer.md's fine-tuning at 10 shots (66.0 ± 3.5).
- **50% unstructured sparsity costs nothing measurable** (-0.3 ± 0.7, n.s.): the pruned
  student trains 200 steps with the masks fixed while still distilling. Unstructured zeros in
  dense kernels save disk (1,697 -> 1,036 KiB with orbax) and no time (1.00x).
- **int8 keeps accuracy (+0.0 ± 0.2) and shrinks the model 3.4x on disk, but runs 2.4x
  slower at batch 256** (124 vs 51 ms). The lowered program does run int8 x int8 -> int32
  convolutions and matmuls (tests/test_quantize.py checks the HLO). On this CPU, XLA's int8
  convolution plus quantizing each layer's activations and rescaling its output costs more
  than the float convolution it replaces. The 2.5x target is missed: 0.41x is 6.1 times short.
- Latencies were measured after the runs, with nothing else running (every stage's
  ``stage.json`` deleted and the same command rerun, which re-times finished stages only).
"""
SEEDS = range(5)
STUDENT = dict(name="cnn", width=32, depth=2, hidden=128)
POOL = {"pool_size": 10000, "pool_batch": 64, "mixup": 0.5}
TARGETS = PIPELINE_TARGETS


def get_config():
  config = image_config.get_config("shots=10")
  config.pipeline = ("finetune", "distill", "prune", "quantize")
  config.stages = {
      "distill": {"model": STUDENT, "train": {"duration": "600 steps"},
                  "optim": {"lr": 0.02}, "distill": POOL},
      "prune": {"train": {"duration": "200 steps"}, "optim": {"lr": 0.01},
                "prune": {"sparsity": 0.5},
                "distill": {"teachers": ("finetune",), **POOL}},
      "quantize": {"quantize": {"mode": "w8a8_static"}},
  }
  return config
