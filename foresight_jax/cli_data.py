"""Data sub-commands of `foresight-jax`: world (generate), augment (foresight blocks), data-stats."""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time

from tqdm import tqdm


def _atomic_writer(path: str):
  """Write to PATH.partial and rename at the end: an interrupted run never leaves a torn file."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  return open(path + ".partial", "w", encoding="utf-8")


def _finish(f, path: str) -> None:
  f.close()
  os.replace(path + ".partial", path)


def _parse_weights(spec: str) -> dict[str, float]:
  out = {}
  for part in filter(None, spec.split(",")):
    name, _, w = part.partition("=")
    out[name.strip()] = float(w)
  return out


def _calibration_json(trajs) -> dict | None:
  """Brier / ECE of the success estimates present, against their trajectories' outcomes."""
  from foresight_jax.data.calibration import calibration_report
  from foresight_jax.data.foresight import block_pairs
  p, y = block_pairs(trajs)
  if not p:
    return None
  return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(calibration_report(p, y)).items()}


def cmd_world(args) -> int:
  from foresight_jax.data.generate import GenConfig, generate, make_worlds
  from foresight_jax.data.policies import NOISE
  policies = _parse_weights(args.policies)
  unknown = sorted(set(policies) - set(NOISE))
  if unknown:
    raise SystemExit(f"--policies: unknown policy {unknown}; known: {sorted(NOISE)}")
  from foresight_jax.data.world import WorldConfig
  if args.search_k < 1:
    raise SystemExit(f"--search-k must be >= 1, got {args.search_k}")
  cfg = GenConfig(seed=args.seed, n_worlds=args.n_worlds, math_fraction=args.math_fraction,
                  hops=tuple(int(h) for h in args.hops.split(",")), policies=policies,
                  world=WorldConfig(search_k=args.search_k))
  t0 = time.perf_counter()
  worlds = make_worlds(cfg)
  f = _atomic_writer(args.out)
  scores, domains = [], collections.Counter()
  for traj in tqdm(generate(cfg, args.n, start=args.start, worlds=worlds), total=args.n, unit="traj",
                   desc="world", disable=args.quiet):
    f.write(traj.dumps() + "\n")
    scores.append(traj.score)
    domains[traj.task.domain] += 1
  _finish(f, args.out)
  dt = time.perf_counter() - t0
  print(json.dumps({"out": args.out, "trajectories": len(scores), "domains": dict(domains),
                    "success_rate": round(statistics.fmean(scores), 4) if scores else None,
                    "seconds": round(dt, 2), "traj_per_s": round(len(scores) / dt, 1)}))
  return 0


def cmd_augment(args) -> int:
  from foresight_jax.data.foresight import ForesightConfig, SuccessEstimator, base_rate, build_blocks
  from foresight_jax.data.schema import read_trajectories
  trajs, report = read_trajectories(args.input, max_steps=args.max_steps)
  for p in report.problems[:args.show_problems]:
    print(f"rejected: {p}", file=sys.stderr)
  if len(report.problems) > args.show_problems:
    print(f"... and {len(report.problems) - args.show_problems} more problems", file=sys.stderr)
  cfg = ForesightConfig(variant=args.variant, rollout_horizon=args.horizon, rollout_max_tokens=args.max_tokens,
                        n_branches=args.branches, seed=args.seed, forecast_noise=args.forecast_noise)
  est = SuccessEstimator(cfg, base_rate=base_rate(trajs))
  f = _atomic_writer(args.out)
  built, methods = [], collections.Counter()

  def counting_estimator(traj, t):
    value, method = est(traj, t)
    methods[method] += 1
    return value, method

  for traj in tqdm(trajs, unit="traj", desc=f"augment[{args.variant}]", disable=args.quiet):
    out = build_blocks(traj, cfg, counting_estimator, world_of=est.world_of)
    f.write(out.dumps() + "\n")
    built.append(out)
  _finish(f, args.out)
  summary = {"out": args.out, "variant": args.variant, "written": len(built), "read": report.read,
             "rejected": report.rejected, "truncated": report.truncated,
             "rejected_reasons": dict(report.reasons), "success_estimates": dict(methods)}
  summary["calibration"] = _calibration_json(built)
  print(json.dumps(summary))
  return 0


