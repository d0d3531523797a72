"""Entry point for one run: flags -> config -> trainer.

  python -m lowres_jax.main --config=configs/default.py:shots=5 --workdir=workdirs/x \\
      --config.optim.lr=0.01

With no flags it runs configs/default.py into ./workdirs/default and prints a results table.
Known problems (bad config path, unread config keys, missing data, NaN loss, too many shots)
end with one clear line on stderr and exit code 2, not a traceback.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from lowres_jax import errors, parallel
from lowres_jax.config import ConfigError, load_module
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
    raise ConfigError(load_config(config_arg)[1]
                      or f"--config={config_arg}: {one_line(str(error))}") from None
  summary = loop.run(config, workdir, show_progress=_PROGRESS.value)
  if parallel.is_main_process():
    print(format_run_table(summary, workdir))


def one_line(text: str) -> str:
  """``text`` with its line breaks (real or escaped in a repr) and runs of spaces collapsed."""
  return re.sub(r"\s+", " ", text.replace("\\n", " ")).strip()


def load_config(config_arg: str) -> tuple[ml_collections.ConfigDict | None, str | None]:
  """``--config=config_arg`` loaded again the way ml_collections does (``path[:arg]``), and
  why it cannot be, in one line (None when it loads).

  ml_collections reports a missing file as a generic load failure, and a syntax error or an
  exception in get_config() as a traceback inside a flag error; loading it here names the
  cause instead.
  """
  path, *arg = config_arg.split(":", 1)
  try:
    return load_module(path).get_config(*arg), None
  except ValueError as error:  # ConfigError, or a config file's own for a bad ':arg'.
    return None, f"--config={config_arg}: {one_line(str(error))}"
  except Exception as error:  # A bug in the config file: say where.
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return None, (f"--config={config_arg}: get_config raised {type(error).__name__}: "
                  f"{one_line(str(error))}{where}")


def _value_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """The dotted key of every value in ``config`` (sections are walked, not listed)."""
  paths = []
  for key in config.keys():
    if isinstance(config[key], ml_collections.ConfigDict):
      paths.extend(_value_paths(config[key], f"{prefix}{key}."))
    else:
      paths.append(prefix + key)
  return paths


def override_problem(config: ml_collections.ConfigDict, dotted: str,
                     flag_error: str) -> str | None:
  """Why ``--config.<dotted>=...`` is refused (None when this override is not the problem):
  a key the config lacks, with the close keys it has, or a value of the wrong type."""
  node, parts = config, dotted.split(".")
  for depth, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      section = ".".join(parts[:depth])
      paths = _value_paths(config)
      close = difflib.get_close_matches(dotted, paths, n=3, cutoff=0.7)
      if not close:  # E.g. --config.shot: match the last name against every key's last name.
        names = {p.rsplit(".", 1)[-1] for p in paths}
        near = set(difflib.get_close_matches(parts[-1], names, n=3, cutoff=0.7))
        close = [p for p in paths if p.rsplit(".", 1)[-1] in near][:3]
      hint = f" Did you mean {' or '.join('--config.' + c for c in close)}?" if close else ""
      if not isinstance(node, ml_collections.ConfigDict):
        return (f"--config.{dotted}: config.{section} is a value ({node!r}), not a section "
                f"with keys.{hint}")
      here = f"config.{section}" if section else "the config"
      return (f"--config.{dotted}: config has no key '{dotted}'.{hint} Keys of {here}: "
              f"{', '.join(node.keys())}")
    node = node[part]
  if f"--config.{dotted}=" in flag_error:  # absl names the flag whose value did not parse.
    reason = one_line(flag_error.split(": ", 1)[-1]) if ": " in flag_error else ""
    kind = type(node).__name__
    article = "an" if kind[0] in "aeiou" else "a"
    return (f"--config.{dotted}: {reason}; config.{dotted} takes {article} {kind} "
            f"(it is {node!r})")
  return None


def flag_problem(argv: list[str], error: Exception) -> str:
  """One line naming the flag behind ``error`` and what to write instead."""
  message = one_line(str(error))
  config_args = [a.split("=", 1)[1] for a in argv[1:] if a.startswith(("--config=", "-config="))]
  if config_args:
    config, problem = load_config(config_args[-1])
    if problem:
      return problem
    for arg in argv[1:]:
      match = re.match(r"^--?(?:no)?config\.([^=]+)", arg)
      problem = match and override_problem(config, match.group(1), message)
      if problem:
        return problem
  return f"bad flag: {message}"


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, reporting a bad flag (a mistyped --config.key included, which
  ml_collections raises as a bare AttributeError) as one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except Exception as error:
    print(f"lowres_jax: error: {flag_problem(argv, error)}", file=sys.stderr)
    sys.exit(2)


def run_cli() -> None:
  # With no --config at all, run the embedded default, as the README promises.
  if not any(a == "--config" or a.startswith("--config=") for a in sys.argv[1:]):
    sys.argv.insert(1, f"--config={DEFAULT_CONFIG}")
  logging.set_verbosity(logging.WARNING)
  errors.run_with_clear_errors(lambda: app.run(main, flags_parser=parse_flags))


if __name__ == "__main__":
  run_cli()
