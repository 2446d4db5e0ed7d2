"""The evaluation figures, kept SEPARATE because together they tell format from capability:

(a) format adherence: fraction of turns, and of episodes, whose text passes `check_format` for
    the variant (a model can learn the grammar without learning to forecast);
(b) forecast grounding: token precision (design.md §3: the share of the step-1 expectation's
    content words that occur in the observation that actually followed, counts clipped),
    averaged over turns followed by an observation; 0 for a missing block or an unparsable first
    step; token-F1 against the whole observation as a secondary figure (`grounding_f1`);
(c) calibration: Brier and ECE (10 bins) of every turn's success estimate against its episode's
    outcome, with the number of estimates (a run that stops writing estimates must not look
    well calibrated on three of them);
(d) task accuracy: mean outcome (EM after normalisation for search, boxed integer for math).

Plus `held_out_loss` over a held-out batch iterator with the trainer's eval step.

Every figure is computed two ways that share only the primitives: `metrics_from_episodes` from
the live episodes (full observations), `metrics_from_receipts` from the JSONL receipts alone
(format re-checked from the stored turn text, grounding re-scored from stored text where the
stored observation is complete, estimates re-parsed from the text, outcome re-scored from the
stored answer and gold answers). Tests assert the two agree.

Answer turns carry no grounding: no observation follows them, and "predicting" the answer one is
about to write would be free credit.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from foresight_jax.data import calibration as calib
from foresight_jax.data.render import check_format, parse_turn, render_observation
from foresight_jax.data.scoring import normalize_answer, score_answer
from foresight_jax.evals import receipts as rc


@dataclass(frozen=True)
class FormatSpec:
  """What `check_format` is asked: the variant's grammar and the rollout limits."""
  variant: str = "full"
  horizon: int = 3
  max_tokens: int = 64
  strict_decimals: bool = False

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict) -> "FormatSpec":
    return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


# ---------------------------------------------------------------------------------------------
# Primitives


def token_f1(pred: str, ref: str) -> float:
  """SQuAD token F1 after SQuAD normalisation (both empty: 1, one empty: 0)."""
  p, r = normalize_answer(pred).split(), normalize_answer(ref).split()
  if not p or not r:
    return float(p == r)
  common = sum((Counter(p) & Counter(r)).values())
  if common == 0:
    return 0.0
  prec, rec = common / len(p), common / len(r)
  return 2 * prec * rec / (prec + rec)


def step1_expectation(turn_text: str, spec: FormatSpec = FormatSpec()) -> str | None:
  """The expectation of the turn's first rollout step (`1. action -> expectation`), or None.

  Parsed leniently (variant None): a block that breaks the variant's grammar elsewhere still
  has a forecast worth scoring; format adherence is reported on its own.
  """
  p = parse_turn(turn_text, None, spec.horizon, spec.max_tokens)
  if not p.rollout:
    return None
  return p.rollout[0].expect.strip() or None


def content_words(text: str) -> list[str]:
  """SQuAD-normalised words that carry content: no stopword (rewards_host.STOPWORDS, the list the
  in-graph grounding reward uses), no digits-only word."""
  from foresight_jax.evals.rewards_host import STOPWORDS
  return [w for w in normalize_answer(text).split() if w not in STOPWORDS and not w.isdigit()]


def token_precision(pred: str, ref: str) -> float:
  """design.md §3: the fraction of `pred`'s content words found in `ref`, counts clipped as in
  BLEU (a word predicted twice must occur twice); 0 when `pred` has no content word."""
  p = content_words(pred)
  if not p:
    return 0.0
  return sum((Counter(p) & Counter(normalize_answer(ref).split())).values()) / len(p)


def grounding_score(expectation: str | None, observation: str) -> float:
  """Token precision of the step-1 expectation against the observation that followed (did what
  was predicted show up?); 0 without an expectation. The word-level text version of the RL
  reward's token-id precision (rl/rewards.py)."""
  return 0.0 if not expectation else token_precision(expectation, observation)


def grounding_f1(expectation: str | None, observation: str) -> float:
  """Token-F1 against the whole observation: design.md's secondary figure (low even for perfect
  forecasts, since three passages are far longer than a rollout step)."""
  return 0.0 if not expectation else token_f1(expectation, observation)


def success_estimate(turn_text: str, spec: FormatSpec = FormatSpec()) -> float | None:
  return parse_turn(turn_text, None, spec.horizon, spec.max_tokens).success


def turn_format_problems(turn_text: str, spec: FormatSpec) -> list[str]:
  # one turn on its own: it need not end the episode, so no final-answer requirement
  return check_format(turn_text, spec.variant, spec.horizon, spec.max_tokens,
                      require_final_answer=False, strict_decimals=spec.strict_decimals)


def response_text(turn_texts: Sequence[str], observations: Sequence[str | None]) -> str:
  """The episode's response as the model saw it: turns with their observations between."""
  return "".join(t + ("" if o is None else render_observation(o))
                 for t, o in zip(turn_texts, observations))


