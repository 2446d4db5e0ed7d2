"""Scripted policies, the episode loop and Monte-Carlo branching.

A policy is `act(task, state, last_obs, rng, force_answer) -> (thought, Action, new_state)`.
`state` is a small JSON-able dict (the policy's belief) stored in each step's `meta`, so an
episode can be resumed from any prefix: that is what success estimation by branching needs
(foresight.py). Noise is applied only inside `act`, so a branch started from the prefix of a
trajectory sees exactly the state the original agent had.

Noise knobs (all probabilities, per decision):
  wrong_query  search for the wrong relation (math: slip a constant in the expression)
  misread      take the wrong name/value out of an observation
  stop_early   answer with the current intermediate entity/value before the chain is done
  wrong_answer write a wrong final answer although the right one is known
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Protocol

from foresight_jax.data.schema import Action, Step, Task, Trajectory
from foresight_jax.data.scoring import score_answer
from foresight_jax.data.world import (KIND_RELATIONS, RELATIONS, SearchFn, World, doc_titles,
                                      extract_objects)


@dataclass(frozen=True)
class Noise:
  wrong_query: float = 0.0
  misread: float = 0.0
  stop_early: float = 0.0
  wrong_answer: float = 0.0


NOISE = {
    "expert": Noise(),
    "mild": Noise(wrong_query=0.08, misread=0.06, stop_early=0.05, wrong_answer=0.05),
    "heavy": Noise(wrong_query=0.25, misread=0.2, stop_early=0.15, wrong_answer=0.15),
}


class Env(Protocol):
  def observe(self, action: Action) -> str: ...


class Policy(Protocol):
  def act(self, task: Task, state: dict | None, last_obs: str | None, rng: random.Random,
          force_answer: bool) -> tuple[str, Action, dict]: ...


def run_episode(env: Env, policy: Policy, task: Task, rng: random.Random, max_steps: int,
                prefix: list[Step] = (), source: str = "", meta: dict | None = None
                ) -> Trajectory:
  """Play `policy` from `prefix` (default: the start) until it answers or runs out of steps."""
  steps = list(prefix)
  done = bool(steps) and steps[-1].action.tool == "answer"
  state = dict(steps[-1].meta) if steps and steps[-1].meta else None
  last_obs = steps[-1].observation if steps else None
  while not done and len(steps) < max_steps:
    thought, action, state = policy.act(task, state, last_obs, rng,
                                        force_answer=len(steps) == max_steps - 1)
    done = action.tool == "answer"
    last_obs = None if done else env.observe(action)
    steps.append(Step(thought, action, last_obs, meta=state))
  answer = steps[-1].action.arg if done else None
  score = score_answer(task.domain, answer, task.answers) if answer is not None else 0.0
  return Trajectory(task, steps, score, source, meta)


def branch_scores(env: Env, policy: Policy, traj: Trajectory, t: int, n: int, seed: int | str,
                  max_steps: int) -> list[float]:
  """Outcomes of `n` continuations of `policy` from the state after step t of `traj`."""
  prefix = traj.steps[: t + 1]
  if prefix[-1].action.tool == "answer":
    return [traj.score] * n  # terminal: every continuation is the trajectory itself
  return [run_episode(env, policy, traj.task, random.Random(f"{seed}:{traj.task.id}:{t}:{b}"),
                      max_steps, prefix).score for b in range(n)]


# ---------------------------------------------------------------------------------------------
# Search


@dataclass
class SearchEnv:
  world: World
  search_fn: SearchFn | None = None  # e.g. a BM25 or dense retriever; default: world.search
  k: int | None = None  # documents per search; None: the world's config.search_k

  def observe(self, action: Action) -> str:
    return self.world.search_text(action.arg, self.k, self.search_fn)


@dataclass(frozen=True)
class SearchPolicy:
  """Hop-by-hop sub-question searches; reads each hop's object out of the returned passages.

  State: hop (relations resolved so far), entity (current belief), asked (relation the last
  query asked for), retries (failed extractions at this hop).
  """
  noise: Noise = Noise()
  max_retries: int = 1

  def act(self, task, state, last_obs, rng, force_answer):
    rels, kinds = task.meta["relations"], task.meta["kinds"]
    nz = self.noise
    if state is None:
      state = {"hop": 0, "entity": task.meta["start"], "asked": None, "retries": 0}
      # the plan in the order the hops are resolved (the question nests them inside out); a
      # restatement of the whole nested question ("the employer of the mayor of the birthplace of
      # ...") is what small models loop on, and the plan is what each later hop needs
      head = f"Plan: {', '.join(RELATIONS[r].desc for r in rels)}. "
    else:
      state, head = dict(state), ""
      found = extract_objects(last_obs, state["entity"], state["asked"]) if last_obs else []
      if found:
        obj = found[0]
        others = [x for x in doc_titles(last_obs) if x != obj]
        if others and rng.random() < nz.misread:
          obj = rng.choice(others)
        head = (f"The results say the {RELATIONS[state['asked']].desc} of {state['entity']} is "
                f"{obj}. ")
        state.update(hop=state["hop"] + 1, entity=obj, retries=0)
      else:
        state["retries"] += 1
        head = (f"The results do not state the {RELATIONS[state['asked']].desc} of "
                f"{state['entity']}. ")
    hop, ent = state["hop"], state["entity"]
    if hop >= len(rels) or force_answer or state["retries"] > self.max_retries or (
        hop >= 1 and rng.random() < nz.stop_early):
      ans = ent
      titles = [x for x in doc_titles(last_obs or "") if x != ent]
      if titles and rng.random() < nz.wrong_answer:
        ans = rng.choice(titles)
      return head + f"So the answer is {ans}.", Action("answer", ans), {**state, "asked": None}
    rel = rels[hop]
    if state["retries"]:
      query = ent  # retry with the bare name: the entity's own page ranks first
    else:
      wrong = [r for r in KIND_RELATIONS[kinds[hop]] if r != rel]
      if wrong and rng.random() < nz.wrong_query:
        rel = rng.choice(wrong)
      query = f"{ent} {RELATIONS[rel].keyword}"
    thought = head + f"Next I need the {RELATIONS[rel].desc} of {ent}."
    return thought, Action("search", query), {**state, "asked": rel}


def policy_for(domain: str, noise: Noise) -> Policy:
  if domain == "math":
    from foresight_jax.data.math_tasks import MathPolicy
    return MathPolicy(noise)
  return SearchPolicy(noise)


def noise_from_meta(meta: dict | None, default: str = "mild") -> Noise:
  """The noise a trajectory was generated with (meta['noise']), else a named preset."""
  n = (meta or {}).get("noise")
  if isinstance(n, dict):
    fields = {f.name for f in dataclasses.fields(Noise)}
    return Noise(**{k: float(v) for k, v in n.items() if k in fields})
  return NOISE[n if isinstance(n, str) and n in NOISE else default]


def rollout_search(world: World, task: Task, noise: Noise | str = "expert", seed: int | str = 0,
                   max_steps: int | None = None, search_fn: SearchFn | None = None
                   ) -> Trajectory:
  """One search trajectory for `task` in `world` (max_steps default: hops + 3)."""
  name = noise if isinstance(noise, str) else "custom"
  noise = NOISE[noise] if isinstance(noise, str) else noise
  max_steps = max_steps or len(task.meta["relations"]) + 3
  return run_episode(SearchEnv(world, search_fn), SearchPolicy(noise), task,
                     random.Random(f"search:{seed}:{task.id}"), max_steps,
                     source=f"synthetic-world/seed={world.seed}/policy={name}",
                     meta={"noise": dataclasses.asdict(noise), "policy": name,
                           "world_seed": world.seed,
                           "world_config": dataclasses.asdict(world.config),
                           "max_steps": max_steps})

