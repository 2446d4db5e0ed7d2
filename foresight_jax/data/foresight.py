"""Foresight-block builder for mid-training data (design.md §2).

For the block written before action t of a trajectory that really happened:

- rollout: in hindsight, the next `rollout_horizon` actions (t, t+1, ...) with the salient
  content of the observation each one actually got, `k. search "q" -> <sentence>`,
  `k. calc "e" -> <value>`, `k. answer -> <answer>`, capped at `rollout_max_tokens` whitespace
  tokens. The salient sentence of a search result is the one that carries the fact the agent
  used next: sentences sharing words with both the current query and the NEXT action (the next
  query names the entity just found; the answer names the final one) first, then by overlap
  of names, then of all words (next action counted twice); ties go to the earlier sentence
  (the higher-ranked document), so compression is deterministic.
- success: Monte-Carlo estimate from the state after step t (the planned action taken and its
  observation seen): n branches of the trajectory's own noisy policy, (wins + 1) / (n + 2).
  Conditioning on the action makes the number "the chance that this plan ends correct".
  Without a world/plan (real data), the outcome y smoothed toward the dataset base rate b,
  (y * (t + 1) + b * m) / (t + 1 + m): later blocks lean more on the outcome, as evidence would.
- variants: none (no block), state (rollout only), full (rollout + success).
"""
from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from foresight_jax.data import policies
from foresight_jax.data.math_tasks import MathEnv, perturb
from foresight_jax.data.schema import Foresight, Trajectory
from foresight_jax.data.scoring import extract_boxed
from foresight_jax.data.world import SearchFn, World, WorldConfig, split_docs
from foresight_jax.tokenizer.tokens import TAG_NAMES

VARIANTS = ("none", "state", "full")
_STOP = frozenset("a an the of in on at by for to and or is was are were what who which where "
                  "its it as with from that this".split())
_TAG = re.compile(r"</?(" + "|".join(TAG_NAMES) + r")>")


@dataclass(frozen=True)
class ForesightConfig:
  variant: str = "full"
  rollout_horizon: int = 3
  rollout_max_tokens: int = 64
  n_branches: int = 8
  prior_strength: float = 2.0  # m in the no-world fallback
  seed: int = 0
  default_noise: str = "mild"  # branch policy when a trajectory does not record its own
  # the probability that a rollout step's expectation names a wrong entity (search) or value (calc)
  # where the truth was not yet in the context (`forecast_noise_lines`); 0 = pure hindsight
  forecast_noise: float = 0.0

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"variant {self.variant!r} not in {VARIANTS}")
    if not 0.0 <= self.forecast_noise <= 1.0:
      raise ValueError(f"forecast_noise must be in [0, 1], got {self.forecast_noise}")


# ---------------------------------------------------------------------------------------------
# Rollout compression


def _content(text: str) -> set[str]:
  return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}


def _names(text: str) -> set[str]:
  """Content tokens of capitalised words (tokenised like _content, so the sets compare)."""
  caps = " ".join(re.findall(r"\b[A-Z][A-Za-z0-9'-]*", text))
  return _content(caps)


def _clean(text: str) -> str:
  """One line, no protocol tags: rollout lines are line-based and must not close a block."""
  return " ".join(_TAG.sub(" ", text).split())