def episode_format_ok(turn_texts: Sequence[str], observations: Sequence[str | None],
                      spec: FormatSpec) -> bool:
  """The whole response passes `check_format`: every turn, and it ends with an answer."""
  text = response_text(turn_texts, observations)
  return not check_format(text, spec.variant, spec.horizon, spec.max_tokens,
                          require_final_answer=True, strict_decimals=spec.strict_decimals)


def calibration(estimates: Sequence[float], outcomes: Sequence[float], n_bins: int = 10) -> dict:
  """Brier and ECE of estimates against outcomes; None figures when there are no estimates."""
  n = len(estimates)
  if n == 0:
    return {"n_estimates": 0, "brier": None, "ece": None, "base_rate": None}
  return {"n_estimates": n, "brier": calib.brier(estimates, outcomes),
          "ece": calib.ece(estimates, outcomes, n_bins), "base_rate": float(np.mean(outcomes))}


# ---------------------------------------------------------------------------------------------
# Aggregation


@dataclass(frozen=True)
class EvalMetrics:
  n_episodes: int
  n_turns: int
  format_turn: float | None      # (a) fraction of turns passing check_format
  format_episode: float | None   # (a) fraction of whole episodes passing
  grounding: float | None        # (b) mean step-1 score over turns followed by an observation
  n_grounded: int
  brier: float | None            # (c)
  ece: float | None              # (c) 10 equal-width bins
  n_estimates: int
  base_rate: float | None        # mean outcome over the estimates' episodes (context for Brier)
  accuracy: float | None         # (d)
  held_out_loss: float | None = None
  brier_skill: float | None = None  # (c) 1 - Brier / Brier of the constant base-rate predictor
  grounding_f1: float | None = None  # (b) secondary: token-F1 against the whole observation

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclass(frozen=True)
class EpisodeFigures:
  """One episode's per-item values. Every figure is an aggregate of these, and the episode is
  the unit the bootstrap resamples (turns of one episode are not independent draws)."""
  turn_ok: tuple[bool, ...]
  episode_ok: bool
  groundings: tuple[float, ...]   # turns followed by an observation
  estimates: tuple[float, ...]    # every parsed success estimate
  outcome: float
  groundings_f1: tuple[float, ...] = ()


def _mean(xs: Sequence[float]) -> float | None:
  return float(np.mean(xs)) if len(xs) else None


def aggregate(units: Sequence[EpisodeFigures], n_bins: int = 10) -> EvalMetrics:
  """The figures of a set of episodes (each estimate is paired with its episode's outcome)."""
  turn_ok = [ok for u in units for ok in u.turn_ok]
  ground = [g for u in units for g in u.groundings]
  est = [(s, u.outcome) for u in units for s in u.estimates]
  cal = calibration([s for s, _ in est], [y for _, y in est], n_bins)
  skill = None
  if est:
    y = np.asarray([y for _, y in est], float)
    base = float(np.mean((y - y.mean()) ** 2))  # Brier of the constant predictor at the base rate
    skill = 1.0 - cal["brier"] / base if base > 0 else None  # undefined when every outcome is equal
  return EvalMetrics(
      n_episodes=len(units), n_turns=len(turn_ok), format_turn=_mean(turn_ok),
      format_episode=_mean([u.episode_ok for u in units]), grounding=_mean(ground),
      n_grounded=len(ground), brier=cal["brier"], ece=cal["ece"], n_estimates=cal["n_estimates"],
      base_rate=cal["base_rate"], brier_skill=skill, accuracy=_mean([u.outcome for u in units]),
      grounding_f1=_mean([g for u in units for g in u.groundings_f1]))


def episode_figures(episodes: Iterable[Any], spec: FormatSpec) -> list[EpisodeFigures]:
  """Per-episode values from live agent Episodes (duck-typed: .task, .turns, .score)."""
  out = []
  for ep in episodes:
    texts = [t.text for t in ep.turns]
    obs = [t.observation for t in ep.turns]
    out.append(EpisodeFigures(
        turn_ok=tuple(not turn_format_problems(t, spec) for t in texts),
        episode_ok=episode_format_ok(texts, obs, spec),
        groundings=tuple(grounding_score(step1_expectation(t, spec), o)
                         for t, o in zip(texts, obs) if o is not None),
        estimates=tuple(s for s in (success_estimate(t, spec) for t in texts) if s is not None),
        outcome=float(ep.score),
        groundings_f1=tuple(grounding_f1(step1_expectation(t, spec), o) for t, o in zip(texts, obs) if o is not None)))
  return out


def metrics_from_episodes(episodes: Iterable[Any], spec: FormatSpec, n_bins: int = 10
                          ) -> EvalMetrics:
  """Live figures from agent Episodes."""
  return aggregate(episode_figures(episodes, spec), n_bins)


def _receipt_grounding(step: dict, spec: FormatSpec, score=grounding_score, key: str = "grounding") -> float:
  obs = step["observation"]
  if len(obs) == step["observation_chars"] and rc.sha256(obs) == step["observation_sha256"]:
    return score(step1_expectation(step["text"], spec), obs)
  # truncated: the full text is gone, so the score written at run time is the figure of record
  return float(step.get(key) or 0.0)


