"""Search spaces for tuned hyperparameters, and how a space grows past an edge.

A tuned key gets a space, not a hand list: ``log_grid(lo, hi, points)`` (evenly spaced in log)
or ``choices(...)`` (any values). When validation picks a value at an edge of a numeric space,
the sweep asks the space for the next value outward (``beyond``), one step of the space's own
ratio (log grids, positive lists) or difference (other numeric lists), so the optimum ends up
inside what was searched or the report says it could not. Non-numeric choices never extend.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Mapping, Sequence

from lowres_jax.config import ConfigError

# Values are rounded to this many significant digits so that run names and settings read as
# typed (3e-05, not 2.9999999999999997e-05) and an extension lands on the same number on resume.
SIGNIFICANT_DIGITS = 3


def _round(value: float) -> float:
  return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


@dataclasses.dataclass(frozen=True)
class Space:
  """The values of one tuned key, in increasing order when numeric."""
  values: tuple
  step: float | None  # Ratio (geometric) or difference (arithmetic) between neighbours.
  geometric: bool
  integer: bool
  within: tuple[float, float] | None = None  # Where the key means anything (a decay < 1).

  def beyond(self, value: Any, searched: Sequence[Any]) -> Any | None:
    """The next value outward if ``value`` is the smallest or largest of ``searched``."""
    if self.step is None:
      return None
    numbers = sorted(searched)
    if value not in (numbers[0], numbers[-1]) or len(numbers) < 2:
      return None
    direction = 1 if value == numbers[-1] else -1
    if self.geometric:
      nxt = value * self.step ** direction
    else:
      nxt = value + self.step * direction
    nxt = round(nxt) if self.integer else _round(nxt)
    if self.integer and nxt < 1 <= value:  # An integer space (a rank) stays positive.
      return None
    if self.within and not self.within[0] <= nxt <= self.within[1]:
      return None  # Past what the key can mean: the pick stays at an edge, and is reported.
    return None if nxt == value else nxt

  def is_edge(self, value: Any, searched: Sequence[Any]) -> bool:
    """Whether ``value`` sits at the low or high end of ``searched`` (numeric spaces only)."""
    numbers = sorted(searched) if self.step is not None else []
    return len(numbers) >= 2 and value in (numbers[0], numbers[-1])


def log_grid(lo: float, hi: float, points: int) -> Space:
  """``points`` values from ``lo`` to ``hi``, evenly spaced in log."""
  if not (0 < lo < hi and points >= 2):
    raise ConfigError(f"log_grid({lo}, {hi}, {points}): need 0 < lo < hi and points >= 2")
  ratio = (hi / lo) ** (1 / (points - 1))
  values = tuple(_round(lo * ratio ** i) for i in range(points))
  return Space(values, ratio, geometric=True, integer=False)


def choices(*values: Any, within: tuple[float, float] | None = None) -> Space:
  """Listed values; numeric ones extend by their outermost ratio (all positive) or difference,
  never past ``within`` (lo, hi), the range where the key means anything."""
  if not values:
    raise ConfigError("choices() needs at least one value")
  numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
  if not numeric or len(values) < 2:
    return Space(tuple(values), None, geometric=False, integer=False)
  ordered = tuple(sorted(values))
  if len(set(ordered)) != len(ordered):
    raise ConfigError(f"choices{values} lists a value twice")
  integer = all(isinstance(v, int) for v in ordered)
  if within and not within[0] <= ordered[0] <= ordered[-1] <= within[1]:
    raise ConfigError(f"choices{values} lists values outside within={within}")
  if ordered[0] > 0:
    return Space(ordered, ordered[-1] / ordered[-2], geometric=True, integer=integer,
                 within=within)
  return Space(ordered, ordered[-1] - ordered[-2], geometric=False, integer=integer,
               within=within)


def as_space(value: Any) -> Space:
  """A Space as it is; a tuple or list as ``choices``; a single value as a one-point space."""
  if isinstance(value, Space):
    return value
  if isinstance(value, (list, tuple)):
    return choices(*value)
  return choices(value)


Setting = tuple[tuple[str, Any], ...]  # ((key, value), ...) sorted by key.


def grid(spaces: Mapping[str, Space]) -> list[Setting]:
  """Every combination of the spaces' initial values."""
  keys = sorted(spaces)
  return [tuple(zip(keys, combo)) for combo in itertools.product(*(spaces[k].values
                                                                    for k in keys))]


def trial_count(spaces: Mapping[str, Space]) -> int:
  return math.prod(len(s.values) for s in spaces.values())


def setting_text(setting: Setting) -> str:
  """'optim.lr=0.0001,head_l2=0.001': the form a report and a run name show."""
  return ",".join(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
                  for key, value in setting)


def extensions(spaces: Mapping[str, Space], chosen: Setting,
               searched: Sequence[Setting]) -> list[Setting]:
  """For each key of ``chosen`` at an edge of its searched values, the setting one step
  outward with the other keys as chosen (a line search from the pick)."""
  out = []
  for index, (key, value) in enumerate(chosen):
    tried = [dict(s)[key] for s in searched]
    nxt = spaces[key].beyond(value, tried)
    if nxt is not None:
      setting = chosen[:index] + ((key, nxt),) + chosen[index + 1:]
      if setting not in searched:
        out.append(setting)
  return out


def edges(spaces: Mapping[str, Space], chosen: Setting, searched: Sequence[Setting]) -> list[str]:
  """The keys of ``chosen`` still at an edge of what was searched."""
  return [key for key, value in chosen
          if spaces[key].is_edge(value, [dict(s)[key] for s in searched])]
