"""The opening of every launch script's results file: its title and the command that wrote it."""

from __future__ import annotations

import os
import shlex
import sys


def header(title: str) -> list[str]:
  """Markdown lines: the title, then this process's own command line (script and flags)."""
  script = os.path.relpath(os.path.abspath(sys.argv[0]),
                           os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  command = shlex.join(["python", script, *sys.argv[1:]])
  return [f"# {title}", "", "Produced by:", "", "```", command, "```", ""]
