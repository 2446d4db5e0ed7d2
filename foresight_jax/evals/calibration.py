"""Calibration audit of success estimates: Brier, ECE (fixed and adaptive bins), AUROC, and the
confidence update, each pooled AND per turn index.

Why per turn: the first estimate is made before any evidence and the last one just before the
answer; pooling them hides whether the model gets better calibrated as observations arrive.
Why the confidence update: design.md §1 reads the sequence of estimates as the agent revising
its belief; a useful revision moves toward the outcome that later happens. A model that writes
the same number every turn has updates of exactly zero, reported as "flat", not as success.

Every estimate is paired with its episode's outcome (the same pairing as metrics.calibration).
Estimates are re-parsed from the stored turn text and outcomes re-scored exactly as
metrics.receipt_figures does (its per-episode figures are reused, not recomputed), so the pooled
figures here equal the comparison table's.

Outcomes are 0/1 (exact match, boxed integer); AUROC and "failure" read an outcome >= 0.5 as a
success so that a fractional score, should one appear, still splits into two classes.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foresight_jax.data.calibration import bin_index, brier, ece  # noqa: F401  (the fixed-bin figures, defined once)
from foresight_jax.evals import metrics as M
from foresight_jax.evals import receipts as rc

SUCCESS_CUTOFF = 0.5
FLAT = 1e-9  # estimates are written with two decimals: anything smaller is no move at all


# ---------------------------------------------------------------------------------------------
# Episodes as the audit sees them


@dataclass(frozen=True)
class AuditEpisode:
  """One episode's receipts plus the per-step facts the audit needs, each derived once."""
  run: str
  task_id: str
  steps: tuple[dict, ...]                 # step receipts, in step order
  receipt: dict                           # the closing episode receipt
  spec: M.FormatSpec
  estimates: tuple[float | None, ...]     # per step, re-parsed from the text (None: no estimate)
  groundings: tuple[float | None, ...]    # per step; None where no observation followed
  outcome: float                          # re-scored from the stored answer
  figures: M.EpisodeFigures               # the episode's figures as the comparison table has them

  def turns(self) -> list[tuple[int, float]]:
    """(step index, estimate) of every step that wrote an estimate."""
    return [(s["step"], e) for s, e in zip(self.steps, self.estimates) if e is not None]


def audit_episodes(source: str | Path | Iterable[dict], run: str | None = None,
                   spec: M.FormatSpec | None = None) -> list[AuditEpisode]:
  """Episodes of a receipt file (or receipt dicts), in file order."""
  recs = rc.read_receipts(source) if isinstance(source, (str, Path)) else list(source)
  out = []
  # receipt_figures groups with the same rc.group_episodes, so the two lists align one to one
  for (steps, ep), fig in zip(rc.group_episodes(recs, run), M.receipt_figures(recs, run, spec)):
    sp = spec or M.FormatSpec.from_json(ep.get("format_spec", {}))
    est = tuple(M.success_estimate(s["text"], sp) for s in steps)
    grounded = iter(fig.groundings)  # one per step followed by an observation, in order
    ground = tuple(None if s["observation"] is None else next(grounded) for s in steps)
    out.append(AuditEpisode(ep.get("run", ""), ep["task_id"], tuple(steps), ep, sp, est, ground,
                            float(fig.outcome), fig))
  return out


def as_episodes(source) -> list[AuditEpisode]:
  """AuditEpisodes from a receipt path, receipt dicts, or AuditEpisodes (returned as they are)."""
  source = list(source) if not isinstance(source, (str, Path)) else source
  if isinstance(source, list) and source and isinstance(source[0], AuditEpisode):
    return source
  return audit_episodes(source)


# ---------------------------------------------------------------------------------------------
# Figures on (estimate, outcome) pairs


def ece_adaptive(p, y, n_bins: int = 10) -> float:
  """ECE over equal-mass bins: estimates sorted, cut into `n_bins` runs of (nearly) equal count.

  Equal-width bins leave most bins empty when a model only writes a few values (0.1 and 0.9);
  equal-mass bins spend their resolution where the estimates are. A cut never splits equal
  estimates (it moves past the tie), so the figure does not depend on the order of the pairs.
  """
  p, y = np.asarray(p, float), np.asarray(y, float)
  n = len(p)
  if n == 0:
    raise ValueError("ece_adaptive: no estimates")
  order = np.argsort(p, kind="stable")
  p, y = p[order], y[order]
  cuts = []
  for k in range(1, n_bins):
    c = round(k * n / n_bins)
    while 0 < c < n and p[c] == p[c - 1]:
      c += 1
    if 0 < c < n and (not cuts or c > cuts[-1]):
      cuts.append(c)
  total = 0.0
  for lo, hi in zip([0] + cuts, cuts + [n]):
    total += (hi - lo) * abs(p[lo:hi].mean() - y[lo:hi].mean())
  return float(total / n)


