"""SetFit (the ``setfit`` library, PyTorch) on exactly the fortunes k-shot examples of
lowres_jax's ``text_fortunes`` runs, from the same all-MiniLM-L6-v2 directory.

  pip install -e '.[peers]'   # torch first, as the parity extra says
  python launch/peers/setfit_fortunes.py --sweep=workdirs/text_fortunes --shots=8 \
      --seeds=0,1,2,3,4 [--out=results/peers.runs.csv]

For each seed it reads ``method=setfit,shots=K,seed=S`` from the sweep's workdir: its
``split.json`` names the training examples (ids and their sha256, recorded beside each row).
Variants (``--variants``): ``max_length=32``, SetFit's own training arguments (pair
oversampling, one epoch, its learning rates, a logistic-regression head) at lowres_jax's
sequence length; ``defaults``, the same at the model's 256-token limit (measured at about
20 s per step of 16 pairs on the 2-core CPU, over an hour per run at 8 shots, so not run
there). Test: every fortune of the
run's categories in the test split. Rows are appended to ``--out``; a finished row is
skipped, so a stopped invocation resumes.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import peer_records  # noqa: E402  (launch/peers/, beside this script)

from lowres_jax.data import text_sources  # noqa: E402
from lowres_jax.weights import sources as weight_sources  # noqa: E402

PEER = "setfit"
VARIANTS = {"defaults": None, "max_length=32": 32}


def run_one(model_dir: str, train: tuple[list[str], np.ndarray], test: tuple[list[str],
            np.ndarray], seed: int, max_length: int | None) -> tuple[float, float]:
  """(test accuracy, seconds) of one SetFit run."""
  from datasets import Dataset
  from setfit import SetFitModel, Trainer, TrainingArguments
  start = time.perf_counter()
  model = SetFitModel.from_pretrained(model_dir)
  if max_length:  # TrainingArguments.max_length does not reach the body's tokenizer here.
    model.model_body.max_seq_length = max_length
  # No checkpoints (its default writes the whole model into ./checkpoints at the end).
  arguments = TrainingArguments(seed=seed, max_length=max_length, report_to="none",
                                show_progress_bar=False, save_strategy="no",
                                output_dir=os.path.join(tempfile.gettempdir(), "setfit_peer"))
  trainer = Trainer(model=model, args=arguments,
                    train_dataset=Dataset.from_dict({"text": train[0],
                                                     "label": train[1].tolist()}))
  trainer.train()
  predictions = np.asarray(model.predict(test[0], batch_size=64))
  return float(np.mean(predictions == test[1])), time.perf_counter() - start


def main() -> int:
  parser = peer_records.parser(__doc__, "text_fortunes", shots=8)
  parser.add_argument("--variants", default="max_length=32",
                      help=f"comma-separated, of {', '.join(VARIANTS)}")
  args = parser.parse_args()
  import setfit
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  versions = f"setfit {setfit.__version__}, torch {torch.__version__}"
  model_dir = weight_sources.resolve("package:all_minilm_l6_v2")
  ids, texts, labels = text_sources.load_texts("fortunes", "train", args.data_dir)
  by_id = dict(zip(ids.tolist(), range(len(ids))))
  _, test_texts, test_labels = text_sources.load_texts("fortunes", "test", args.data_dir)
  for seed in (int(s) for s in args.seeds.split(",")):
    run = peer_records.find_run(args.sweep, f"method=setfit,shots={args.shots},seed={seed},")
    split = peer_records.read_split(run)
    rows = [by_id[i] for i in split["train_ids"]]
    train = ([texts[i] for i in rows], labels[rows])
    keep = np.isin(test_labels, split["classes"])
    test = ([t for t, k in zip(test_texts, keep) if k], test_labels[keep])
    for variant in args.variants.split(","):
      max_length = VARIANTS[variant]
      if peer_records.done(args.out, PEER, variant, args.shots, seed):
        continue
      accuracy, seconds = run_one(model_dir, train, test, seed, max_length)
      peer_records.record(args.out, PEER, variant, "fortunes", args.shots, seed, run, split,
                          len(test[1]), accuracy, seconds, versions)
  return 0


if __name__ == "__main__":
  sys.exit(main())
