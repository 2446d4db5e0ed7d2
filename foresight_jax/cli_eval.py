"""`foresight-jax eval`: held-out evaluation suites, receipts and one JSON line of figures per suite."""
from __future__ import annotations

import argparse
import logging
import sys

DESCRIPTION = """\
Play a model on evaluation suites with the multi-turn agent loop and real tools, write a receipt
for every agent step (RUN_DIR/receipts_<suite>.jsonl, enough to recompute every figure) and print
one JSON line of figures per suite (also in RUN_DIR/figures.jsonl).

suites (--suite, comma-separated):
  world      held-out search + math tasks from synthetic worlds no training stage used
  fanoutqa   FanOutQA dev sub-questions whose evidence page is in the Wikipedia leads corpus, plus
             the multi-hop questions whose evidence pages all are; searched with our retriever
             (BM25 or dense MiniLM, top-3, Search-R1's `Doc i(Title: t) text` passages)
  champ      CHAMP competition problems with one integer answer in 0..999 (calc tool)
  NAME[=PATH] any registered eval set (nq, triviaqa, popqa, hotpotqa, 2wiki, musique, bamboogle,
             aime, ...): a FlashRAG / Search-R1 QA JSONL or AIME-style file at PATH

Each problem is sampled k times (temperature > 0 when k > 1). Search tasks run on FC-RL's device
tool path (BM25 in the policy's token ids, inside one jitted rollout) where it applies: BM25
retriever and the action/information tags single tokens of the model's tokenizer; otherwise the
host agent with the same retriever. The figures line says which path ran and why.

figures: em (SQuAD exact match; for math the boxed-integer check), f1 (SQuAD token F1, max over
golds), pass@k (unbiased, 1 - C(n-c,k)/C(n,k)) and mean@k over n >= k samples per problem,
boxed and math_verify (math), judge_accuracy, judge_n and judge_em_agreement (with a judge),
format_turn / format_episode (block grammar), grounding (token precision of each forecast
against the observation that followed), brier / brier_skill / ece (success estimates against
outcomes).

Settings come from an ml-collections file (--config, default: the built-in defaults documented in
foresight_jax/evals/eval_config.py and configs/eval.py), then --set KEY=VALUE overrides, then the
flags below. The LLM judge (judge.kind): local (default; SmolLM2-135M-Instruct or judge.model,
through our own sampler; 135M parameters keep the format but are too small to grade, so name a
larger judge.model for verdicts that mean something), http (an OpenAI-compatible endpoint:
judge.base_url, judge.model, and the API key read from the environment variable NAMED by
judge.api_key_env; the key itself is never logged or written), or none.

example:
  foresight-jax eval --model runs/fc_rl_tiny/hf --suite world,fanoutqa,champ --k 8 --n 200 --out runs/eval
"""


def cmd_eval(args) -> int:
  from foresight_jax import configs
  from foresight_jax.evals import eval_config, runner
  from foresight_jax.train.stages_config import ConfigError
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
  try:
    cfg = configs.load(args.config) if args.config else eval_config.default_config()
    for item in args.set:
      configs.apply_override(cfg, item)
    for key, value in (("suites", args.suite), ("k", args.k), ("n", args.n), ("samples", args.samples)):
      if value is not None:
        cfg[key] = value
    if args.judge is not None:
      cfg.judge.kind = args.judge
    if args.tool_path is not None:
      cfg.tool_path = args.tool_path
    runner.run(cfg, args.model, args.out)
  except (ConfigError, FileNotFoundError, KeyError, ValueError, TypeError) as e:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"foresight-jax eval: error: {msg}", file=sys.stderr)
    return 2
  return 0


def add_parsers(sub) -> None:
  p = sub.add_parser("eval", help="evaluation suites: receipts + one JSON line of figures per suite",
                     description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", required=True, metavar="DIR",
                 help="the model to evaluate: an HF checkpoint directory with its tokenizer (e.g. a stage's "
                      "<workdir>/hf export) or a .gguf file")
  p.add_argument("--suite", default=None, metavar="LIST",
                 help="comma-separated suites: world, fanoutqa, champ, or a registered eval set NAME[=PATH] "
                      "(default: the config's suites, world,fanoutqa,champ)")
  p.add_argument("--k", type=int, default=None,
                 help="k of pass@k and mean@k; also the samples per problem unless samples is set (default 8)")
  p.add_argument("--n", type=int, default=None,
                 help="problems per suite, a seeded sample when a suite has more (default 200)")
  p.add_argument("--samples", type=int, default=None,
                 help="samples per problem, >= k (default: k); more samples make pass@k less noisy")
  p.add_argument("--out", required=True, metavar="RUN_DIR",
                 help="run directory: receipts_<suite>.jsonl, figures.jsonl, eval_config.json")
  p.add_argument("--judge", default=None, choices=["none", "local", "http"],
                 help="LLM judge (default: the config's judge.kind, local); http needs judge.base_url and "
                      "judge.model via --set")
  p.add_argument("--tool-path", default=None, choices=["auto", "device", "host"],
                 help="search tool path: auto (device where it applies, the default), device (an error where "
                      "it does not apply), host (Python tools only)")
  p.add_argument("--config", default=None, metavar="FILE[:SIZE]",
                 help="ml-collections config, e.g. configs/eval.py or configs/eval.py:cpu (default: built-in "
                      "defaults)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config key, e.g. --set retriever.kind=dense --set judge.model=gpt-4o-mini "
                      "--set temperature=1.0 (repeatable; keys in foresight_jax/evals/eval_config.py)")
  p.set_defaults(fn=cmd_eval)
