"""Learner-matched success targets, a probe (BUILD_NOTES, "Success estimates after FE-SFT"): how well
could a demo model's `<success>` estimates do if they were trained on its OWN success rates instead
of the data policies'?

1. The FE-SFT model plays --tasks tasks from fresh worlds (--seed; the demo's held-out worlds are
   seed 7, so they stay unseen), greedy, as the demo evaluates.
2. Its success rate per bin of what a writer can see -- domain, hops, the step's tool, and at an
   answer step whether the answer appears in an earlier observation -- shrunk toward its
   (domain, hops) rate, replaces every `<success>` of the FE-SFT data (--data).
3. `benchmarks/demo_probe.py --stage fe_sft --start HF --data OUT/sft_selfcal.jsonl --steps 60 --lr 5e-4`
   then trains on it and evaluates on the demo's held-out tasks (run separately).

`--oracle RECEIPTS` instead prints the in-sample Brier skill of the same bins fitted on the very
episodes they are scored on: the ceiling for any estimate that sees only those features.

  python benchmarks/selfcal_probe.py --hf runs/demo-X/fe_sft_foresight/hf --data runs/demo-X/data/sft_full.jsonl
  python benchmarks/selfcal_probe.py --oracle runs/demo-X/receipts_0_wmamt_fesft.jsonl
"""
from __future__ import annotations

import argparse
import collections
import json
import os

LEVELS = ("domain_hops", "tool", "grounded")


def _answer_text(arg: str) -> str:
  return arg.replace("\\boxed{", "").rstrip("}").strip().lower()


def bin_of(domain: str, hops: int, tool: str, arg: str, seen: str, level: str = "grounded") -> tuple:
  """The bin of one step: what the writer of its block can see."""
  if level == "domain_hops":
    return (domain, hops)
  grounded = tool == "answer" and bool(_answer_text(arg)) and _answer_text(arg) in seen.lower()
  return (domain, hops, tool) + ((grounded,) if level == "grounded" and tool == "answer" else ())


def receipt_points(path: str, level: str = "grounded") -> list[tuple[tuple, float, float | None]]:
  """(bin, outcome, written estimate) per step of a receipts file."""
  rows = [json.loads(line) for line in open(path)]
  eps = {r["task_id"]: r for r in rows if r["kind"] == "episode"}
  seen, out = collections.defaultdict(str), []
  for r in rows:
    if r["kind"] != "step":
      continue
    e = eps[r["task_id"]]
    domain = e["domain"]
    hops = e["question"].count(" of the ") + 1 if domain == "search" else 0
    a = r.get("action") or {}
    out.append((bin_of(domain, hops, a.get("tool") or "none", a.get("arg") or "", seen[r["task_id"]], level),
                e["outcome"], r.get("success")))
    seen[r["task_id"]] += " " + (r.get("observation") or "")
  return out


def oracle(path: str) -> dict:
  res = {}
  for level in LEVELS:
    pts = [(b, y) for b, y, s in receipt_points(path, level) if s is not None]
    base = sum(y for _, y in pts) / len(pts)
    by = collections.defaultdict(list)
    for b, y in pts:
      by[b].append(y)
    brier = sum((sum(by[b]) / len(by[b]) - y) ** 2 for b, y in pts) / len(pts)
    res[level] = round(1 - brier / (base * (1 - base)), 3)
  return {"estimates": len(pts), "base_rate": round(base, 3), "in_sample_skill": res}


def rewrite(data: str, out: str, stats: dict, shrink: float = 4.0) -> int:
  """The FE-SFT data with every `<success>` set to the learner's bin rate (shrunk toward its
  (domain, hops) rate, itself smoothed (wins + 1) / (n + 2))."""
  def rate(b):
    wp, np_ = stats.get(b[:2], (0.0, 0))
    parent = (wp + 1) / (np_ + 2)
    w, n = stats.get(b, (0.0, 0))
    return (w + shrink * parent) / (n + shrink)

  n_rw = 0
  with open(data) as f, open(out, "w") as g:
    for line in f:
      tr = json.loads(line)
      domain = tr["task"]["domain"]
      hops = tr["task"]["meta"].get("hops", 0) if domain == "search" else 0
      seen = ""
      for st in tr["steps"]:
        a = st["action"]
        arg = a.get("answer") or a.get("query") or a.get("expr") or ""
        if (st.get("foresight") or {}).get("success") is not None:
          st["foresight"]["success"] = round(rate(bin_of(domain, hops, a["tool"], arg, seen)), 2)
          n_rw += 1
        seen += " " + (st.get("observation") or "")
      g.write(json.dumps(tr) + "\n")
  return n_rw


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--hf", help="the FE-SFT export whose success rates are measured")
  ap.add_argument("--data", help="the FE-SFT trajectories to rewrite (a demo's data/sft_full.jsonl)")
  ap.add_argument("--tasks", type=int, default=100)
  ap.add_argument("--seed", type=int, default=5, help="world seed of the calibration tasks (not 7: held out)")
  ap.add_argument("--out", default="/tmp/selfcal_probe")
  ap.add_argument("--oracle", default="", help="receipts: print the in-sample ceiling of the bins instead")
  args = ap.parse_args()
  if args.oracle:
    print(json.dumps({"receipts": args.oracle, **oracle(args.oracle)}))
    return
  if args.seed == 7:
    raise SystemExit("--seed 7 is the demo's held-out worlds: calibrating there would leak them")
  from foresight_jax import demo
  from foresight_jax.data.generate import GenConfig, generate, make_worlds
  from foresight_jax.data.world import WorldConfig
  from foresight_jax.demo_sizes import SIZES
  from foresight_jax.evals import agent
  size = SIZES["cpu"]
  os.makedirs(args.out, exist_ok=True)
  cfg = GenConfig(seed=args.seed, hops=tuple(size.hops), world=WorldConfig(search_k=size.search_k))
  tasks = [t.task for t in generate(cfg, args.tasks)]
  receipts = os.path.join(args.out, "calibration_receipts.jsonl")
  demo.evaluate_model(args.hf, tasks, agent.make_tool_fn(make_worlds(cfg)), size, receipts, "calibration")
  stats = collections.defaultdict(lambda: [0.0, 0])
  for b, y, _ in receipt_points(receipts):
    for key in (b, b[:2]):
      stats[key][0] += y
      stats[key][1] += 1
  n = rewrite(args.data, os.path.join(args.out, "sft_selfcal.jsonl"), dict(stats))
  print(json.dumps({"bins": {" ".join(map(str, k)): [v[0], v[1]] for k, v in sorted(stats.items(), key=str)},
                    "rewritten": n, "data": os.path.join(args.out, "sft_selfcal.jsonl")}))


if __name__ == "__main__":
  main()
