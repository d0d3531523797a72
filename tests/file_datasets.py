"""Writes real datasets as a user would bring them: class folders of PNG/JPEG files, and
texts as CSV or JSONL (tests of lowres_jax/data/user_files.py and of the CLI on them)."""

from __future__ import annotations

import csv
import json
import os
from typing import Sequence

import numpy as np


def write_image_folder(root: str, images: np.ndarray, labels: Sequence[int],
                       names: Sequence[str], formats: Sequence[str] = ("png",)) -> list[str]:
  """images[i] (uint8 HxWx1 or HxWx3) -> root/names[labels[i]]/i.FORMAT, the formats taking
  turns; returns the paths in the order of ``images``."""
  from PIL import Image
  paths = []
  for i, (image, label) in enumerate(zip(images, labels)):
    folder = os.path.join(root, names[int(label)])
    os.makedirs(folder, exist_ok=True)
    fmt = formats[i % len(formats)]
    path = os.path.join(folder, f"{i:05d}.{fmt}")
    pixels = image[..., 0] if image.shape[-1] == 1 else image
    Image.fromarray(pixels).save(path, quality=95) if fmt in ("jpg", "jpeg") else (
        Image.fromarray(pixels).save(path))
    paths.append(path)
  return paths


def write_texts(path: str, texts: Sequence[str], labels: Sequence, text_field: str = "text",
                label_field: str = "label", ids: Sequence[int] | None = None) -> str:
  """One row per text, as CSV or JSONL by the file's extension."""
  rows = []
  for i, (text, label) in enumerate(zip(texts, labels)):
    row = {text_field: text, label_field: label}
    if ids is not None:
      row["id"] = int(ids[i])
    rows.append(row)
  with open(path, "w", encoding="utf-8", newline="") as f:
    if path.endswith(".csv"):
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)
    else:
      f.writelines(json.dumps(row) + "\n" for row in rows)
  return path


def tiny_text_run(tmp_path) -> str:
  """A finished tiny all-MiniLM-L6-v2 run (configs/text_fortunes.py, tiny=1) on a two-class
  CSV of 24 texts ('science' and 'law'); returns its workdir."""
  from conftest import REPO
  from lowres_jax.config import load_module
  from lowres_jax.train import loop
  texts = [f"{word} story number {i}" for i in range(12) for word in ("space", "court")]
  path = write_texts(str(tmp_path / "t.csv"), texts, ["science", "law"] * 12)
  config = load_module(str(REPO / "configs" / "text_fortunes.py")).get_config(
      f"dataset=csv:{path},tiny=1")
  config.data.data_dir, config.cache_dir = str(tmp_path / "tfds"), str(tmp_path / "cache")
  loop.run(config, str(tmp_path / "run"), show_progress=False)
  return str(tmp_path / "run")
