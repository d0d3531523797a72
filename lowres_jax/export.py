"""A finished run as a model that runs without lowres_jax: ``python -m lowres_jax.export``.

  python -m lowres_jax.export --workdir=workdirs/my_photos --out=exported/my_photos

``--format=torch`` writes an EfficientNet-Lite run as a safetensors state dict in the names of
PyPI ``efficientnet-lite-pytorch`` (``export_torch``); ``--format=hf`` a BERT-encoder run as a
sentence-transformers directory plus its classification head (``export_hf``).
``--format=stablehlo`` (the default) writes, into ``--out``:

- ``model.jax_export``: ``jax.export`` of the whole inference function, from the raw inputs
  the training data were stored as (uint8 NHWC images of the run's stored size; or int32
  ``input_ids``/``attention_mask``/``token_type_ids`` of the run's ``max_length``) to class
  probabilities, for any batch size (a symbolic batch dimension). The model's own input
  preprocessing (resize, grey to RGB, normalisation) is inside; the weights are constants of
  the serialized program, so the file is the whole model.
- ``labels.json``: the class names in output order, the input names, dtypes and shapes.
- ``tokenizer.json`` for a text model: the run's tokenizer, to make the token ids with the
  ``tokenizers`` package.
- ``MODEL_CARD.md``: where the model came from, its test metrics, the command that made it and
  its size.

Loading needs only ``jax`` and ``numpy`` (the README shows the dozen lines)::

  exported = jax.export.deserialize(open("model.jax_export", "rb").read())
  probabilities = exported.call(images)          # images: uint8 (N, H, W, C)
  probabilities = exported.call(input_ids, attention_mask, token_type_ids)  # text

The exported weights are the run's final ones, as for ``lowres_jax.predict``: runs whose
reported metrics come from other weights are refused the same way.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags

from lowres_jax import errors
from lowres_jax.user_error import UserError

# Flags are defined only when run as a command, so importing this module (tests, the
# other commands) never collides with their flags of the same names.
FLAGS = flags.FLAGS

MODEL_FILE = "model.jax_export"


class ExportError(UserError, ValueError):
  """A run that cannot be exported as asked."""


def inference_function(predictor):
  """probabilities = f(*inputs): the run's model with its weights closed over."""
  import jax
  import jax.numpy as jnp
  from lowres_jax.train import step as step_lib
  logits_of = step_lib.make_eval_logits(predictor.model)
  variables = jax.tree.map(jnp.asarray, predictor.variables)
  names = input_names(predictor)

  def probabilities(*arrays):
    logits = logits_of(variables, dict(zip(names, arrays)))
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  return probabilities


def input_names(predictor) -> tuple[str, ...]:
  return predictor.plan.modality.input_names


def input_specs(predictor) -> list:
  """Shapes with a symbolic batch dimension, so one export serves every batch size."""
  import jax
  (batch,) = jax.export.symbolic_shape("batch")
  if predictor.plan.modality.is_text:
    return [jax.ShapeDtypeStruct((batch, predictor.plan.max_length), np.int32)
            for _ in input_names(predictor)]
  return [jax.ShapeDtypeStruct((batch, *predictor.image_shape), np.uint8)]


def export_stablehlo(workdir: str, out: str, command: str = "", int8: bool = False) -> dict:
  """Writes the files of the module doc; returns what labels.json says. ``int8``: a quantized
  run's int8 model, its int8 operations kept in the exported program."""
  import jax
  from lowres_jax import storage
  from lowres_jax.predict import Predictor
  predictor = Predictor.load(workdir, int8=int8)
  specs = input_specs(predictor)
  exported = jax.export.export(jax.jit(inference_function(predictor)))(*specs)
  storage.ensure_directory(out, flag="--out")
  with storage.replacing(os.path.join(out, MODEL_FILE), "wb") as f:
    f.write(exported.serialize())
  labels = {"classes": list(predictor.class_names),
            "inputs": [{"name": n, "dtype": str(s.dtype), "shape": ["batch", *s.shape[1:]]}
                       for n, s in zip(input_names(predictor), specs)],
            "output": "probabilities (batch, classes), float32",
            "weights": f"int8 ({predictor.plan.quantize.mode})" if int8 else "float32"}
  storage.write_json(os.path.join(out, "labels.json"), labels, indent=1)
  if predictor.plan.modality.is_text:
    storage.write_text(os.path.join(out, "tokenizer.json"),
                       predictor.plan.modality.get_tokenizer().json_text)
  storage.write_text(os.path.join(out, "MODEL_CARD.md"), model_card(predictor, workdir, out,
                                                                    command))
  return labels


TORCH_FILE = "model.safetensors"


