"""Compression pipeline: all-MiniLM-L6-v2 fine-tuned on 8-shot fortunes, distilled into a
3-layer encoder initialised from the teacher's layers, pruned and quantized to int8 (5 seeds).

  python launch/compress.py --config=configs/ablations/compress_text.py \\
      --workdir=workdirs/compress_text --out=results/compress_text.md

Stages (lowres_jax/pipeline.py), each starting from the one before:

- finetune: configs/text_fortunes.py's fine-tuning at 8 texts per category (50 AdamW steps
  from the class-mean head; the teacher);
- distill: the same encoder with 3 layers, its layers 0, 1, 2 initialised from the teacher's
  layers 0, 2, 4 and its embeddings and head from the teacher's (``init.rename``), trained
  with cross-entropy on the 64 labelled texts plus KL to the frozen teacher on 32 unlabelled
  training texts per step (the whole training split of the 8 categories is the pool);
- prune: the student's Dense kernels but the head's at 50% global magnitude sparsity,
  one-shot, then 100 steps with the masks fixed, still distilling from the teacher;
- quantize: the Dense layers (attention projections, MLP, head) w8a8 with static activation
  scales calibrated on 4 training batches (qwix); embeddings, LayerNorm and the attention's
  activation-by-activation products stay float.

The student keeps the teacher's 30,522-token embedding table (11.7M of the teacher's 22.7M
parameters), so 3 of 6 layers is 0.77 of the teacher's size, not the issue's 1/4: a smaller
student needs a smaller vocabulary or width, which layer initialisation cannot give.
"""

import os

from lowres_jax.compress.table import PIPELINE_TARGETS
from lowres_jax.config import load_module

_HERE = os.path.dirname(os.path.abspath(__file__))
text_config = load_module(os.path.join(_HERE, "..", "text_fortunes.py"))

TITLE = ("Compression: all-MiniLM-L6-v2 teacher (8-shot fortunes) -> 3-layer student -> 50% "
         "pruned -> int8")
NOTES = """
- **Every accuracy step is within noise**: teacher 51.4 ± 4.6 -> 3-layer student 51.9
  (+0.6 ± 0.9, n.s.) -> 50% pruned 52.7 (+0.8 ± 1.0, n.s.) -> int8 52.5 (-0.2 ± 0.7, n.s.).
  The student, initialised from the teacher's layers 0, 2, 4 and distilled on the whole
  training split as an unlabelled pool, keeps the teacher's accuracy with half its layers.
- **Size target missed as designed**: the student has 0.764 of the teacher's parameters, not
  1/4. The 30,522 x 384 embedding table (11.7M) is shared by both; only the encoder layers
  shrink.
- **Speed**: at batch 256 the student runs 1.89x faster than the teacher (684 vs 1,290 ms;
  half the layers), unstructured sparsity changes nothing (0.98x), and int8 on the Dense
  layers runs 1.61x faster than the float pruned student (430 vs 694 ms): unlike the CNN
  (results/compress_image.md, 0.41x), MiniLM's time is in matmuls, where XLA:CPU's int8 dot
  pays. The 2.5x int8 target is missed (1.61x); teacher to int8 student is 3.0x.
- Disk: 81.3 -> 46.2 MB; int8 saves only 15% over the pruned student because the embedding
  table and LayerNorms stay float32.
- Latencies were re-timed after the runs with nothing else running (every stage.json deleted
  and the same command rerun, which re-times finished stages only); the pipelines themselves
  ran beside other jobs (~7 min per seed alone).
"""
SEEDS = range(5)
# Student layer i from teacher layer 2i; the odd teacher layers are dropped.
LAYERS_FROM_TEACHER = ((r"/layer_0/", "/layer_0/"), (r"/layer_2/", "/layer_1/"),
                       (r"/layer_4/", "/layer_2/"), (r"/layer_[135]/", ""))
POOL = {"pool_size": 5000, "pool_batch": 32}
DENSE = r".*(query|key|value|out|mlp_in|mlp_out|head)"
TARGETS = PIPELINE_TARGETS


def get_config():
  config = text_config.get_config("shots=8,method=finetune")
  config.optim.lr = 3e-5  # The teacher's rate when results/compress_text.md was computed.
  config.pipeline = ("finetune", "distill", "prune", "quantize")
  config.stages = {
      "distill": {"model": {"depth": 3},
                  "init": {"kind": "workdir", "rename": LAYERS_FROM_TEACHER, "reinit": "",
                           "dont_load": ""},
                  "head_init": "zero", "train": {"duration": "200 steps"},
                  "optim": {"lr": 1e-4}, "distill": POOL},
      "prune": {"train": {"duration": "100 steps"}, "head_init": "zero",
                "prune": {"sparsity": 0.5,
                          "targets": r"^(?!head/).*(query|key|value|out|mlp_in|mlp_out)/kernel$"},
                "distill": {"teachers": ("finetune",), **POOL}},
      "quantize": {"head_init": "zero", "quantize": {"mode": "w8a8_static", "targets": DENSE}},
  }
  return config
