"""Bootstrap intervals against hand computations."""
import itertools

import numpy as np
import pytest

from foresight_jax.evals import bootstrap as B
from foresight_jax.evals.metrics import EpisodeFigures, aggregate


def unit(outcome, turn_ok=(True,), estimates=(), groundings=()):
  return EpisodeFigures(tuple(turn_ok), all(turn_ok), tuple(groundings), tuple(estimates), float(outcome))


def test_interval_with_given_indices_matches_hand_computation():
  units = [unit(0), unit(1), unit(1), unit(0, turn_ok=(False, True))]
  idx = np.array([[0, 0, 1, 1], [1, 2, 2, 3], [3, 3, 3, 0], [2, 2, 2, 2], [0, 1, 2, 3]])
  # by hand: accuracy of each row = 2/4, 3/4, 0/4, 4/4, 2/4; turn-level format of each row:
  # row 0: 4 turns all ok -> 1; row 1: 1,1,1,(0,1) -> 4/5; row 2: 3x(0,1) + 1 -> 4/7; row 3: 1; row 4: 4/5
  acc = [0.5, 0.75, 0.0, 1.0, 0.5]
  fmt = [1.0, 0.8, 4 / 7, 1.0, 0.8]
  got = B.intervals(units, indices=idx, keys=("accuracy", "format_turn"))
  # numpy's linear-interpolation percentile at 2.5 / 97.5 of 5 sorted values:
  # position p * (n - 1) = 0.1 and 3.9
  s = sorted(acc)
  assert got["accuracy"] == pytest.approx((s[0] + 0.1 * (s[1] - s[0]), s[3] + 0.9 * (s[4] - s[3])))
  s = sorted(fmt)
  assert got["format_turn"] == pytest.approx((s[0] + 0.1 * (s[1] - s[0]), s[3] + 0.9 * (s[4] - s[3])))


def test_exhaustive_resamples_give_the_exact_bootstrap_distribution():
  # outcomes (0, 1, 1): all 27 equally likely resamples; the mean takes 0, 1/3, 2/3, 1 with
  # probabilities 1/27, 6/27, 12/27, 8/27. Sorted, the 27 means are 0, 1/3 (x6), 2/3 (x12),
  # 1 (x8); the 2.5% point sits at position 0.025 * 26 = 0.65, i.e. 0.65 of the way from 0 to
  # 1/3, and the 97.5% point at 25.35, between two 1s.
  units = [unit(0), unit(1), unit(1)]
  idx = np.array(list(itertools.product(range(3), repeat=3)))
  lo, hi = B.intervals(units, indices=idx, keys=("accuracy",))["accuracy"]
  assert lo == pytest.approx(0.65 / 3) and hi == 1.0
  # a large random draw approaches the same quantiles
  lo_r, hi_r = B.intervals(units, n_resamples=4000, keys=("accuracy",))["accuracy"]
  assert hi_r == 1.0 and lo_r == pytest.approx(lo, abs=1 / 3)


def test_brier_skill_against_hand_computation():
  units = [unit(1, estimates=(0.9, 0.8)), unit(0, estimates=(0.2,)), unit(1, estimates=(0.6,))]
  m = aggregate(units)
  est, y = np.array([0.9, 0.8, 0.2, 0.6]), np.array([1, 1, 0, 1.0])
  brier = np.mean((est - y) ** 2)
  base = np.mean((0.75 - y) ** 2)
  assert m.brier == pytest.approx(brier) and m.brier_skill == pytest.approx(1 - brier / base)


def test_paired_difference_uses_the_same_tasks_and_detects_separation():
  a = [unit(1) for _ in range(30)]
  b = [unit(0) for _ in range(30)]
  d = B.paired_differences(a, b, keys=("accuracy",))["accuracy"]
  assert d == (1.0, 1.0, 1.0) and B.separated(d)
  same = B.paired_differences(a, a, keys=("accuracy",))["accuracy"]
  assert same == (0.0, 0.0, 0.0) and not B.separated(same)
  # a mixed pair whose difference straddles 0
  mixed_a = [unit(i % 2) for i in range(20)]
  mixed_b = [unit((i // 2) % 2) for i in range(20)]
  d = B.paired_differences(mixed_a, mixed_b, keys=("accuracy",))["accuracy"]
  assert d[1] < 0 < d[2] and not B.separated(d)
  with pytest.raises(ValueError, match="same tasks"):
    B.paired_differences(a, b[:3])


def test_undefined_figures_give_no_interval():
  units = [unit(1), unit(0)]  # no success estimates at all
  got = B.intervals(units, keys=("brier", "accuracy"))
  assert got["brier"] is None and got["accuracy"] is not None
