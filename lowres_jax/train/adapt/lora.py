"""LoRA (Hu et al. 2022): low-rank adapters on the Dense layers (models/lora.py).

The default targets match the attention projections of ViT and BERT and also their MLP's
output projection ('mlp_out'); 'attention/(query|key|value|out)$' keeps to attention. A LoRA
run that sets no ``config.freeze`` trains the adapters and the head only.
"""

from __future__ import annotations


from lowres_jax.models import lora as lora_lib
from lowres_jax.train.adapt.base import AdaptSpec, Method, Setting


def lora_spec(spec: AdaptSpec) -> lora_lib.LoraSpec:
  return lora_lib.LoraSpec(spec.setting("lora_rank"), spec.setting("lora_alpha"),
                           spec.setting("lora_targets"))


def _validate(spec: AdaptSpec) -> None:
  lora_spec(spec)  # LoraSpec checks its rank, alpha and targets.


METHOD = Method(
    "lora",
    static={"lora_rank": Setting(8, int), "lora_alpha": Setting(16.0, float),
            "lora_targets": Setting(r"(query|key|value|out)$", str)},
    default_freeze=lora_lib.LORA_FREEZE, validate=_validate,
    wrap_model=lambda spec, model: lora_lib.LoraModel(model, lora_spec(spec)),
    check_params=lambda spec, params: lora_lib.check_targets(params, lora_spec(spec)))