def salient_sentence(observation: str, query: str, hint: str = "") -> str:
  """The sentence of the retrieved passages that carries the needed fact (see module doc)."""
  docs = split_docs(observation) or [("", observation)]
  sents = [s for _, text in docs for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
  if not sents:
    return _clean(observation)
  h, q = _content(hint), _content(query)
  hn, qn = _names(hint) or h, _names(query) or q

  def key(i):
    words = _content(sents[i])
    # A sentence naming both the queried entity and what came next is the bridging fact
    # ("X lies in Y"); it beats sentences that only share words with one side ("The capital
    # of Y is Z", "Y is a country"), whatever the counts. Names (capitalised words) decide
    # bridging so relation words like "country" do not.
    bridge = bool(words & hn) and bool(words & qn)
    return (bridge, len(words & hn) + len(words & qn), 2 * len(words & h) + len(words & q), -i)

  return _clean(sents[max(range(len(sents)), key=key)])


def _item(traj: Trajectory, j: int) -> tuple[str, str]:
  """(action head, salient content) of step j, e.g. ('search "X birthplace"', 'X was born...')."""
  step = traj.steps[j]
  a = step.action
  if a.tool == "answer":
    return "answer", _clean(extract_boxed(a.arg) or a.arg)
  if a.tool == "calc":
    return f'calc "{_clean(a.arg)}"', _clean(step.observation or "")
  nxt = traj.steps[j + 1].action.arg if j + 1 < len(traj.steps) else ""
  return f'search "{_clean(a.arg)}"', salient_sentence(step.observation or "", a.arg, nxt)


def rollout_lines(traj: Trajectory, t: int, horizon: int = 3, max_tokens: int = 64) -> list[str]:
  """Unnumbered rollout lines for the block before step t; numbered they fit `max_tokens`."""
  lines, budget = [], max_tokens
  for k, j in enumerate(range(t, min(t + horizon, len(traj.steps))), 1):
    head, sal = _item(traj, j)
    head_toks = f"{k}. {head} ->".split()
    if len(head_toks) + 1 > budget:
      if k == 1:  # never an empty rollout: cut the action itself (a very long query)
        words = head.split()[: max(1, budget - 3)]
        lines.append(" ".join(words) + " -> " + (sal.split() or ["?"])[0])
      break
    sal_toks = sal.split()[: budget - len(head_toks)] or ["(nothing)"]
    budget -= len(head_toks) + len(sal_toks)
    lines.append(f"{head} -> {' '.join(sal_toks)}")
  return lines


def forecast_noise_lines(lines: list[str], traj: Trajectory, t: int, cfg: ForesightConfig,
                         world: World | None) -> list[str]:
  """`lines` with each step's expectation, with probability cfg.forecast_noise, naming a wrong
  entity of the same kind (search; every world entity in it that the context before step t has
  not shown) or a perturbed number (calc). Answer steps are left alone: their content was read.

  Why: a pure hindsight rollout always holds the fact the next thought reads out, so a model
  learns to copy it from its own forecast instead of reading the observation. Measured on the cpu
  demo's models (teacher-forced, BUILD_NOTES): with a wrong forecast before a correct observation,
  40 of 40 read-outs followed the forecast; without a forecast, the observation's fact was no
  likelier than a made-up name. At test time a forecast of an unseen fact is a guess, so the
  reading skill is the one that matters."""
  if cfg.forecast_noise <= 0:
    return lines
  rng = random.Random(f"forecast-noise:{cfg.seed}:{traj.task.id}:{t}")
  seen = " ".join([traj.task.question] + [s.observation or "" for s in traj.steps[:t]])
  out = []
  for line in lines:
    head, sep, sal = line.partition(" -> ")
    if not sep or head.startswith("answer") or rng.random() >= cfg.forecast_noise:
      out.append(line)
    elif head.startswith("calc"):
      out.append(head + sep + re.sub(r"\d+", lambda m: str(perturb(rng, int(m.group()))), sal, count=1))
    else:
      # the unseen entities of the original expectation, longest first (no partial overlaps); a
      # name just put in is never itself replaced again
      unseen = [n for n in sorted(world.entities, key=len, reverse=True) if n in sal and n not in seen
                and re.search(rf"\b{re.escape(n)}\b", sal)] if world is not None else []
      for name in unseen:
        others = [n for n in world.by_kind[world.entities[name].kind] if n != name and n not in sal]
        if others:
          sal = re.sub(rf"\b{re.escape(name)}\b", rng.choice(others), sal)
      out.append(head + sep + sal)
  return out


# ---------------------------------------------------------------------------------------------
# Success estimates


@dataclass
class SuccessEstimator:
  """Callable (traj, t) -> (estimate, method); method is "mc" or "prior"."""
  cfg: ForesightConfig = ForesightConfig()
  worlds: dict = field(default_factory=dict)  # world seed -> World
  base_rate: float = 0.5
  search_fn: SearchFn | None = None
  rebuild_worlds: bool = True  # rebuild a missing world from the seed/config in the metadata

  def env_for(self, traj: Trajectory, t: int):
    meta = traj.task.meta or {}
    if traj.steps[t].meta is None:
      return None  # no recorded policy state: cannot resume this prefix
    if traj.task.domain == "math":
      return MathEnv() if "plan" in meta else None
    world = self.world_of(traj)
    if world is None or "relations" not in meta:
      return None
    return policies.SearchEnv(world, self.search_fn)

  def world_of(self, traj: Trajectory) -> World | None:
    """The trajectory's world: given, or rebuilt from its seed and config (worlds are pure
    functions of both), accepted only if it really holds the task's relation chain."""
    seed = (traj.task.meta or {}).get("world_seed")
    if seed is None:
      return None
    if seed not in self.worlds and self.rebuild_worlds:
      try:
        cfg = WorldConfig(**((traj.meta or {}).get("world_config") or {}))
      except TypeError:
        return None
      self.worlds[seed] = World(seed, cfg)
    world = self.worlds.get(seed)
    path, rels = traj.task.meta.get("path", []), traj.task.meta.get("relations", [])
    ok = world is not None and len(path) == len(rels) + 1 and all(
        world.entities.get(a) is not None and world.entities[a].rel.get(r) == b
        for a, r, b in zip(path, rels, path[1:]))
    return world if ok else None

  def __call__(self, traj: Trajectory, t: int) -> tuple[float, str]:
    env = self.env_for(traj, t)
    if env is None:
      y, m, b = traj.score, self.cfg.prior_strength, self.base_rate
      return (y * (t + 1) + b * m) / (t + 1 + m), "prior"
    policy = policies.policy_for(traj.task.domain,
                                 policies.noise_from_meta(traj.meta, self.cfg.default_noise))
    max_steps = (traj.meta or {}).get("max_steps") or len(traj.steps) + 3
    scores = policies.branch_scores(env, policy, traj, t, self.cfg.n_branches, self.cfg.seed,
                                    max_steps)
    return (sum(scores) + 1.0) / (len(scores) + 2.0), "mc"


def build_blocks(traj: Trajectory, cfg: ForesightConfig,
                 estimator: Callable[[Trajectory, int], tuple[float, str]] | None = None,
                 world_of: Callable[[Trajectory], World | None] | None = None) -> Trajectory:
  """A copy of `traj` whose steps carry the blocks of `cfg.variant` (none strips them).
  `world_of` finds a trajectory's world for cfg.forecast_noise (default: rebuilt from its seed, once
  per call; `build_dataset` and `augment` pass their estimator's cached lookup)."""
  if cfg.variant != "full":
    estimator = None
  elif estimator is None:
    estimator = SuccessEstimator(cfg)
  world = None
  if cfg.variant != "none" and cfg.forecast_noise > 0 and traj.task.domain != "math":
    world = (world_of or SuccessEstimator(cfg).world_of)(traj)
  steps = []
  for t, step in enumerate(traj.steps):
    fs = None
    if cfg.variant != "none":
      success = round(estimator(traj, t)[0], 2) if estimator else None
      lines = rollout_lines(traj, t, cfg.rollout_horizon, cfg.rollout_max_tokens)
      fs = Foresight(forecast_noise_lines(lines, traj, t, cfg, world), success)
    steps.append(dataclasses.replace(step, foresight=fs))
  return dataclasses.replace(traj, steps=steps)


def base_rate(trajs: Iterable[Trajectory]) -> float:
  scores = [t.score for t in trajs]
  return sum(scores) / len(scores) if scores else 0.5


def build_dataset(trajs: list[Trajectory], cfg: ForesightConfig,
                  worlds: Iterable[World] = (), search_fn: SearchFn | None = None
                  ) -> list[Trajectory]:
  """Blocks for every trajectory; failures are kept (calibration needs them, design.md §2)."""
  est = SuccessEstimator(cfg, {w.seed: w for w in worlds}, base_rate(trajs), search_fn)
  return [build_blocks(t, cfg, est, world_of=est.world_of) for t in trajs]


def block_pairs(trajs: Iterable[Trajectory]) -> tuple[list[float], list[float]]:
  """(success estimates, outcome of their trajectory) over all blocks, for calibration."""
  p, y = [], []
  for tr in trajs:
    for s in tr.steps:
      if s.foresight is not None and s.foresight.success is not None:
        p.append(s.foresight.success)
        y.append(tr.score)
  return p, y


def strip_meta(traj: Trajectory) -> Trajectory:
  """Drop policy-state meta from steps (e.g. before publishing data built with it)."""
  return dataclasses.replace(traj, steps=[dataclasses.replace(s, meta=None) for s in traj.steps])


__all__ = ["ForesightConfig", "SuccessEstimator", "VARIANTS", "base_rate", "block_pairs",
           "build_blocks", "build_dataset", "forecast_noise_lines", "rollout_lines", "salient_sentence", "strip_meta"]