def cmd_data_stats(args) -> int:
  from foresight_jax.data.render import render_text
  from foresight_jax.data.schema import read_trajectories
  tok = None
  if args.tokenizer:
    from foresight_jax.tokenizer import Tokenizer
    tok = Tokenizer.load(args.tokenizer)
  trajs, report = read_trajectories(args.input)
  by_domain, by_source = collections.Counter(), collections.Counter()
  lengths, steps, scores, with_blocks = [], [], [], 0
  for traj in tqdm(trajs, unit="traj", desc="stats", disable=args.quiet):
    text = render_text(traj)
    lengths.append(len(tok.encode(text)) if tok else len(text.split()))
    steps.append(len(traj.steps))
    scores.append(traj.score)
    by_domain[traj.task.domain] += 1
    by_source[traj.source] += 1
    with_blocks += any(s.foresight is not None for s in traj.steps)

  def dist(xs):
    if not xs:
      return None
    xs = sorted(xs)
    return {"mean": round(statistics.fmean(xs), 2), "p50": xs[len(xs) // 2],
            "p95": xs[min(len(xs) - 1, int(0.95 * len(xs)))], "max": xs[-1]}

  out = {"input": args.input, "read": report.read, "accepted": report.accepted, "rejected": report.rejected,
         "rejected_reasons": dict(report.reasons), "domains": dict(by_domain), "sources": dict(by_source),
         "token_unit": "tokenizer" if tok else "whitespace", "tokens": dist(lengths), "steps": dist(steps),
         "success_rate": round(statistics.fmean(scores), 4) if scores else None,
         "with_foresight_blocks": with_blocks}
  out["calibration"] = _calibration_json(trajs)
  print(json.dumps(out))
  return 0


def add_parsers(sub) -> None:
  from foresight_jax.data.world import WorldConfig  # stdlib-only module: cheap at parser build
  fmt = argparse.RawDescriptionHelpFormatter
  p = sub.add_parser("world", help="generate synthetic-world trajectories (JSONL)", formatter_class=fmt,
                     description=(
      "Generate agentic trajectories in the seeded synthetic world: 1-4 hop questions over fictional\n"
      "entities answered with a top-3 search tool, plus integer-answer math tasks, played by an expert\n"
      "and by noisy policies (wrong searches, early stops, wrong answers) so outcomes vary. Output is\n"
      "the trajectory JSONL schema of foresight_jax/data/schema.py; trajectory i depends only on\n"
      "(seed, i), so --start lets hosts generate disjoint shards."))
  p.add_argument("--out", required=True, help="output JSONL path")
  p.add_argument("-n", type=int, default=1000, help="number of trajectories")
  p.add_argument("--start", type=int, default=0, help="index of the first trajectory (sharding)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--n-worlds", type=int, default=4, help="distinct worlds the questions are spread over")
  p.add_argument("--math-fraction", type=float, default=0.3)
  p.add_argument("--hops", default="1,2,3,4", help="comma-separated hop counts to sample from")
  p.add_argument("--search-k", type=int, default=WorldConfig.search_k,
                 help="documents each search returns (recorded in every trajectory's world config)")
  p.add_argument("--policies", default="expert=0.4,mild=0.3,heavy=0.3", help="policy=weight,... mix")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  p.set_defaults(fn=cmd_world)

  p = sub.add_parser("augment", help="add foresight blocks to trajectories", formatter_class=fmt,
                     description=(
      "Add a foresight block before every action (design.md section 2). The rollout is built in\n"
      "hindsight from the next --horizon actions and what they actually observed, compressed to the\n"
      "salient sentence; the success estimate is a Monte-Carlo rate over --branches continuations of\n"
      "the world's noisy policies from the same prefix, (wins+1)/(n+2), or, where the world cannot\n"
      "be rebuilt, the outcome smoothed toward the base rate. Invalid input lines are reported with\n"
      "file:line:field and skipped; everything valid is written."))
  p.add_argument("input", help="trajectory JSONL")
  p.add_argument("--out", required=True)
  p.add_argument("--variant", default="full", choices=["none", "state", "full"],
                 help="none: no block; state: rollout only; full: rollout + success")
  p.add_argument("--horizon", type=int, default=3, help="rollout steps")
  p.add_argument("--max-tokens", type=int, default=64, help="rollout budget (whitespace tokens)")
  p.add_argument("--branches", type=int, default=8, help="Monte-Carlo branches per success estimate")
  p.add_argument("--forecast-noise", type=float, default=0.0,
                 help="probability that a rollout step names a wrong entity/value the context has not shown "
                      "yet (data.foresight.forecast_noise_lines: breaks the copy-the-forecast shortcut)")
  p.add_argument("--max-steps", type=int, default=None, help="truncate longer trajectories (counted)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--show-problems", type=int, default=20, help="rejected lines to print")
  p.add_argument("--quiet", action="store_true")
  p.set_defaults(fn=cmd_augment)

  p = sub.add_parser("data-stats", help="counts, lengths, success rate, calibration", formatter_class=fmt,
                     description=(
      "Summarise a trajectory JSONL as one JSON line: records read/accepted/rejected (with reasons),\n"
      "domains and sources, rendered token lengths (whitespace tokens, or --tokenizer's), steps per\n"
      "trajectory, success rate, and the Brier score / ECE of any success estimates present against\n"
      "the trajectories' outcomes (next to the constant base-rate predictor)."))
  p.add_argument("input")
  p.add_argument("--tokenizer", default=None, help="count tokens with this tokenizer (.model/.json/.gguf)")
  p.add_argument("--quiet", action="store_true")
  p.set_defaults(fn=cmd_data_stats)
