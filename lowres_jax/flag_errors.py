"""One line saying which command-line flag is wrong and what to write instead.

absl and ml_collections report a missing config file as a generic load failure, a syntax
error or an exception in get_config() as a traceback inside a flag error, and a mistyped
``--config.key`` as a bare AttributeError. These helpers load the config again themselves to
name the real cause, with a did-you-mean over the config's keys.
"""

from __future__ import annotations

import difflib
import re
import traceback

import ml_collections

from lowres_jax.config import load_module


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
