import ml_collections
import pytest

from conftest import cli_flags, run_main, tiny_config
from lowres_jax import config as config_lib
from lowres_jax.train.plan import read_plan


def test_unread_key_is_an_error_naming_it(tmp_path, data_dir):
  config = tiny_config(data_dir, str(tmp_path))
  config.optim.weigth_decay = 0.1  # A typo: nothing reads it.
  with pytest.raises(config_lib.ConfigError, match=r"optim\.weigth_decay"):
    read_plan(config)


def test_reading_a_missing_key_suggests_the_close_one():
  tracked = config_lib.TrackedConfig(ml_collections.ConfigDict({"learning_rate": 0.1}))
  with pytest.raises(config_lib.ConfigError, match="Did you mean learning_rate"):
    tracked.learning_rat


def test_override_of_unknown_key_is_an_error():
  config = ml_collections.ConfigDict({"optim": {"lr": 0.1}})
  with pytest.raises(config_lib.ConfigError, match="Did you mean lr"):
    config_lib.apply_overrides(config, {"optim.lrr": 0.2})
  assert config_lib.apply_overrides(config, {"optim.lr": 0.2}).optim.lr == 0.2
  assert config.optim.lr == 0.1  # The original is untouched.


@pytest.mark.parametrize("spec, steps", [
    ("300 steps", 300), (120, 120), ("3 epochs", 5), ("2ep", 4), ("100 examples", 4),
    ("1.5 epochs", 3), ("7", 7)])
def test_durations(spec, steps):
  assert config_lib.duration_to_steps(spec, num_train_examples=50, batch_size=32) == steps


def test_bad_duration_says_how_to_write_one():
  with pytest.raises(config_lib.ConfigError, match="'30 epochs'"):
    config_lib.duration_to_steps("30 eons", 50, 32)


def test_cli_typo_in_override_fails_cleanly(tmp_path, data_dir):
  result = run_main(["--config=configs/default.py:tiny=1,init=scratch,stages=finetune",
                     f"--workdir={tmp_path / 'run'}", "--config.optim.lrr=0.1",
                     *cli_flags(data_dir, str(tmp_path))])
  assert result.returncode != 0
  assert "lrr" in result.stderr and "Traceback" not in result.stderr


def test_cli_bad_config_path_fails_cleanly(tmp_path):
  result = run_main(["--config=configs/no_such_config.py", f"--workdir={tmp_path}"])
  assert result.returncode != 0
  assert "no_such_config.py" in result.stderr and "Traceback" not in result.stderr


def test_cli_unread_key_fails_cleanly(tmp_path, data_dir):
  config_file = tmp_path / "typo_config.py"
  config_file.write_text(
      "import importlib.util, sys\n"
      f"spec = importlib.util.spec_from_file_location('d', {str(config_lib.__file__)!r}"
      ".replace('lowres_jax/config.py', 'configs/default.py'))\n"
      "d = importlib.util.module_from_spec(spec); spec.loader.exec_module(d)\n"
      "def get_config():\n"
      "  c = d.get_config('tiny=1,init=scratch,stages=finetune')\n"
      "  c.train.augmnet = ('flip',)\n"
      "  return c\n")
  result = run_main([f"--config={config_file}", f"--workdir={tmp_path / 'run'}",
                     *cli_flags(data_dir, str(tmp_path))])
  assert result.returncode == 2, result.stderr
  assert "train.augmnet" in result.stderr and "Traceback" not in result.stderr