def auroc(p, y) -> float | None:
  """Probability that a random success got a higher estimate than a random failure (ties count
  one half: the Mann-Whitney U with average ranks). None when either class is absent: with one
  class there is nothing to discriminate."""
  p = np.asarray(p, float)
  pos = np.asarray(y, float) >= SUCCESS_CUTOFF
  n_pos, n_neg = int(pos.sum()), int((~pos).sum())
  if n_pos == 0 or n_neg == 0:
    return None
  order = np.argsort(p, kind="stable")
  ranks = np.empty(len(p), float)
  sp = p[order]
  i = 0
  while i < len(sp):  # average rank (1-based) over each run of ties
    j = i
    while j + 1 < len(sp) and sp[j + 1] == sp[i]:
      j += 1
    ranks[order[i:j + 1]] = (i + j) / 2 + 1
    i = j + 1
  return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability_bins(p, y, n_bins: int = 10) -> list[dict]:
  """The equal-width bins behind ECE (for the reliability diagram): range, count, mean estimate,
  observed success frequency; empty bins included with None means."""
  p, y = np.asarray(p, float), np.asarray(y, float)
  b = bin_index(p, n_bins)
  out = []
  for k in range(n_bins):
    m = b == k
    out.append({"lo": k / n_bins, "hi": (k + 1) / n_bins, "n": int(m.sum()),
                "mean_estimate": float(p[m].mean()) if m.any() else None,
                "frequency": float(y[m].mean()) if m.any() else None})
  return out


def calibration_figures(p: Sequence[float], y: Sequence[float], n_bins: int = 10,
                        adaptive_bins: int = 10) -> dict:
  """{n, brier, ece, ece_adaptive, auroc, mean_estimate, base_rate}; None figures without pairs."""
  base = M.calibration(p, y, n_bins)  # n, Brier, 10-bin ECE, base rate: computed there once
  n = base["n_estimates"]
  return {"n": n, "brier": base["brier"], "ece": base["ece"],
          "ece_adaptive": ece_adaptive(p, y, adaptive_bins) if n else None,
          "auroc": auroc(p, y) if n else None,
          "mean_estimate": float(np.mean(p)) if n else None, "base_rate": base["base_rate"]}


# ---------------------------------------------------------------------------------------------
# Confidence update


def update_moves(turns: Sequence[tuple[int, float]], outcome: float) -> list[tuple[int, float]]:
  """(turn index, move) for each estimate after the first: move = |previous - y| - |this - y|,
  positive when the estimate moved toward the outcome y, negative when away, 0 when unchanged."""
  return [(t, abs(prev - outcome) - abs(cur - outcome))
          for (_, prev), (t, cur) in itertools.pairwise(turns)]


def _update_stats(moves: Sequence[float]) -> dict:
  m = np.asarray(moves, float)
  if m.size == 0:
    return {"n_updates": 0, "toward_rate": None, "away_rate": None, "flat_rate": None, "mean_move": None}
  return {"n_updates": int(m.size), "toward_rate": float((m > FLAT).mean()),
          "away_rate": float((m < -FLAT).mean()), "flat_rate": float((np.abs(m) <= FLAT).mean()),
          "mean_move": float(m.mean())}


def confidence_update(source) -> dict:
  """Pooled update figures over every consecutive pair of estimates, plus, per episode with at
  least two estimates, whether its last estimate ended closer to the outcome than its first
  (`episodes_closer_rate`)."""
  eps = as_episodes(source)
  moves, closer, n_eps = [], [], 0
  for e in eps:
    turns = e.turns()
    if len(turns) < 2:
      continue
    n_eps += 1
    moves += [m for _, m in update_moves(turns, e.outcome)]
    closer.append(abs(turns[-1][1] - e.outcome) < abs(turns[0][1] - e.outcome) - FLAT)
  return {**_update_stats(moves), "n_episodes": n_eps,
          "episodes_closer_rate": float(np.mean(closer)) if closer else None}


def episode_updates(ep: AuditEpisode) -> dict:
  """One episode's sequence, for the drill-down: estimates by turn and the move at each update."""
  turns = ep.turns()
  return {"turns": turns, "moves": update_moves(turns, ep.outcome), "outcome": ep.outcome}


# ---------------------------------------------------------------------------------------------
# Per turn index


def per_turn(source, n_bins: int = 10, adaptive_bins: int = 10) -> dict[int, dict]:
  """{turn index: calibration_figures of that turn's estimates + the update INTO that turn}.

  `source`: a receipt path, receipt dicts, or AuditEpisodes. Turn indices are the receipts'
  1-based step numbers; the update figures at turn t describe moves from each episode's previous
  estimate to its estimate at t (none at the first turn that carries one).
  """
  pairs: dict[int, list[tuple[float, float]]] = {}
  moves: dict[int, list[float]] = {}
  for e in as_episodes(source):
    turns = e.turns()
    for t, s in turns:
      pairs.setdefault(t, []).append((s, e.outcome))
    for t, m in update_moves(turns, e.outcome):
      moves.setdefault(t, []).append(m)
  out = {}
  for t in sorted(pairs):
    p, y = zip(*pairs[t])
    out[t] = {**calibration_figures(p, y, n_bins, adaptive_bins), **_update_stats(moves.get(t, []))}
  return out


def pooled(source, n_bins: int = 10, adaptive_bins: int = 10) -> dict:
  """calibration_figures over every estimate of every episode, plus the confidence update."""
  eps = as_episodes(source)
  pairs = [(s, e.outcome) for e in eps for _, s in e.turns()]
  p, y = ([a for a, _ in pairs], [b for _, b in pairs])
  return {**calibration_figures(p, y, n_bins, adaptive_bins), "update": confidence_update(eps)}
