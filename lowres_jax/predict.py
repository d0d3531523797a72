"""Classify new inputs with a finished run: ``python -m lowres_jax.predict``.

  python -m lowres_jax.predict --workdir=workdirs/my_photos --input=new_photos/ \\
      --output=preds.csv
  echo "a text to classify" | python -m lowres_jax.predict --workdir=workdirs/my_texts --input=-

``--input`` is a folder of images (searched recursively), one image, a CSV/JSONL file (the
run's ``config.data.text_field``), a TXT file of one text per line, or ``-`` for lines on
stdin. Inputs are prepared exactly as the run's training data were: images decoded and
converted to the stored channels and size of its dataset (the model then applies its own
preprocessing, as in training), texts tokenised with the run's tokenizer and ``max_length``.
They go through the trainer's padded, jitted evaluation (``train/evaluate.py``: one compile
for any count). The output (CSV, or JSONL by its extension) has one row per input: its id or
path, the predicted class name, its probability and the ``--top_k`` classes with theirs.

The weights are the run's newest checkpoint, the final weights, whose test metrics are the
summary's ``test/*``; with ``--int8`` a quantized run's int8 model (``workdir/int8``, int8
operations kept), whose metrics are the summary's ``int8/test/*``. Runs whose reported metrics
come from other weights (an evaluation variant, a refitted head, logit adjustment) are
refused with a line saying so, rather than predicted with weights their summary does not
describe.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os
import sys
from typing import Sequence

import numpy as np
from absl import app, flags

from lowres_jax import errors
from lowres_jax.user_error import MissingInputError, UserError

# Flags are defined only when run as a command, so importing this module (tests, the
# other commands) never collides with their flags of the same names.
FLAGS = flags.FLAGS


class PredictError(UserError, ValueError):
  """A run or an input that cannot be predicted; the message says why."""


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A finished run's model, weights and input conventions."""
  plan: object
  model: object
  variables: object
  class_names: tuple[str, ...]
  image_shape: tuple[int, ...] | None  # (H, W, C) the run's images were stored at.
  int8: bool = False  # The quantized model (its metrics: the summary's int8/test/*).

  @classmethod
  def load(cls, workdir: str, int8: bool = False) -> "Predictor":
    """The run in ``workdir``; ``int8``: its quantized model instead of the float one."""
    import ml_collections
    from lowres_jax import checkpoint, storage
    from lowres_jax.data import sources, text_sources
    from lowres_jax.train import loop
    from lowres_jax.train.plan import read_plan
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(os.path.join(workdir, "summary.json")):
      raise MissingInputError(f"--workdir={workdir} holds no finished run (no summary.json); "
                              "point it at a run that has finished")
    plan = read_plan(ml_collections.ConfigDict(storage.read_json(config_path, "the run's config")))
    summary = storage.read_json(os.path.join(workdir, "summary.json"), "the run's summary")
    _refuse_other_weights(plan, summary, workdir)
    names = text_sources.label_names(plan.dataset, plan.data_dir, plan.data_options)
    image_shape = None if plan.modality.is_text else sources.image_shape(
        plan.dataset, plan.train_split, plan.data_dir, plan.data_options)
    if int8:
      model, variables = _int8_model(plan, workdir, image_shape)
    else:
      model = loop.build_run_model(plan)
      try:
        variables = checkpoint.load_variables(workdir)
      except (FileNotFoundError, checkpoint.NoUsableCheckpointError) as error:
        raise PredictError(f"{workdir} kept no usable checkpoint ({error}); rerun it with "
                           "config.keep_checkpoints > 0") from None
    return cls(plan=plan, model=model, variables=variables,
               class_names=tuple(names[c] for c in plan.classes), image_shape=image_shape,
               int8=int8)

  @functools.cached_property
  def _evaluator(self):
    """The trainer's padded evaluation and the weights placed once, for every call."""
    import jax
    from lowres_jax import parallel
    from lowres_jax.train.compiled import CompileCache
    from lowres_jax.train.evaluate import Evaluator
    mesh = parallel.make_mesh()
    stacked = parallel.put_replicated(
        jax.tree.map(lambda leaf: np.asarray(leaf)[None], self.variables), mesh)
    return Evaluator(self.model, self.plan.eval_batch_size, mesh, CompileCache()), stacked

  def probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """(N, classes) softmax probabilities of the prepared inputs."""
    evaluator, stacked = self._evaluator
    logits = evaluator.logits(stacked, inputs, shared=True)[0].astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)

  def prepare_texts(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
    if not self.plan.modality.is_text:
      raise PredictError("this run classifies images; --input holds texts")
    return self.plan.modality.encode(texts)

  def prepare_images(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
    from lowres_jax.data import user_files
    if self.image_shape is None:
      raise PredictError("this run classifies texts; --input holds images")
    height, width, channels = self.image_shape
    arrays = []
    for path in paths:  # Converted and resized exactly as the run's images were stored.
      try:
        image = user_files.open_image(path)
      except (OSError, ValueError) as error:
        raise PredictError(f"cannot read image {path} ({type(error).__name__}: "
                           f"{str(error)[:120]})") from None
      arrays.append(user_files.image_array(image, channels, (width, height)))
    return {"image": np.stack(arrays)}


def _int8_model(plan, workdir: str, image_shape) -> tuple:
  """The quantized model and its int8 variables, restored bit for bit from ``workdir/int8``."""
  from lowres_jax.compress import quantize
  from lowres_jax.train import loop
  path = os.path.join(workdir, quantize.INT8_DIR)
  if not plan.quantize.mode:
    raise PredictError(f"{workdir} was not quantized (config.quantize.mode = ''): drop --int8")
  if not os.path.isdir(path):
    raise PredictError(f"{workdir} holds no int8 model ({path} is missing): the run was "
                       "quantized but its int8 variables were not kept")
  quantized = quantize.ptq_model(loop.build_run_model(plan, qat=False), plan.quantize)
  sample = (plan.modality.encode([""]) if plan.modality.is_text
            else {"image": np.zeros((1, *image_shape), np.uint8)})
  return quantized, quantize.restore(path, quantize.abstract_variables(quantized, sample))


def _refuse_other_weights(plan, summary: dict, workdir: str) -> None:
  reasons = []
  if summary.get("variant") not in (None, "final"):
    reasons.append(f"its metrics are of the {summary['variant']!r} evaluation variant")
  if plan.head_refit:
    reasons.append(f"its head is refitted at the end (head_refit={plan.head_refit!r})")
  if plan.logit_adjust:
    reasons.append("its logits are adjusted after the model (eval.logit_adjust)")
  if reasons:
    raise PredictError(f"{workdir}: {'; '.join(reasons)}, and predict reads the final float "
                       "weights (or, with --int8, the int8 ones) only: those predictions would "
                       "not be the ones its summary measured. Predict with a run without these "
                       "settings.")


def read_inputs(spec: str, options) -> tuple[list[str], str, list]:
  """(ids, kind, items): kind 'images' (items: paths) or 'texts' (items: strings). A CSV or
  JSONL is read with the run's ``FileDataOptions`` (its text field; its id field, if any,
  gives the ids; otherwise rows are numbered)."""
  from lowres_jax.data import user_files
  if spec == "-":
    texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    return [str(i) for i in range(len(texts))], "texts", texts
  if not os.path.exists(spec):
    raise MissingInputError(f"--input={spec} does not exist")
  if os.path.isdir(spec):
    paths = sorted(os.path.join(base, name) for base, _, names in os.walk(spec)
                   for name in names if name.lower().endswith(user_files.IMAGE_EXTENSIONS)
                   and not name.startswith("."))
    if not paths:
      raise PredictError(f"--input={spec} holds no image file")
    return [os.path.relpath(p, spec) for p in paths], "images", paths
  if spec.lower().endswith(user_files.IMAGE_EXTENSIONS):
    return [spec], "images", [spec]
  if spec.endswith((".csv", ".jsonl")):
    kind = "csv" if spec.endswith(".csv") else "jsonl"
    rows = user_files.read_rows(kind, spec, options, labelled=False)
    return ([str(i) if given is None else str(given) for i, (_, _, _, given) in enumerate(rows)],
            "texts", [text for _, text, _, _ in rows])
  else:
    texts = [line for line in user_files.read_utf8(spec).splitlines() if line.strip()]
  return [str(i) for i in range(len(texts))], "texts", texts


def write_predictions(path: str, ids: Sequence[str], probabilities: np.ndarray,
                      names: Sequence[str], top_k: int) -> None:
  from lowres_jax import storage
  order = np.argsort(-probabilities, axis=1, kind="stable")[:, :max(1, top_k)]
  rows = [{"id": id_, "predicted": names[top[0]], "probability": round(float(p[top[0]]), 6),
           "top_k": [[names[c], round(float(p[c]), 6)] for c in top]}
          for id_, p, top in zip(ids, probabilities, order)]
  if path.endswith(".jsonl"):
    content = "".join(json.dumps(row) + "\n" for row in rows)
  else:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "predicted", "probability", "top_k"])
    for row in rows:
      writer.writerow([row["id"], row["predicted"], row["probability"],
                       ";".join(f"{n}:{p}" for n, p in row["top_k"])])
    content = buffer.getvalue()
  storage.write_text(path, content)


