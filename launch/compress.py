"""Compression table over seeds: the config's pipeline (fine-tune, distill, prune, quantize)
run once per seed, then one table of accuracy, size and measured latency per stage.

  python launch/compress.py --config=configs/ablations/compress_image.py \\
      --workdir=workdirs/compress_image --out=results/compress_image.md

The config module gives ``get_config()`` (a config with ``pipeline`` and ``stages``), ``SEEDS``,
``TITLE``, ``NOTES`` and ``TARGETS`` (lowres_jax/compress/table.py). Seed ``s`` runs into
``<workdir>/seed=s``; a rerun reads finished stages back (their measurements are kept in each
stage's ``stage.json``), so an interrupted table resumes where it stopped. Run it alone:
the latencies are timed on the machine as it is.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lowres_jax import pipeline  # noqa: E402
from lowres_jax.compress import table  # noqa: E402
from lowres_jax.config import load_module  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True, help="Markdown file of the table.")
  parser.add_argument("--progress", action="store_true")
  args = parser.parse_args()
  module = load_module(args.config)
  runs = []
  for seed in module.SEEDS:
    config = module.get_config()
    config.seed = seed
    runs.append(pipeline.run_pipeline(config, os.path.join(args.workdir, f"seed={seed}"),
                                      show_progress=args.progress))
    print(pipeline.format_pipeline_table(runs[-1], f"seed {seed}"), flush=True)
  command = shlex.join(["python", "launch/compress.py", *sys.argv[1:]])
  text = table.format_table(runs, module.TITLE, command, module.NOTES, module.TARGETS)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as handle:
    handle.write(text)
  print(text)


if __name__ == "__main__":
  main()
