"""Starting a run from pretrained parameters.

``merge_pretrained`` follows big_vision's rule: loading is strict. Every parameter either comes
from the checkpoint with the same shape or is named by the re-init regex (the new task's head);
anything else is an error listing the missing, unexpected and mis-shaped names.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from typing import Any, Iterator

import numpy as np
from flax import traverse_util


class TransferError(ValueError):
  """Pretrained parameters do not fit the model."""


def merge_pretrained(fresh: Any, loaded: Any, reinit: str) -> Any:
  """``fresh`` params with every leaf not matching ``reinit`` replaced by ``loaded``'s."""
  regex = re.compile(reinit) if reinit else None
  fresh_flat = traverse_util.flatten_dict(fresh, sep="/")
  loaded_flat = traverse_util.flatten_dict(loaded, sep="/")
  reinit_names = {n for n in fresh_flat if regex and regex.search(n)}
  missing = sorted(n for n in fresh_flat if n not in loaded_flat and n not in reinit_names)
  unexpected = sorted(n for n in loaded_flat if n not in fresh_flat
                      and not (regex and regex.search(n)))
  mis_shaped = sorted(
      f"{n}: checkpoint {tuple(np.shape(loaded_flat[n]))} vs model {tuple(fresh_flat[n].shape)}"
      for n in fresh_flat
      if n in loaded_flat and n not in reinit_names
      and tuple(np.shape(loaded_flat[n])) != tuple(fresh_flat[n].shape))
  if missing or unexpected or mis_shaped:
    raise TransferError(
        "pretrained parameters do not fit the model (re-init regex "
        f"{reinit!r}).\n  missing from checkpoint: {missing}\n  unexpected in checkpoint: "
        f"{unexpected}\n  shape mismatch: {mis_shaped}\nCheck config.model matches the "
        "checkpoint's model, or widen config.reinit.")
  merged = {n: (v if n in reinit_names else np.asarray(loaded_flat[n], dtype=v.dtype))
            for n, v in fresh_flat.items()}
  return traverse_util.unflatten_dict(merged, sep="/")


@contextlib.contextmanager
def exclusive(directory: str, enabled: bool = True) -> Iterator[None]:
  """An inter-process lock on ``directory``, so parallel sweep shards pretrain a source once.

  Disabled in a multi-host run, whose processes train the source together: on a file system
  with cluster-wide locks, one holding the lock would wait forever for the others.
  """
  os.makedirs(directory, exist_ok=True)
  if not enabled:
    yield
    return
  with open(os.path.join(directory, ".lock"), "w") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)
