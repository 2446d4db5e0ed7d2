"""Synthetic-world generation speed and the calibration of built success estimates. One JSON line.

  python benchmarks/data_generation.py --n 5000 --build-n 1000
Calibration is reported over all blocks, blocks before a non-final action, and first blocks only
(the final block's estimate is almost the outcome itself, so it flatters the totals).
"""
from __future__ import annotations

import argparse
import json

from foresight_jax.data.generate import GenConfig, measure_build, measure_throughput


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--n", type=int, default=5000, help="trajectories for the generation-speed figure")
  ap.add_argument("--build-n", type=int, default=1000, help="trajectories for block building")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args()
  cfg = GenConfig(seed=args.seed)
  gen = measure_throughput(args.n, cfg)
  build = measure_build(args.build_n, cfg)
  rec = {"bench": "data_generation", **{f"gen_{k}": v for k, v in gen.items()},
         "build_traj_per_s": build["build_traj_per_s"]}
  for cut in ("all", "non_final", "first"):
    r = build[cut]
    rec[f"calib_{cut}"] = {"n": r.n, "brier": round(r.brier, 4), "brier_const_baseline": round(r.brier_baseline, 4),
                           "skill": round(r.skill, 3), "ece10": round(r.ece, 4)}
  print(json.dumps(rec))


if __name__ == "__main__":
  main()
