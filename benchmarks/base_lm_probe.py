"""The cpu demo's base-LM stage alone (`foresight-jax demo`, step 2), with stage overrides; prints
its training-loss curve as means over 25 steps, the last one the figure BUILD_NOTES compares
("The base LM's initial scale"). The loss of the last 100 steps falls as the model learns to copy
names it has never seen, the skill every later stage needs.

  python benchmarks/base_lm_probe.py /tmp/base_a
  python benchmarks/base_lm_probe.py /tmp/base_b model.config.initializer_range=0.02
  python benchmarks/base_lm_probe.py /tmp/base_c optim.learning_rate=2e-3 train.steps=600

Overrides are KEY=VALUE stage config keys (values parsed as JSON), applied over the demo's own.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("out", help="the stage's workdir (metrics.jsonl is read from there)")
  ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
  args = ap.parse_args()

  from foresight_jax import demo
  from foresight_jax.demo_sizes import SIZES
  size = SIZES["cpu"]
  extra = {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.overrides)}
  demo._compilation_cache(os.path.join(args.out, "jit_cache"))
  t0 = time.perf_counter()
  demo._train("pretrain", "tiny", **{**demo.base_keys(size, args.out), **extra})
  rows = [json.loads(line) for line in open(os.path.join(args.out, "metrics.jsonl"))]
  loss = [r["loss"] for r in rows if "loss" in r]
  curve = [round(sum(loss[i:i + 25]) / len(loss[i:i + 25]), 2) for i in range(0, len(loss), 25)]
  print(json.dumps({"overrides": extra, "loss_by_25_steps": curve, "final": curve[-1],
                    "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
  main()
