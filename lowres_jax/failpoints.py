"""Named points where the chaos test kills this process, to prove a kill there loses nothing.

``launch/chaos_sweep.py`` sets ``LOWRES_JAX_FAILPOINT=name:hit[:delay_ms]``: at the ``hit``-th
time this process reaches the point ``name`` it is SIGKILLed, at once or ``delay_ms`` later
from a timer thread (which lands the kill inside the operation that follows the point, such as
an orbax save). ``name:hit:wait=PATH`` instead holds the process there until the file PATH
exists (and first creates PATH.held to say it is there): tests use it to act on a live run at a known point, whatever the machine's speed (a
run that "should still be training" by then is a race). Unset, a point costs one environment
lookup.

Points: ``checkpoint.save`` (before each checkpoint write), ``file.replace`` (an atomic file
written but not yet renamed into place), ``run.summary`` (a group trained and evaluated, the
next of its pending summaries not yet written), ``report.write`` (a sweep report's table written, its CSV and plot
not yet).
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time

ENV = "LOWRES_JAX_FAILPOINT"
_hits: collections.Counter = collections.Counter()


def hit(name: str) -> None:
  spec = os.environ.get(ENV)
  if not spec:
    return
  target, count, *delay = spec.split(":", 2)
  if target != name:
    return
  _hits[name] += 1
  if _hits[name] != int(count):
    return
  if delay and delay[0].startswith("wait="):
    release = delay[0].removeprefix("wait=")
    with open(release + ".held", "w"):  # Tells the test the process is held here now.
      pass
    while not os.path.exists(release):  # Signals still reach their handlers meanwhile.
      time.sleep(0.05)
  elif delay:
    timer = threading.Timer(float(delay[0]) / 1000, _kill)
    timer.daemon = True
    timer.start()
  else:
    _kill()


def _kill() -> None:
  os.kill(os.getpid(), signal.SIGKILL)