def receipt_figures(source: str | Path | Iterable[dict], run: str | None = None,
                    spec: FormatSpec | None = None) -> list[EpisodeFigures]:
  """Per-episode values recomputed from receipts alone (a JSONL path or receipt dicts)."""
  recs = rc.read_receipts(source) if isinstance(source, (str, Path)) else list(source)
  out = []
  for steps, ep in rc.group_episodes(recs, run):
    sp = spec or FormatSpec.from_json(ep.get("format_spec", {}))
    texts = [s["text"] for s in steps]
    # observation content never changes the format verdict, so a truncated one is fine here
    obs = [s["observation"] for s in steps]
    out.append(EpisodeFigures(
        turn_ok=tuple(not turn_format_problems(t, sp) for t in texts),
        episode_ok=episode_format_ok(texts, obs, sp),
        groundings=tuple(_receipt_grounding(s, sp) for s in steps if s["observation"] is not None),
        estimates=tuple(v for v in (success_estimate(t, sp) for t in texts) if v is not None),
        outcome=0.0 if ep["answer"] is None else score_answer(ep["domain"], ep["answer"], ep["answers"],
                                                              ep.get("answer_match", "any")),
        groundings_f1=tuple(_receipt_grounding(s, sp, grounding_f1, "grounding_f1") for s in steps
                            if s["observation"] is not None)))
  return out


def metrics_from_receipts(source: str | Path | Iterable[dict], run: str | None = None,
                          spec: FormatSpec | None = None, n_bins: int = 10) -> EvalMetrics:
  """Recompute every figure from receipts alone.

  `spec` defaults to each episode's recorded `format_spec`; `run` selects one run of a file
  holding several.
  """
  return aggregate(receipt_figures(source, run, spec), n_bins)


# ---------------------------------------------------------------------------------------------
# pass@k / mean@k over n >= k samples per problem


def pass_at_k(n: int, c: int, k: int) -> float:
  """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al.
  2021), as the product 1 - prod_{i=n-c+1}^{n} (1 - k/i): the binomials overflow a float long
  before n gets large, the product never does. Raises ValueError unless 0 <= c <= n and
  1 <= k <= n (fewer samples than k cannot estimate pass@k)."""
  for name, v in (("n", n), ("c", c), ("k", k)):
    if isinstance(v, bool) or int(v) != v:
      raise ValueError(f"pass_at_k: {name} must be an integer, got {v!r}")
  n, c, k = int(n), int(c), int(k)
  if k < 1 or k > n:
    raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k} (draw at least k samples)")
  if not 0 <= c <= n:
    raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
  if n - c < k:  # every k-subset holds a correct sample
    return 1.0
  return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def mean_at_k(correct: Sequence[float]) -> float:
  """mean@k of one problem: the mean score of its samples (the expected accuracy of one draw)."""
  if not len(correct):
    raise ValueError("mean_at_k: no samples")
  return float(np.mean(np.asarray(correct, np.float64)))


# ---------------------------------------------------------------------------------------------
# Held-out loss


def held_out_loss(cfg, params, batches: Iterable[dict], *, max_batches: int | None = None,
                  eval_fn: Callable | None = None, mesh=None, loss_fn: Callable | None = None
                  ) -> dict:
  """Token-weighted mean loss over held-out batches ({"loss", "tokens", "batches"}).

  `eval_fn`: the trainer's `make_eval_step(cfg, mesh, param_shardings)` (then `mesh` is needed
  to shard batches); default: `train.step.eval_step` jitted here, single device. Weighting by
  each batch's token count makes the figure independent of how the held-out set is batched
  (the same rule as the training loop's periodic eval).
  """
  import jax

  from foresight_jax.train import losses
  from foresight_jax.train import step as step_lib
  loss_fn = loss_fn or losses.causal_lm_loss
  if eval_fn is None:
    eval_fn = _default_eval(cfg, loss_fn)
  tot = w = 0.0
  n = 0
  for batch in batches:
    if max_batches is not None and n >= max_batches:
      break
    dev, _ = step_lib.split_host_fields(batch)
    if mesh is not None:
      dev = step_lib.shard_batch(dev, mesh)
    m = jax.device_get(eval_fn(params, dev))
    tot += float(m["loss"]) * float(m["tokens"])
    w += float(m["tokens"])
    n += 1
  return {"loss": tot / w if w > 0 else math.nan, "tokens": w, "batches": n}


_EVAL_CACHE: dict = {}


def _default_eval(cfg, loss_fn):
  # one compiled program per (cfg, loss): repeated evaluations of a run do not recompile
  import functools

  import jax

  from foresight_jax.train import step as step_lib
  key = (cfg, loss_fn)
  if key not in _EVAL_CACHE:
    _EVAL_CACHE[key] = jax.jit(functools.partial(step_lib.eval_step, cfg, loss_fn=loss_fn))
  return _EVAL_CACHE[key]
