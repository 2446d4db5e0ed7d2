"""Calibration of success estimates against outcomes: Brier, ECE, and a constant baseline.

The baseline is the constant predictor at the base rate of the same outcomes (the best
constant under Brier); an estimator only carries signal if it beats it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def brier(p, y) -> float:
  p, y = np.asarray(p, float), np.asarray(y, float)
  return float(np.mean((p - y) ** 2))


def bin_index(p, n_bins: int = 10) -> np.ndarray:
  """Equal-width bin of each estimate on [0, 1]; p = 1.0 goes in the last bin."""
  return np.minimum((np.asarray(p, float) * n_bins).astype(int), n_bins - 1)


def ece(p, y, n_bins: int = 10) -> float:
  """Expected calibration error, equal-width bins on [0, 1], weighted by bin size."""
  p, y = np.asarray(p, float), np.asarray(y, float)
  bins = bin_index(p, n_bins)
  total = 0.0
  for b in range(n_bins):
    m = bins == b
    if m.any():
      total += m.sum() * abs(p[m].mean() - y[m].mean())
  return float(total / len(p))


@dataclass(frozen=True)
class CalibrationReport:
  n: int
  base_rate: float
  brier: float
  brier_baseline: float  # constant predictor at the base rate
  skill: float           # 1 - brier / brier_baseline (> 0: beats the baseline)
  ece: float
  ece_baseline: float

  def __str__(self) -> str:
    return (f"n={self.n} base_rate={self.base_rate:.3f} brier={self.brier:.4f} "
            f"(baseline {self.brier_baseline:.4f}, skill {self.skill:+.3f}) "
            f"ece10={self.ece:.4f} (baseline {self.ece_baseline:.4f})")


def calibration_report(p, y, n_bins: int = 10) -> CalibrationReport:
  p, y = np.asarray(p, float), np.asarray(y, float)
  if len(p) == 0:
    raise ValueError("no estimates")
  b = float(y.mean())
  const = np.full_like(y, b)
  bb = brier(const, y)
  bs = brier(p, y)
  return CalibrationReport(n=len(p), base_rate=b, brier=bs, brier_baseline=bb,
                           skill=1.0 - bs / bb if bb > 0 else 0.0, ece=ece(p, y, n_bins),
                           ece_baseline=ece(const, y, n_bins))