def export_torch(workdir: str, out: str, command: str = "") -> dict:
  """An EfficientNet-Lite run as a safetensors state dict in PyPI efficientnet-lite-pytorch's
  names (``models/efficientnet_convert.to_lukemelas``), with labels.json and MODEL_CARD.md.
  Load it with ``EfficientNet.from_name('efficientnet-lite0', image_size=..., num_classes=...)``
  and ``load_state_dict``; feed RGB at the model's image size as (pixel - 127) / 128, NCHW."""
  from flax import traverse_util
  from safetensors.numpy import save_file
  from lowres_jax import storage
  from lowres_jax.models.efficientnet_convert import to_lukemelas
  from lowres_jax.predict import Predictor
  predictor = Predictor.load(workdir)
  plan = predictor.plan
  if plan.model_name != "efficientnet_lite" or plan.adapt.uses("lora"):
    raise ExportError(f"--format=torch writes EfficientNet-Lite runs without LoRA adapters; "
                      f"{workdir} is a {plan.model_name!r} run"
                      f"{' with LoRA' if plan.adapt.uses('lora') else ''}: use --format=stablehlo")
  flat = {"/".join(k): np.asarray(v) for k, v in
          traverse_util.flatten_dict(predictor.variables).items()}
  storage.ensure_directory(out, flag="--out")
  save_file(to_lukemelas(flat), os.path.join(out, TORCH_FILE))
  image_size = dict(plan.model_kwargs).get("image_size", 0)
  labels = {"classes": list(predictor.class_names),
            "inputs": [{"name": "image", "layout": "NCHW float32 RGB, (pixel - 127) / 128",
                        "image_size": image_size}],
            "output": "logits (batch, classes)",
            "load": f"EfficientNet.from_name('efficientnet-lite0', image_size={image_size}, "
                    f"num_classes={len(predictor.class_names)}).load_state_dict(...)"}
  storage.write_json(os.path.join(out, "labels.json"), labels, indent=1)
  storage.write_text(os.path.join(out, "MODEL_CARD.md"),
                     model_card(predictor, workdir, out, command))
  return labels


HF_HEAD_FILE = "head.safetensors"


def export_hf(workdir: str, out: str, command: str = "") -> dict:
  """A BERT-encoder run as a sentence-transformers directory: ``config.json`` and
  ``model.safetensors`` in ``BertModel`` names (LoRA adapters merged into the kernels), the
  run's ``tokenizer.json`` with a ``tokenizer_config.json``, ``modules.json`` with the run's
  pooling (``1_Pooling``) and, when it normalises, ``2_Normalize``; the classification head
  as ``head.safetensors`` (``weight`` (classes, hidden), ``bias``: logits = embedding @
  weight.T + bias), labels.json and MODEL_CARD.md.

  ``SentenceTransformer(out).encode(texts)`` gives the embeddings the head reads."""
  from flax import traverse_util
  from safetensors.numpy import save_file
  from lowres_jax import storage
  from lowres_jax.models import bert_convert, lora as lora_lib
  from lowres_jax.predict import Predictor
  from lowres_jax.train.adapt import lora as lora_method
  predictor = Predictor.load(workdir)
  plan = predictor.plan
  if plan.model_name != "bert":
    raise ExportError(f"--format=hf writes BERT-encoder runs; {workdir} is a "
                      f"{plan.model_name!r} run: use --format=stablehlo")
  params = predictor.variables["params"]
  if plan.adapt.uses("lora"):
    params = lora_lib.merge(params, lora_method.lora_spec(plan.adapt).scale)
  flat = {"/".join(k): np.asarray(v, np.float32)
          for k, v in traverse_util.flatten_dict(params).items()}
  head = {k: v for k, v in flat.items() if k.startswith("head/")}
  tensors = bert_convert.to_hf_bert({k: v for k, v in flat.items() if not k.startswith("head/")})
  kwargs = dict(plan.model_kwargs)
  hidden = int(head["head/kernel"].shape[0])
  pool = kwargs.get("pool", "mean")
  storage.ensure_directory(out, flag="--out")
  save_file(tensors, os.path.join(out, "model.safetensors"))
  save_file({"weight": np.ascontiguousarray(head["head/kernel"].T), "bias": head["head/bias"]},
            os.path.join(out, HF_HEAD_FILE))
  write = lambda name, record: storage.write_json(os.path.join(out, name), record, indent=1)
  write("config.json", bert_convert.hf_config_from_model_kwargs(kwargs))
  storage.write_text(os.path.join(out, "tokenizer.json"),
                     plan.modality.get_tokenizer().json_text)
  write("tokenizer_config.json", {"tokenizer_class": "BertTokenizer",
                                  "model_max_length": plan.max_length})
  write("sentence_bert_config.json", {"max_seq_length": plan.max_length,
                                      "do_lower_case": False})
  modules = [("", "sentence_transformers.models.Transformer"),
             ("1_Pooling", "sentence_transformers.models.Pooling")]
  if kwargs.get("normalize", False):
    modules.append(("2_Normalize", "sentence_transformers.models.Normalize"))
  write("modules.json", [{"idx": i, "name": str(i), "path": path, "type": kind}
                         for i, (path, kind) in enumerate(modules)])
  storage.ensure_directory(os.path.join(out, "1_Pooling"))
  write(os.path.join("1_Pooling", "config.json"), {
      "word_embedding_dimension": hidden, "pooling_mode_cls_token": pool == "cls",
      "pooling_mode_mean_tokens": pool == "mean", "pooling_mode_max_tokens": False,
      "pooling_mode_mean_sqrt_len_tokens": False})
  if kwargs.get("normalize", False):
    storage.ensure_directory(os.path.join(out, "2_Normalize"))
  labels = {"classes": list(predictor.class_names),
            "inputs": [{"name": "text", "max_length": plan.max_length}],
            "output": f"embedding ({hidden},) from SentenceTransformer.encode; logits = "
                      f"embedding @ {HF_HEAD_FILE}['weight'].T + {HF_HEAD_FILE}['bias']"}
  write("labels.json", labels)
  storage.write_text(os.path.join(out, "MODEL_CARD.md"),
                     model_card(predictor, workdir, out, command))
  return labels


