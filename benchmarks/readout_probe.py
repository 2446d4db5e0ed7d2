"""Does a model read a fact out of the observation, or copy it from its own forecast?

Teacher-forced on one-hop search tasks of the cpu demo's held-out worlds: the context is the task
prompt, a first turn whose foresight block forecasts the search result, and the real observation
(which holds the answer); the model's next thought is forced up to "The results say the <relation>
of <entity> is", and the log-probability of the true fact (from the observation) is compared with
that of the entity the forecast named. Three forecasts: the true fact, a wrong entity, none. A model
that reads prefers the true fact under all three; one that copies its forecast follows it.
(BUILD_NOTES, "Reading the observation": the finding behind `data.forecast_noise` and
`data.doc_readouts`.)

  python benchmarks/readout_probe.py runs/demo-X/fe_sft_foresight/hf [--tasks 40]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random

import jax
import numpy as np

WRONG = ("Paistoul", "Kaistai Laistek", "Voutaim College", "Prouland Holdings", "Zini")  # made-up names


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("hf", help="an exported model directory (a demo's fe_sft_*/hf)")
  ap.add_argument("--tasks", type=int, default=40)
  args = ap.parse_args()

  from foresight_jax import demo
  from foresight_jax.data.render import render_prompt
  from foresight_jax.data.world import RELATIONS
  from foresight_jax.demo_sizes import SIZES
  from foresight_jax.evals.agent import chat_messages
  from foresight_jax.models import transformer
  from foresight_jax.models.checkpoint import load_pretrained
  from foresight_jax.tokenizer import Tokenizer

  size = dataclasses.replace(SIZES["cpu"], hops=(1,), n_eval=4 * args.tasks)
  tasks, tool_fn = demo.held_out_tasks(size)
  cfg, params = load_pretrained(args.hf)
  tok = Tokenizer.load(args.hf)
  forward = jax.jit(lambda p, x: transformer.forward(cfg, p, x)[0])
  rng = random.Random(0)
  scores = {"true_forecast": [], "wrong_forecast": [], "no_forecast": []}
  for task in (t for t in tasks if t.domain == "search"):
    if len(scores["no_forecast"]) == args.tasks:
      break
    rel, subject, truth = RELATIONS[task.meta["relations"][0]], task.meta["start"], task.answers[0]
    query = f"{subject} {rel.keyword}"
    obs = tool_fn(task, "search", query)
    if truth not in obs:
      continue  # the search missed: nothing to read
    wrong = rng.choice([w for w in WRONG if w != truth])
    for cond, named in (("true_forecast", truth), ("wrong_forecast", wrong), ("no_forecast", None)):
      expectation = rel.templates[0].format(s=subject, o=named) if named else f"{subject}."
      turn = (f"<think> Plan: {rel.desc}. Next I need the {rel.desc} of {subject}. </think>\n<foresight>\n"
              f"<rollout>\n1. search \"{query}\" -> {expectation}\n</rollout>\n<success>0.90</success>\n"
              f"</foresight>\n<search> {query} </search>")
      ids = tok.encode_chat(chat_messages([render_prompt(task, "full"), turn, f"<information>{obs}</information>"]),
                            add_generation_prompt=True)
      ids += tok.encode(f"<think> The results say the {rel.desc} of {subject} is")

      def logp(name):
        cont = tok.encode(f" {name}.")
        logits = forward(params, np.asarray([ids + cont], np.int32))[0, len(ids) - 1:-1]
        return float(np.take_along_axis(np.asarray(jax.nn.log_softmax(logits, -1)), np.asarray(cont)[:, None], 1).sum())

      scores[cond].append((logp(truth), logp(wrong)))
  for cond, v in scores.items():
    v = np.asarray(v)
    print(json.dumps({"hf": args.hf, "forecast": cond, "tasks": len(v), "mean_logp_true": round(float(v[:, 0].mean()), 2),
                      "mean_logp_wrong_name": round(float(v[:, 1].mean()), 2),
                      "prefers_true": int((v[:, 0] > v[:, 1]).sum())}))


if __name__ == "__main__":
  main()
