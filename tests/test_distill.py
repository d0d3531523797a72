"""Distillation (compress/distill.py): the losses by hand, and teacher-student runs."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from test_text_data import fake_data_dir, fake_tree  # noqa: F401 (fixtures)
from test_text_methods import fake_fortunes_config, needs_minilm
from lowres_jax import checkpoint
from lowres_jax.compress import distill
from lowres_jax.config import ConfigError
from lowres_jax.train import loop


def test_kl_loss_equals_a_hand_computation():
  student = jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
  teacher = jnp.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
  t = 2.0
  p = np.exp(np.asarray(teacher) / t)
  p /= p.sum(-1, keepdims=True)
  q = np.exp(np.asarray(student) / t)
  q /= q.sum(-1, keepdims=True)
  expected = t ** 2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))
  probs = distill.teacher_probabilities([teacher], jnp.float32(t))
  np.testing.assert_allclose(distill.kl_distillation(student, probs, jnp.float32(t)), expected,
                             rtol=1e-5)
  # Zero when the student matches the teacher; two equal teachers average to the one.
  np.testing.assert_allclose(distill.kl_distillation(teacher, probs, jnp.float32(t)), 0.0,
                             atol=1e-6)
  np.testing.assert_allclose(distill.teacher_probabilities([teacher, teacher], jnp.float32(t)),
                             probs, rtol=1e-6)
  # Pseudo-labels: the teacher's argmax (0 and 1 here) as hard targets.
  log_q1 = np.log(np.exp(np.asarray(student)) / np.exp(np.asarray(student)).sum(-1, keepdims=True))
  np.testing.assert_allclose(distill.pseudo_label_loss(student, probs),
                             -(log_q1[0, 0] + log_q1[1, 1]) / 2, rtol=1e-5)


def test_mixup_inputs_is_a_convex_mixture_and_identity_at_alpha_zero():
  images = jnp.arange(4 * 2 * 2 * 1, dtype=jnp.float32).reshape(4, 2, 2, 1) * 10
  batch = {"image": images}
  same = distill.mixup_inputs(jax.random.PRNGKey(0), batch, jnp.float32(0.0))
  np.testing.assert_array_equal(same["image"], images)
  mixed = distill.mixup_inputs(jax.random.PRNGKey(0), batch, jnp.float32(1.0))["image"]
  assert not np.allclose(mixed, images)
  assert mixed.min() >= images.min() and mixed.max() <= images.max()


def test_agreement_metrics():
  student = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
  teacher = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
  metrics = distill.agreement_metrics(student, teacher, "test")
  assert metrics["test/teacher_agreement"] == pytest.approx(2 / 3)
  assert metrics["test/teacher_kl"] > 0


@pytest.fixture(scope="module")
def teacher_dir(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("teacher") / "run")
  config = tiny_config(data_dir, os.path.dirname(workdir) + "/cache")
  config.train.duration, config.optim.lr = "200 steps", 0.05  # ~96% test accuracy.
  loop.run(config, workdir, show_progress=False)
  return workdir


def _student(data_dir, tmp_path, teacher_dir, **distill_settings):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.model.width, config.model.hidden = 4, 8  # Half the teacher's width.
  config.train.duration, config.optim.lr = "100 steps", 0.05
  config.distill.teachers = (teacher_dir,)
  for key, value in distill_settings.items():
    config.distill[key] = value
  return config


def test_a_student_distils_from_the_unlabelled_pool(data_dir, tmp_path, teacher_dir):
  config = _student(data_dir, tmp_path, teacher_dir, pool_size=300, mixup=0.5, labelled=0.0)
  summary = loop.run(config, str(tmp_path / "student"), show_progress=False)
  teacher = json.load(open(os.path.join(teacher_dir, "summary.json")))
  assert summary["teacher/test/accuracy"] == pytest.approx(teacher["test/accuracy"], abs=1e-6)
  # Trained on the teacher's outputs alone (no label read), the student agrees with it far
  # above chance (0.2); measured 0.88.
  assert summary["test/teacher_agreement"] > 0.75
  split = json.load(open(tmp_path / "student" / "split.json"))
  assert split["num_pool"] == 300 and not set(split["pool_ids"]) & set(split["val_ids"])
  # The student's checkpoint holds the student alone.
  student = checkpoint.load_variables(str(tmp_path / "student"))
  assert student["params"]["conv0_a"]["kernel"].shape[-1] == 4


def test_zero_distillation_weights_reduce_to_plain_training(data_dir, tmp_path, teacher_dir):
  distilled = _student(data_dir, tmp_path, teacher_dir, kl=0.0)
  plain = tiny_config(data_dir, str(tmp_path / "cache"))
  plain.model, plain.train, plain.optim = distilled.model, distilled.train, distilled.optim
  a = loop.run(plain, str(tmp_path / "plain"), show_progress=False)
  b = loop.run(distilled, str(tmp_path / "zero"), show_progress=False)
  np.testing.assert_allclose(a["test/loss"], b["test/loss"], rtol=1e-5)


def test_distillation_config_errors(data_dir, tmp_path, teacher_dir):
  config = tiny_config(data_dir, str(tmp_path / "cache"))
  config.distill.temperature = 4.0  # No teacher named.
  with pytest.raises(ConfigError, match="names no teacher"):
    loop.run(config, str(tmp_path / "a"), show_progress=False)
  config = _student(data_dir, tmp_path, teacher_dir, mixup=0.2)
  with pytest.raises(ConfigError, match="pool_size is 0"):
    loop.run(config, str(tmp_path / "b"), show_progress=False)
  config = _student(data_dir, tmp_path, teacher_dir)
  config.data.classes = (5, 6, 7, 8)
  with pytest.raises(ConfigError, match="same classes"):
    loop.run(config, str(tmp_path / "c"), show_progress=False)
  config = _student(data_dir, tmp_path, str(tmp_path))
  with pytest.raises(ConfigError, match="no config.json"):
    loop.run(config, str(tmp_path / "d"), show_progress=False)


@needs_minilm
def test_a_shallower_text_student_starts_from_its_teachers_layers_and_distils(
    tmp_path, fake_data_dir):  # noqa: F811
  teacher = fake_fortunes_config(fake_data_dir, "finetune")
  teacher.model.depth, teacher.checkpoint_every = 2, 4
  loop.run(teacher, str(tmp_path / "teacher"), show_progress=False)
  student = fake_fortunes_config(fake_data_dir, "finetune")
  student.init.kind, student.init.reinit = "workdir", ""
  student.init.path = str(tmp_path / "teacher")
  student.init.rename = ((r"/layer_0/", "/layer_0/"), (r"/layer_1/", ""))
  student.distill.teachers, student.distill.pool_size = (str(tmp_path / "teacher"),), 6
  # Token pools (no mixup) join the labelled batch.
  trained = loop.run(student, str(tmp_path / "student"), show_progress=False)
  teacher_params = json.load(open(tmp_path / "teacher" / "summary.json"))["model/params"]
  assert trained["model/params"] < teacher_params
  assert np.isfinite(trained["test/teacher_kl"])
  taught = checkpoint.load_variables(str(tmp_path / "teacher"))["params"]
  started = checkpoint.load_variables(str(tmp_path / "student"))["params"]
  assert set(started) == {k for k in taught if k != "layer_1"}