def model_card(predictor, workdir: str, out: str, command: str) -> str:
  from lowres_jax import storage
  plan = predictor.plan
  summary = storage.read_json(os.path.join(workdir, "summary.json"), "the run's summary")
  split = storage.read_json(os.path.join(workdir, "split.json"), "the run's examples")
  size = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out)
             if os.path.isfile(os.path.join(out, n)))
  prefix = "int8/test/" if predictor.int8 else "test/"
  metrics = "\n".join(f"| {k} | {summary[k]:.4f} |" for k in sorted(summary)
                      if k.startswith(prefix) and isinstance(summary[k], float))
  source = split.get("source", {})
  compression = ([f"pruned ({plan.prune.method})"] if plan.prune.method else []) + (
      [f"int8 ({plan.quantize.mode})"] if predictor.int8 else [])
  return f"""# Model card: {os.path.basename(os.path.abspath(workdir))}

- **Task**: {len(predictor.class_names)} classes of `{plan.dataset}`: {', '.join(predictor.class_names)}
- **Trained from**: {plan.init.kind} {plan.init.path or ''} ({plan.model_name}); method `{plan.method}`
- **Examples**: {split.get('num_train')} training ({plan.shots} per class; -1 is all),
  {split.get('num_val')} validation; split.json train_sha256 `{split.get('train_sha256')}`
  {f"; data sha256 `{source.get('sha256')}`" if source else ''}
- **Compression**: {', '.join(compression) or 'none'}
- **Size on disk**: {size:,} bytes (this folder)
- **Made by**: `{command or 'python -m lowres_jax.export --workdir=' + workdir + ' --out=' + out}`

| test metric (this run, one seed) | value |
|---|---|
{metrics}
"""


def main(argv) -> None:
  del argv
  if not FLAGS.workdir or not FLAGS.out:
    raise ExportError("--workdir and --out are both needed")
  command = (f"python -m lowres_jax.export --workdir={FLAGS.workdir} --out={FLAGS.out} "
             f"--format={FLAGS.format}{' --int8' if FLAGS.int8 else ''}")
  if FLAGS.int8 and FLAGS.format != "stablehlo":
    raise ExportError("--int8 exports with --format=stablehlo only (the int8 operations are "
                      "qwix's, which the torch and sentence-transformers formats cannot hold)")
  if FLAGS.format == "stablehlo":
    labels = export_stablehlo(FLAGS.workdir, FLAGS.out, command, int8=FLAGS.int8)
  else:
    labels = {"torch": export_torch, "hf": export_hf}[FLAGS.format](FLAGS.workdir, FLAGS.out,
                                                                     command)
  print(f"exported {len(labels['classes'])}-class model to {FLAGS.out} ({FLAGS.format})")


def _define_flags() -> None:
  flags.DEFINE_string("workdir", None, "A finished run's --workdir.")
  flags.DEFINE_string("out", None, "Folder to write the exported model into.")
  flags.DEFINE_enum("format", "stablehlo", ["stablehlo", "torch", "hf"], "What to export.")
  flags.DEFINE_bool("int8", False, "Export a quantized run's int8 model (stablehlo).")


if __name__ == "__main__":
  _define_flags()
  app.run(lambda argv: errors.run_with_clear_errors(lambda: main(argv)))