def main(argv) -> None:
  del argv
  if not FLAGS.workdir or not FLAGS.input:
    raise PredictError("--workdir and --input are both needed")
  predictor = Predictor.load(FLAGS.workdir, int8=FLAGS.int8)
  ids, kind, items = read_inputs(FLAGS.input, predictor.plan.data_options)
  inputs = (predictor.prepare_images(items) if kind == "images"
            else predictor.prepare_texts(items))
  probabilities = predictor.probabilities(inputs)
  write_predictions(FLAGS.output, ids, probabilities, predictor.class_names, FLAGS.top_k)
  counts = np.bincount(probabilities.argmax(1), minlength=len(predictor.class_names))
  summary = ", ".join(f"{n} {c}" for n, c in zip(predictor.class_names, counts) if c)
  print(f"{len(ids)} {kind} -> {FLAGS.output} ({summary})")


def _define_flags() -> None:
  flags.DEFINE_string("workdir", None, "A finished run's --workdir.")
  flags.DEFINE_string("input", None, "Folder or file of images, CSV/JSONL/TXT of texts, "
                               "or - for texts on stdin.")
  flags.DEFINE_string("output", "predictions.csv", "Where to write (.csv or .jsonl).")
  flags.DEFINE_integer("top_k", 3, "Classes listed per input with their probabilities.")
  flags.DEFINE_bool("int8", False, "Predict with a quantized run's int8 model.")


if __name__ == "__main__":
  _define_flags()
  flags.mark_flags_as_required(["workdir", "input"])
  app.run(lambda argv: errors.run_with_clear_errors(lambda: main(argv)))
