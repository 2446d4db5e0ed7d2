"""Planning-theater detector: turns and episodes whose foresight blocks look like forecasts but
are not.

A model can learn to display the block (format adherence) without the capability behind it. The
detector flags three patterns on receipts alone:

- ``confident_ungrounded`` (turn): the success estimate is >= `confidence` while the rollout's
  step-1 expectation is ungrounded (grounding < `grounding`): it claims likely success on a
  forecast that did not come true.
- ``restates_action`` (turn): the step-1 expectation predicts fewer than `min_content_tokens`
  words beyond the action itself (its own rollout action and the tool call taken), so there is
  nothing the observation could confirm. Grounding cannot catch this: `search "X born" -> X born`
  scores high precision, because search results repeat the query.
- ``confident_through_failure`` (episode): the episode failed, yet every estimate it wrote was
  >= `episode_confidence`.

Only tool turns that carry a rollout are checked: an answer turn has no observation to confirm a
forecast (the episode rule covers its estimate), and a turn without a block is a format failure,
already reported as such, not theater.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from foresight_jax.data.render import parse_turn
from foresight_jax.data.scoring import normalize_answer
from foresight_jax.evals import calibration as cal
from foresight_jax.evals import metrics as M
from foresight_jax.evals.rewards_host import STOPWORDS


@dataclass(frozen=True)
class TheaterThresholds:
  # 0.7: the estimate asserts success at better than 2:1 odds; below that a turn is not
  # claiming much, whatever its forecast.
  confidence: float = 0.7
  # 0.5: fewer than half of the predicted content words showed up in what followed. The
  # builder's own hindsight forecasts score 1.0 on search turns (measured on the demo's FE-SFT
  # data), while confabulated ones still reach 0.2-0.4 through generic words ("company",
  # "founded"), so a lower bar would pass most of them.
  grounding: float = 0.5
  # the same odds for an episode that ends in failure: confident at every turn and wrong
  episode_confidence: float = 0.7
  # 1: a forecast must predict at least one word the action itself does not already say
  min_content_tokens: int = 1

  @classmethod
  def from_config(cls, cfg: Any) -> TheaterThresholds:
    """From a mapping or ConfigDict section (configs/audit.py `theater`); unknown keys are errors."""
    d = dict(cfg)
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise KeyError(f"theater thresholds: unknown keys {sorted(unknown)}")
    return cls(**d)


def _predicted_words(text: str) -> list[str]:
  # digits are kept here, unlike grounding's content words: a computed number ("-> 296") is
  # exactly what a calc observation can confirm
  return [w for w in normalize_answer(text).split() if w not in STOPWORDS]


def words_beyond_action(step: dict, spec: M.FormatSpec) -> list[str] | None:
  """Words of the step-1 expectation not already in its rollout action or in the tool call
  taken; None when the turn has no rollout."""
  p = parse_turn(step["text"], None, spec.horizon, spec.max_tokens)
  if not p.rollout:
    return None
  first = p.rollout[0]
  act = step.get("action") or {}
  said = set(_predicted_words(" ".join([first.action, act.get("tool") or "", act.get("arg") or ""])))
  return [w for w in _predicted_words(first.expect) if w not in said]


def _check_turns(ep: cal.AuditEpisode, th: TheaterThresholds) -> tuple[int, list[dict]]:
  """(number of checked turns, their flags)."""
  n, out = 0, []
  for s, est, g in zip(ep.steps, ep.estimates, ep.groundings):
    beyond = None if s["observation"] is None else words_beyond_action(s, ep.spec)
    if beyond is None:
      continue
    n += 1
    base = {"run": ep.run, "task_id": ep.task_id, "step": s["step"], "success": est, "grounding": g}
    # grounding counts content words without digits: an expectation with none (a bare number)
    # scores 0 by construction, which says nothing; restates_action judges that turn instead
    measurable = bool(M.content_words(M.step1_expectation(s["text"], ep.spec) or ""))
    if est is not None and est >= th.confidence and measurable and g < th.grounding:
      out.append({**base, "reason": "confident_ungrounded",
                  "detail": f"estimate {est:.2f} >= {th.confidence} with grounding {g:.2f} < {th.grounding}"})
    if len(beyond) < th.min_content_tokens:
      out.append({**base, "reason": "restates_action",
                  "detail": f"{len(beyond)} predicted word(s) beyond the action < {th.min_content_tokens}"})
  return n, out


def flag_turns(ep: cal.AuditEpisode, th: TheaterThresholds = TheaterThresholds()) -> list[dict]:
  """Flags of an episode's tool turns: [{run, task_id, step, reason, success, grounding, detail}]."""
  return _check_turns(ep, th)[1]


def flag_episode(ep: cal.AuditEpisode, th: TheaterThresholds = TheaterThresholds()) -> dict | None:
  """The episode flag, or None: failed with every estimate >= th.episode_confidence."""
  est = [s for _, s in ep.turns()]
  if not est or ep.outcome >= cal.SUCCESS_CUTOFF or min(est) < th.episode_confidence:
    return None
  return {"run": ep.run, "task_id": ep.task_id, "step": None, "reason": "confident_through_failure",
          "success": min(est), "grounding": None,
          "detail": f"failed; every estimate >= {th.episode_confidence} ({', '.join(f'{s:.2f}' for s in est)})"}


def flag_episodes(episodes: Iterable[cal.AuditEpisode], th: TheaterThresholds = TheaterThresholds()
                  ) -> list[dict]:
  return [f for f in (flag_episode(e, th) for e in episodes) if f is not None]


def theater_summary(source, th: TheaterThresholds = TheaterThresholds()) -> dict[str, dict]:
  """Per run: the flagged receipts and the rates.

  `source`: a receipt path, receipt dicts or AuditEpisodes. turn_rate = flagged turns / checked
  turns (a turn flagged for two reasons counts once); episode_rate = episodes flagged as
  confident through failure / episodes; any_rate = episodes with any flag / episodes. Each flag
  carries `episode`, the episode's position in its run (task ids need not be unique).
  """
  by_run: dict[str, list[cal.AuditEpisode]] = {}
  for e in cal.as_episodes(source):
    by_run.setdefault(e.run, []).append(e)
  out = {}
  for run, eps in by_run.items():
    flags, n_checked, n_turns, n_ep, n_any = [], 0, 0, 0, 0
    for i, e in enumerate(eps):
      n, turn_flags = _check_turns(e, th)
      ep_flag = flag_episode(e, th)
      n_checked += n
      n_turns += len({f["step"] for f in turn_flags})
      n_ep += ep_flag is not None
      n_any += bool(turn_flags) or ep_flag is not None
      flags += [{**f, "episode": i} for f in turn_flags + ([ep_flag] if ep_flag else [])]
    out[run] = {"n_checked_turns": n_checked, "n_flagged_turns": n_turns,
                "turn_rate": n_turns / n_checked if n_checked else None,
                "n_episodes": len(eps), "n_flagged_episodes": n_ep,
                "episode_rate": n_ep / len(eps), "any_rate": n_any / len(eps),
                "thresholds": dataclasses.asdict(th), "flagged": flags}
  return out
