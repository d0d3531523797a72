"""Shared fixtures: a prepared offline TFDS data dir and a seconds-long run config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lowres_jax.config import load_module

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "default.py"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A TFDS data dir with digits prepared once per test session (per xdist worker)."""
  from lowres_jax.data import sources
  directory = str(tmp_path_factory.mktemp("tfds"))
  sources.load_split("digits", "train", directory)
  return directory


def tiny_config(data_dir: str, cache_dir: str, arg: str = "tiny=1,init=scratch"):
  """The default config shrunk to a seconds-long run, reading data from ``data_dir``."""
  config = load_module(str(DEFAULT_CONFIG)).get_config(arg + ",stages=finetune")
  config.data.data_dir = data_dir
  config.cache_dir = cache_dir
  config.source.data.data_dir = data_dir
  config.source.cache_dir = cache_dir
  return config


def cli_flags(data_dir: str, cache_dir: str) -> list[str]:
  return [f"--config.data.data_dir={data_dir}", f"--config.cache_dir={cache_dir}",
          f"--config.source.data.data_dir={data_dir}", "--progress=false"]


def run_main(args: list[str], devices: int = 1, timeout: float = 300,
             **popen_kwargs) -> subprocess.CompletedProcess:
  """Runs ``python -m lowres_jax.main`` in a fresh process with ``devices`` fake CPU devices."""
  return subprocess.run([sys.executable, "-m", "lowres_jax.main", *args], cwd=REPO,
                        env=cpu_env(devices), capture_output=True, text=True, timeout=timeout,
                        **popen_kwargs)


def cpu_env(devices: int = 1) -> dict[str, str]:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  return env
