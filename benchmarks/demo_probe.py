"""How many steps, at which learning rate, a demo stage needs (BUILD_NOTES, "FC-RL in the demo" and
"FE-SFT steps"): one FC-RL (or GRPO) run from a demo's FE-SFT export, or one FE-SFT run from its
WM-AMT export on its FE-SFT data, then the demo's held-out evaluation (the same 100 tasks from
unseen worlds, greedy), one JSON line of figures.

  python benchmarks/demo_probe.py --start runs/demo-X/fe_sft_foresight/hf --steps 10 --lr 2e-4
  python benchmarks/demo_probe.py --stage fe_sft --start runs/demo-X/wm_amt_standard/hf \
      --data runs/demo-X/data/sft_full.jsonl --steps 300 --lr 1e-3
  python benchmarks/demo_probe.py --stage eval --start runs/demo-X/fe_sft_foresight/hf --search-k 1
  python benchmarks/demo_probe.py --stage turns --start runs/demo-X/fe_sft_foresight/hf
  python benchmarks/demo_probe.py --stage arm --variant state --start runs/demo-X/base/hf \
      --data runs/demo-X/data/world.jsonl --sft-data runs/demo-X/data/sft_full.jsonl \
      --compare runs/demo-X/receipts_0_wmamt_fesft.jsonl runs/demo-X/receipts_1_standard.jsonl

`--stage turns` trains nothing: it measures what a model can do one turn at a time. The expert's
trajectories on the same held-out tasks (their foresight blocks built as the demo builds them) give
the gold context before every turn; the model writes that turn greedily; each turn counts as right
when its action (tool and argument), the value its thought reads out of the last observation
("... is X." / "That gives X."), or the whole turn equals the expert's. With every earlier turn
given, this separates the skills a task chains (copying the question's entity into the first
query, reading an observation, copying a number) from the errors they compound into.

`--stage arm` trains one more ablation arm the way the demo trains its two (`demo.train_arm`:
WM-AMT on the demo's trajectories rendered with `--variant`, e.g. the state-only variant, then
FE-SFT), evaluates it on the same held-out tasks, and with `--compare` prints paired bootstrap
differences against other runs' receipts over the same tasks.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--stage", default="fc_rl", choices=["fc_rl", "fe_sft", "eval", "arm", "turns"],
                  help="eval: no training, the held-out evaluation of --start alone")
  ap.add_argument("--start", required=True, help="fc_rl: an FE-SFT export (a demo's fe_sft_foresight/hf); "
                                                 "fe_sft: a WM-AMT export (wm_amt_<arm>/hf)")
  ap.add_argument("--data", default="", help="fe_sft: the FE-SFT trajectories (a demo's data/sft_full.jsonl)")
  ap.add_argument("--variant", default="state", choices=["none", "state", "full"],
                  help="arm: how the WM-AMT trajectories render their foresight blocks")
  ap.add_argument("--sft-data", default="", help="arm: the FE-SFT trajectories (a demo's data/sft_full.jsonl)")
  ap.add_argument("--compare", nargs="*", default=[], help="receipts of other runs on the same held-out tasks")
  ap.add_argument("--reward", default="fc", choices=["fc", "outcome"])
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--lr", type=float, default=2e-4)
  ap.add_argument("--search-k", type=int, default=None,
                  help="documents per search in training and evaluation (default: the cpu demo size's)")
  ap.add_argument("--hops", default="", help="the held-out (and RL) questions' hop counts, e.g. 1,2 "
                  "(default: the cpu size's)")
  ap.add_argument("--forecast-noise", type=float, default=None, help="arm: the size's forecast_noise overridden")
  ap.add_argument("--out", default="/tmp/demo_rl_probe")
  ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                  help="fc_rl: more stage config overrides, e.g. rl.w_format=0.5 (values parsed as JSON)")
  args = ap.parse_args()

  import dataclasses

  from foresight_jax import demo
  from foresight_jax.demo_sizes import SIZES
  size = SIZES["cpu"]
  if args.search_k is not None:
    size = dataclasses.replace(size, search_k=args.search_k)
  if args.forecast_noise is not None:
    size = dataclasses.replace(size, forecast_noise=args.forecast_noise)
  if args.hops:
    size = dataclasses.replace(size, hops=tuple(int(h) for h in args.hops.split(",")))
  out = os.path.join(args.out, f"arm_{args.variant}" if args.stage == "arm"
                     else f"{args.stage}_{args.reward}_{args.steps}_{args.lr:g}" + "".join(f"_{kv}" for kv in args.set))
  t0 = time.perf_counter()
  common = {"workdir": out, "model.init_from": args.start, "optim.learning_rate": args.lr,
            "train.steps": args.steps, "train.checkpoint_every": args.steps, "train.progress": False, "mesh.data": 1}
  if args.stage == "turns":
    print(json.dumps({"stage": "turns", "start": args.start, **turn_competence(args.start, size, out)}))
    return
  if args.stage == "eval":
    hf = args.start
  elif args.stage == "arm":  # --data: the demo's raw trajectories (data/world.jsonl)
    from foresight_jax import cli
    os.makedirs(out, exist_ok=True)
    wm_data = os.path.join(out, f"wm_{args.variant}.jsonl")
    cli.main(["augment", args.data, "--out", wm_data, "--variant", args.variant, *demo.augment_args(size)])
    hf, _ = demo.train_arm(out, size, f"variant={args.variant}", args.variant, args.variant, args.start,
                           wm_data, args.sft_data)
  elif args.stage == "fe_sft":  # the demo's FE-SFT keys (demo.run)
    hf = demo._train("fe_sft", "tiny", **common, **{
        "data.seq_len": size.seq_len, "data.batch_size": size.batch, "data.slip_rate": size.slip_rate,
        "data.synthetic": 0, "data.augment": False, "data.paths": args.data, "data.eval_fraction": 0.1,
        "optim.warmup_steps": 10, "train.eval_every": args.steps})
  else:
    hf = demo._train("fc_rl", "tiny", **common, **demo.rl_keys(size), **{
        "rl.reward": args.reward, **{k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}})
  t1 = time.perf_counter()
  os.makedirs(out, exist_ok=True)
  tasks, tool_fn = demo.held_out_tasks(size)  # the demo's held-out worlds and tasks
  _, _, m = demo.evaluate_model(hf, tasks, tool_fn, size,
                                os.path.join(out, "receipts.jsonl"), "probe")
  d = m.to_dict()
  from foresight_jax.evals import bootstrap, metrics
  mine = metrics.receipt_figures(os.path.join(out, "receipts.jsonl"))
  for other in args.compare:
    diff = bootstrap.paired_differences(mine, metrics.receipt_figures(other))
    print(json.dumps({"probe_minus": other, **{k: v and [round(x, 4) for x in v] + [bootstrap.separated(v)]
                                                for k, v in diff.items()}}))
  print(json.dumps({"stage": args.stage, "reward": args.reward, "steps": args.steps, "lr": args.lr, "set": args.set,
                    "search_k": size.search_k,
                    "train_s": round(t1 - t0),
                    "eval_s": round(time.perf_counter() - t1),
                    **{k: d.get(k) for k in ("format_turn", "grounding", "brier", "brier_skill", "ece", "accuracy")}}))


def turn_competence(hf: str, size, out: str) -> dict:
  """Per-turn competence of the model at `hf` (see the module doc): counts per (domain, first or
  later turn, expert's tool) of turns, right actions, right read-out values and right turns."""
  import collections
  import re

  from foresight_jax import cli, demo
  from foresight_jax.data import render
  from foresight_jax.data.schema import Trajectory
  from foresight_jax.evals.agent import STOP_STRINGS
  from foresight_jax.models.checkpoint import load_pretrained
  from foresight_jax.tokenizer import Tokenizer
  import dataclasses

  from foresight_jax.data.generate import generate
  os.makedirs(out, exist_ok=True)
  raw, built = os.path.join(out, "expert_raw.jsonl"), os.path.join(out, "expert.jsonl")
  # the demo's held-out generator played by the expert alone: its policy draw takes one random
  # number whatever the mix, so these are the very tasks the demo evaluates on
  with open(raw, "w") as f:
    for tr in generate(dataclasses.replace(demo.held_out_config(size), policies={"expert": 1.0}), size.n_eval):
      f.write(json.dumps(tr.to_json()) + "\n")
  cli.main(["augment", raw, "--out", built, "--variant", "full", *demo.augment_args(size)])
  with open(built) as f:
    trajs = [Trajectory.from_json(json.loads(line)) for line in f]
  contexts, gold, kinds = [], [], []
  for tr in trajs:
    ctx = [render.render_prompt(tr.task, "full")]
    for i, st in enumerate(tr.steps):
      contexts.append(list(ctx))
      gold.append(render.render_turn(st))
      kinds.append(f"{tr.task.domain}/{'first' if i == 0 else 'later'}/{st.action.tool}")
      ctx.append(render.render_turn(st))
      if st.observation is not None:
        ctx.append(f"<information>{st.observation}</information>")
  mcfg, params = load_pretrained(hf)
  gen = demo.chat_generate_fn(mcfg, params, Tokenizer.load(hf), mcfg.max_position_embeddings, batch=64)
  texts = []
  for i in range(0, len(contexts), 64):
    texts += [g.text for g in gen(contexts[i:i + 64], stop=STOP_STRINGS, max_new_tokens=size.max_new_tokens, seed=0)]

  def action(t):
    m = re.search(r"<(search|calc|answer)>(.*?)</\1>", t, re.S)
    return m and (m.group(1), m.group(2).strip())

  def read(t):
    m = re.search(r"(?:is|gives) (.*?)\. ", t)
    return m and m.group(1)

  counts = collections.defaultdict(lambda: collections.Counter())
  for kind, g, t in zip(kinds, gold, texts):
    c = counts[kind]
    c["turns"] += 1
    c["action"] += action(t) == action(g)
    c["read"] += (read(t) == read(g)) if "/later/" in kind else 0
    c["turn"] += t.strip() == g.strip()
  total = sum((c for c in counts.values()), collections.Counter())
  return {"by_kind": {k: dict(v) for k, v in sorted(counts.items())}, "total": dict(total)}


if __name__ == "__main__":
  main()
