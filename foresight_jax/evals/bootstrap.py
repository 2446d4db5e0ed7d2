"""95% percentile-bootstrap intervals for the evaluation figures, and paired run differences.

The episode is the resampling unit: one episode's turns share a task and a context, so
resampling turns would pretend to more evidence than there is. Every figure (format, grounding,
Brier, skill, ECE, accuracy) is recomputed on each resample with the same `metrics.aggregate`
that gives the point figure, so an interval and its figure can never disagree on a definition.

Two runs evaluated on the same task list are compared PAIRED: the same resampled task indices
feed both runs, so the interval of the difference reflects the runs, not the luck of which tasks
were drawn. A difference whose interval contains 0 is "inside the intervals": the evaluation
cannot tell the runs apart on that figure.

    ci = intervals(units)                      # {"accuracy": (lo, hi), ...}
    d = paired_differences(units_a, units_b)   # {"accuracy": (a - b, lo, hi), ...}
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from foresight_jax.evals.metrics import EpisodeFigures, aggregate

FIGURES = ("format_turn", "grounding", "brier", "brier_skill", "ece", "accuracy")
N_RESAMPLES = 1000
LEVEL = 0.95


def resample_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
  """[n_resamples, n] indices drawn with replacement (seeded: intervals are reproducible)."""
  return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def percentile_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float] | None:
  """The central `level` interval of the resampled values (numpy's linear interpolation);
  None when no resample could compute the figure."""
  v = np.asarray([x for x in values if x is not None], float)
  if v.size == 0:
    return None
  tail = 100 * (1 - level) / 2
  lo, hi = np.percentile(v, [tail, 100 - tail])
  return float(lo), float(hi)


def _resampled(units: Sequence[EpisodeFigures], idx: np.ndarray, keys) -> dict[str, list]:
  out: dict[str, list] = {k: [] for k in keys}
  for row in idx:
    m = aggregate([units[i] for i in row]).to_dict()
    for k in keys:
      out[k].append(m[k])
  return out


def intervals(units: Sequence[EpisodeFigures], *, keys: Sequence[str] = FIGURES,
              n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0,
              indices: np.ndarray | None = None) -> dict[str, tuple[float, float] | None]:
  """Percentile interval of each figure over episode resamples (`indices` overrides the draw)."""
  if not units:
    return {k: None for k in keys}
  idx = resample_indices(len(units), n_resamples, seed) if indices is None else np.asarray(indices)
  vals = _resampled(units, idx, keys)
  return {k: percentile_interval(vals[k], level) for k in keys}


def paired_differences(a: Sequence[EpisodeFigures], b: Sequence[EpisodeFigures], *,
                       keys: Sequence[str] = FIGURES, n_resamples: int = N_RESAMPLES,
                       level: float = LEVEL, seed: int = 0, indices: np.ndarray | None = None
                       ) -> dict[str, tuple[float, float, float] | None]:
  """(figure(a) - figure(b), lo, hi) per figure, resampling the same task indices for both runs.
  a[i] and b[i] must be the same task."""
  if len(a) != len(b):
    raise ValueError(f"paired runs need the same tasks: {len(a)} vs {len(b)} episodes")
  if not a:
    return {k: None for k in keys}
  idx = resample_indices(len(a), n_resamples, seed) if indices is None else np.asarray(indices)
  va, vb = _resampled(a, idx, keys), _resampled(b, idx, keys)
  pa, pb = aggregate(a).to_dict(), aggregate(b).to_dict()
  out = {}
  for k in keys:
    if pa[k] is None or pb[k] is None:
      out[k] = None
      continue
    diffs = [x - y for x, y in zip(va[k], vb[k]) if x is not None and y is not None]
    ci = percentile_interval(diffs, level)
    out[k] = None if ci is None else (pa[k] - pb[k], *ci)
  return out


def separated(diff: tuple[float, float, float] | None) -> bool:
  """True when the difference's interval excludes 0 (the runs differ on this figure)."""
  return diff is not None and (diff[1] > 0 or diff[2] < 0)


__all__ = ["FIGURES", "intervals", "paired_differences", "percentile_interval", "resample_indices",
           "separated"]
