"""Entry point for one run: flags -> config -> trainer.

  python -m lowres_jax.main --config=configs/default.py:shots=5 --workdir=workdirs/x \\
      --config.optim.lr=0.01

With no flags it runs configs/default.py into ./workdirs/default: its pipeline (fine-tune,
distill, prune, quantize; lowres_jax/pipeline.py) and prints one table of the stages. A config
with ``pipeline = ()`` (``configs/default.py:stages=finetune``) is one run and prints its table.
Known problems (bad config path, unread config keys, missing data, NaN loss, too many shots)
end with one clear line on stderr and exit code 2, not a traceback.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lowres_jax import errors, flag_errors, parallel
from lowres_jax.config import ConfigError
from lowres_jax.report import format_run_table

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "default.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with ':arg' (e.g. configs/default.py:shots=5).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default ./workdirs/<config>).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar / progress lines.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "host:port of process 0 for a multi-host run (jax.distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index in a multi-host run.")


def default_workdir(config_arg: str) -> str:
  name = os.path.splitext(os.path.basename(config_arg.split(":", 1)[0]))[0]
  suffix = config_arg.split(":", 1)[1].replace(",", "_").replace("=", "") if ":" in config_arg else ""
  return os.path.join("workdirs", name + (f"_{suffix}" if suffix else ""))


def main(argv) -> None:
  del argv
  from lowres_jax.train import loop  # After flag parsing: importing JAX is slow.
  if _COORDINATOR.value:
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config_arg = flags.FLAGS["config"].config_filename
  workdir = _WORKDIR.value or default_workdir(config_arg)
  try:
    config = _CONFIG.value
    config.to_dict()  # A config that failed to load raises only when first used.
  except Exception as error:
    raise ConfigError(flag_errors.load_config(config_arg)[1]
                      or f"--config={config_arg}: {flag_errors.one_line(str(error))}") from None
  if "pipeline" in config and tuple(config.pipeline):
    from lowres_jax import pipeline  # After flag parsing, like the trainer.
    rows = pipeline.run_pipeline(config, workdir, show_progress=_PROGRESS.value)
    if parallel.is_main_process():
      print(pipeline.format_pipeline_table(rows, workdir))
    return
  summary = loop.run(config, workdir, show_progress=_PROGRESS.value)
  if parallel.is_main_process():
    print(format_run_table(summary, workdir))


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, reporting a bad flag (a mistyped --config.key included, which
  ml_collections raises as a bare AttributeError) as one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except Exception as error:
    print(f"lowres_jax: error: {flag_errors.flag_problem(argv, error)}", file=sys.stderr)
    sys.exit(2)


def run_cli() -> None:
  # With no --config at all, run the embedded default, as the README promises.
  if not any(a == "--config" or a.startswith("--config=") for a in sys.argv[1:]):
    sys.argv.insert(1, f"--config={DEFAULT_CONFIG}")
  logging.set_verbosity(logging.WARNING)
  errors.run_with_clear_errors(lambda: app.run(main, flags_parser=parse_flags))


if __name__ == "__main__":
  run_cli()
