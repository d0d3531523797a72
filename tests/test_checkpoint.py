"""A corrupt latest checkpoint falls back to the previous one, with a warning."""

import logging
import os

import numpy as np
import pytest

from lowres_jax import checkpoint


def state(value: float) -> dict:
  return {"params": {"w": np.full((3, 4), value, np.float32)}, "step": np.asarray(value, np.int32)}


def corrupt(step_dir) -> None:
  """Truncates every data file of a saved step, as a crash mid-write or a bad disk would."""
  for root, _, files in os.walk(step_dir):
    for name in files:
      if not name.endswith((".json", "_METADATA")) or "manifest" in name:
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(0)


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
  manager = checkpoint.make_manager(str(tmp_path), keep=3)
  for step in (10, 20):
    checkpoint.save(manager, step, state(step))
  corrupt(tmp_path / "checkpoints" / "20")
  with caplog.at_level(logging.WARNING):
    step, restored = checkpoint.restore_latest(manager, state(0))
  assert step == 10
  np.testing.assert_array_equal(restored["params"]["w"], state(10)["params"]["w"])
  assert any("step 20" in r.getMessage() and "falling back" in r.getMessage()
             for r in caplog.records)


def test_all_checkpoints_corrupt_is_a_clear_error(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path))
  checkpoint.save(manager, 5, state(5))
  corrupt(tmp_path / "checkpoints" / "5")
  with pytest.raises(checkpoint.NoUsableCheckpointError, match="Delete the checkpoints folder"):
    checkpoint.restore_latest(manager, state(0))


def test_no_checkpoint_restores_nothing(tmp_path):
  assert checkpoint.restore_latest(checkpoint.make_manager(str(tmp_path)), state(0)) is None
