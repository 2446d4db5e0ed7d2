"""Synthetic trajectory generation (search world + math) and its throughput measurement.

`generate` is deterministic per seed: trajectory i depends only on (seed, i) and the worlds, so
shards can be generated independently (`start`), e.g. one per host.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Iterator

from foresight_jax.data.math_tasks import rollout_math, sample_math_task
from foresight_jax.data.policies import rollout_search
from foresight_jax.data.schema import Trajectory
from foresight_jax.data.world import SearchFn, World, WorldConfig


@dataclass(frozen=True)
class GenConfig:
  seed: int = 0
  n_worlds: int = 4            # questions are spread over several worlds (world seed = seed*1000+w)
  math_fraction: float = 0.3
  hops: tuple = (1, 2, 3, 4)
  policies: dict = field(default_factory=lambda: {"expert": 0.4, "mild": 0.3, "heavy": 0.3})
  world: WorldConfig = WorldConfig()


def make_worlds(cfg: GenConfig) -> list[World]:
  return [World(cfg.seed * 1000 + w, cfg.world) for w in range(cfg.n_worlds)]


def generate(cfg: GenConfig, n: int, start: int = 0, worlds: list[World] | None = None,
             search_fn: SearchFn | None = None) -> Iterator[Trajectory]:
  worlds = worlds or make_worlds(cfg)
  names, weights = zip(*sorted(cfg.policies.items()))
  for i in range(start, start + n):
    rng = random.Random(f"gen:{cfg.seed}:{i}")
    policy = rng.choices(names, weights)[0]
    if rng.random() < cfg.math_fraction:
      task = sample_math_task(rng, f"s{cfg.seed}-m{i}")
      yield rollout_math(task, policy, seed=cfg.seed)
    else:
      world = worlds[rng.randrange(len(worlds))]
      task = world.sample_question(rng, rng.choice(cfg.hops), f"s{cfg.seed}-q{i}")
      yield rollout_search(world, task, policy, seed=cfg.seed, search_fn=search_fn)


def measure_throughput(n: int = 2000, cfg: GenConfig = GenConfig()) -> dict:
  """Trajectories/s and approximate tokens/s (whitespace tokens of the rendered text, no blocks)
  for generation alone, worlds built beforehand (their cost is reported separately)."""
  from foresight_jax.data.render import render_text
  t0 = time.perf_counter()
  worlds = make_worlds(cfg)
  t1 = time.perf_counter()
  trajs = list(generate(cfg, n, worlds=worlds))
  t2 = time.perf_counter()
  tokens = sum(len(render_text(t).split()) for t in trajs)
  dt = t2 - t1
  return {"n": n, "seconds": dt, "traj_per_s": n / dt, "tokens_per_s": tokens / dt,
          "tokens_per_traj": tokens / n, "world_build_s": t1 - t0,
          "success_rate": sum(t.score for t in trajs) / n}


def measure_build(n: int = 500, cfg: GenConfig = GenConfig(), fcfg=None) -> dict:
  """Foresight-block building speed (MC branching dominates) and the calibration of the built
  success estimates: all blocks, blocks before a non-final action, and first blocks only
  (the final block's estimate is nearly the outcome itself, so it flatters the totals)."""
  from foresight_jax.data.calibration import calibration_report
  from foresight_jax.data.foresight import ForesightConfig, block_pairs, build_dataset
  fcfg = fcfg or ForesightConfig()
  worlds = make_worlds(cfg)
  trajs = list(generate(cfg, n, worlds=worlds))
  t0 = time.perf_counter()
  built = build_dataset(trajs, fcfg, worlds)
  dt = time.perf_counter() - t0
  nonfinal = [(s.foresight.success, tr.score) for tr in built for s in tr.steps
              if s.action.tool != "answer"]
  first = [(tr.steps[0].foresight.success, tr.score) for tr in built]
  return {"n": n, "build_traj_per_s": n / dt,
          "all": calibration_report(*block_pairs(built)),
          "non_final": calibration_report(*zip(*nonfinal)),
          "first": calibration_report(*zip(*first))}
