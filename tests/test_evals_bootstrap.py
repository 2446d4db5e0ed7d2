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
  d = B.paired_differences(b, a, keys=("accuracy",))["accuracy"]
  assert d == (-1.0, -1.0, -1.0) and B.separated(d)  # separated on either side of 0
  same = B.paired_differences(a, a, keys=("accuracy",))["accuracy"]
  assert same == (0.0, 0.0, 0.0) and not B.separated(same)
  # a mixed pair whose difference straddles 0
  mixed_a = [unit(i % 2) for i in range(20)]
  mixed_b = [unit((i // 2) % 2) for i in range(20)]
  d = B.paired_differences(mixed_a, mixed_b, keys=("accuracy",))["accuracy"]
  assert d[1] < 0 < d[2] and not B.separated(d)
  with pytest.raises(ValueError, match="same tasks"):
    B.paired_differences(a, b[:3])


def test_paired_difference_resamples_the_same_tasks_for_both_runs():
  """Given indices, each resample's difference is figure(a[idx]) - figure(b[idx]) for the SAME idx,
  by hand; and two runs that differ on few tasks are told apart, as unpaired intervals could not."""
  a = [unit(o) for o in (1, 1, 0, 1, 0)]
  b = [unit(o) for o in (1, 0, 0, 1, 1)]
  idx = np.array([[0, 1, 2, 3, 4], [1, 1, 1, 0, 2], [4, 4, 3, 2, 0], [0, 3, 3, 1, 4], [2, 2, 4, 4, 4]])
  oa, ob = np.array([1, 1, 0, 1, 0.]), np.array([1, 0, 0, 1, 1.])
  diffs = sorted(oa[r].mean() - ob[r].mean() for r in idx)  # 0, 0.6, -0.4, 0, -0.6
  point, lo, hi = B.paired_differences(a, b, keys=("accuracy",), indices=idx)["accuracy"]
  assert point == pytest.approx(0.0)
  assert (lo, hi) == pytest.approx((diffs[0] + 0.1 * (diffs[1] - diffs[0]), diffs[3] + 0.9 * (diffs[4] - diffs[3])))
  # 60 tasks: b equals a except on 6 tasks that a solves and b does not
  rng = np.random.default_rng(0)
  oa = rng.integers(0, 2, 60)
  ob = oa.copy()
  ob[np.flatnonzero(oa)[:6]] = 0
  d = B.paired_differences([unit(o) for o in oa], [unit(o) for o in ob], keys=("accuracy",))["accuracy"]
  assert d[0] == pytest.approx(0.1) and 0 < d[1] <= d[2] < 0.2 and B.separated(d)


def test_ece_by_hand_with_estimates_at_0_and_1():
  """Equal-width bins: 1.0 belongs to the last bin, 0.0 to the first; each bin's |mean estimate -
  frequency| weighted by its share of the estimates."""
  from foresight_jax.data import calibration as C
  assert C.bin_index([0.0, 0.05, 0.1, 0.95, 1.0]).tolist() == [0, 0, 1, 9, 9]
  p, y = [1.0, 0.05, 0.0, 0.95], [0, 1, 1, 1]
  # bin 9: estimates 1.0, 0.95 (mean 0.975) against 0, 1 (0.5); bin 0: 0.05, 0.0 (0.025) against 1, 1
  assert C.ece(p, y) == pytest.approx(0.5 * 0.475 + 0.5 * 0.975)
  assert C.brier(p, y) == pytest.approx((1 + 0.95 ** 2 + 1 + 0.05 ** 2) / 4)


def test_undefined_figures_give_no_interval():
  units = [unit(1), unit(0)]  # no success estimates at all
  got = B.intervals(units, keys=("brier", "accuracy"))
  assert got["brier"] is None and got["accuracy"] is not None
