"""The spine's contracts: batch dicts of any inputs through one step, model state, weights in."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from lowres_jax import checkpoint, parallel
from lowres_jax.data import augment
from lowres_jax.models import build_model
from lowres_jax.train import hparams as hparams_lib, loop, optim, step as step_lib
from lowres_jax.train.state import TrainState, split_variables


class BagOfTokens(nn.Module):
  """A minimal text classifier: masked mean of token embeddings, then the head."""
  num_classes: int

  @nn.compact
  def __call__(self, batch, train: bool = False):
    embedded = nn.Embed(50, 8, name="embed")(batch["input_ids"])
    mask = batch["attention_mask"][..., None].astype(jnp.float32)
    pooled = (embedded * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
    return nn.Dense(self.num_classes, name="head")(pooled), {"pre_logits": pooled}


def train_steps(model, examples: dict, steps: int, augment_names=()):
  """Runs ``steps`` single-step calls of the trainer's own step on ``examples``."""
  sample = {k: v[:1] for k, v in examples.items()}
  params, model_state = split_variables(model.init(jax.random.PRNGKey(0), sample))
  spec = step_lib.StepSpec(model, optim.OptimSpec("sgd", 0.9, 0, steps, 0.0, ""), batch_size=4,
                           chunk_steps=1, augment=augment.AugmentSettings(augment_names, 1))
  tx = optim.build_optimizer(spec.optim, hparams_lib.placeholder(), params)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                     opt_state=tx.init(params), rng=jax.random.PRNGKey(1), extra={})
  hparams = {k: jnp.float32(v) for k, v in
             {"lr": 0.1, "weight_decay": 0.0, "label_smoothing": 0.0}.items()}
  chunk = jax.jit(step_lib.make_train_chunk(spec, parallel.batch_sharding(parallel.make_mesh())))
  losses = []
  for _ in range(steps):
    state, metrics = chunk(state, hparams, {"train": examples})
    losses.append(float(metrics["loss"][0]))
  return state, losses


def test_image_and_token_batches_train_through_the_same_step():
  rng = np.random.default_rng(0)
  labels = np.arange(8) % 2
  images = {"image": (rng.random((8, 8, 8, 1)) * 60 + 150 * labels[:, None, None, None]
                      ).astype(np.uint8), "label": labels}
  state, image_losses = train_steps(build_model("cnn", 2, width=4, depth=1, hidden=8),
                                    images, 30, ("crop",))
  assert image_losses[-1] < image_losses[0] * 0.5
  token_ids = rng.integers(3, 50, (8, 6))
  token_ids[:, 0] = 1 + labels  # The first token tells the class.
  tokens = {"input_ids": token_ids, "attention_mask": (np.arange(6) < 4)[None].repeat(8, 0),
            "label": labels}
  state, token_losses = train_steps(BagOfTokens(2), tokens, 30)
  assert token_losses[-1] < token_losses[0] * 0.5
  with pytest.raises(ValueError, match="augmentation 'crop' needs images"):
    train_steps(BagOfTokens(2), tokens, 1, ("crop",))


def test_batch_norm_statistics_update_in_training_and_are_used_in_eval():
  model = build_model("cnn", 2, width=4, depth=1, hidden=8, batch_norm=True)
  rng = np.random.default_rng(0)
  examples = {"image": rng.integers(100, 255, (8, 8, 8, 1)).astype(np.uint8),
              "label": np.arange(8) % 2}
  state, _ = train_steps(model, examples, 5)
  stats = state.model_state["batch_stats"]["bn0_a"]
  assert np.abs(np.asarray(stats["mean"])).max() > 1e-3  # Moved away from the zero init.
  evaluate = step_lib.make_eval_logits(model)
  batch = {"image": examples["image"]}
  trained = evaluate(state.variables(), batch)
  fresh_stats = jax.tree.map(jnp.zeros_like, state.model_state)
  assert not np.allclose(trained, evaluate({"params": state.params, **fresh_stats}, batch))
  # Evaluation must not depend on the batch it sees (running statistics, not batch ones).
  np.testing.assert_allclose(evaluate(state.variables(), {"image": batch["image"][:2]}),
                             trained[:2], rtol=1e-5, atol=1e-5)


def test_a_run_checkpoints_batch_norm_statistics(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.model.batch_norm = True
  loop.run(config, str(tmp_path / "run"), show_progress=False)
  variables = checkpoint.load_variables(str(tmp_path / "run"))
  means = variables["batch_stats"]["bn0_a"]["mean"]
  assert np.abs(means).max() > 1e-3
