"""k-shot image classification from a pretrained ViT checkpoint (Hugging Face or big_vision).

The checkpoint is ``config.init.path``: a local Hugging Face directory (``config.json`` +
``model.safetensors``, ``ViTModel`` or ``ViTForImageClassification`` names), a big_vision /
vision_transformer ``.npz``, or ``hf:ORG/NAME`` (downloaded when online, read from the HF
cache when offline). The ViT's size comes from ``variant`` and must be the checkpoint's; its
position embedding is resampled when ``image_size`` differs from the checkpoint's.

Arguments: ``variant=B/16`` (Ti|S|B|L / 16|32), ``image_size=224``, ``hf=1`` (HF checkpoints:
LayerNorm eps 1e-12 and the HF pooler dropped; 0 for big_vision .npz: eps 1e-6, tanh GELU),
plus those of image_efficientnet.py (``dataset``, ``shots``, ``probe``).

  python -m lowres_jax.main --config=configs/image_vit.py:variant=B/16 --workdir=workdirs/vit \
      --config.init.path=hf:google/vit-base-patch16-224-in21k
  python -m lowres_jax.main --config=configs/image_vit.py:variant=S/16,hf=0,image_size=64 \
      --workdir=workdirs/vit_s --config.init.path=/path/to/S_16-i21k-300ep.npz

On the 2-core CPU a ViT-B/16 at 224 pixels trains at about 2 images/s: use a GPU, or a small
variant and image size. No ViT weights ship offline, so this config has no committed results.
"""

import os

from lowres_jax.config import load_module

image_config = load_module(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "image_efficientnet.py"))


def get_config(arg: str | None = None):
  args = image_config.default_config.parse_arg(arg)
  variant = args.pop("variant", "B/16")
  image_size = int(args.pop("image_size", 224))
  hugging_face = bool(int(args.pop("hf", 1)))
  rest = ",".join(f"{k}={v}" for k, v in args.items())
  c = image_config.get_config(rest or None)
  c.model = dict(name="vit", variant=variant, image_size=image_size, pool="cls",
                 layer_norm_eps=1e-12 if hugging_face else 1e-6,
                 gelu_approximate=not hugging_face)
  c.init.path = ""  # Required: the checkpoint to start from (see the docstring).
  c.init.dont_load = "pooler" if hugging_face else "^pre_logits"
  c.optim.name, c.optim.lr, c.optim.weight_decay = "adamw", 1e-4, 0.05
  return c
