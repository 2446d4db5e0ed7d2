"""`foresight-jax eval` end to end: config -> model -> suites -> receipts + one JSON line of
figures per suite (cli_eval.py is the argparse shell around `run`).

Per suite: every problem is played `samples` (>= k) times (temperature > 0 when samples > 1);
search tasks take FC-RL's device tool path where it applies (evals/device_agent.py), everything
else the host agent (evals/agent.py) with the suite's host tools; each episode's answer is
checked (evals/qa.py) and, with a judge set, graded by it (evals/judge.py); receipts go to
`<out>/receipts_<suite>.jsonl`, the figures line to stdout and `<out>/figures.jsonl`.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from foresight_jax.evals import agent
from foresight_jax.evals import eval_config
from foresight_jax.evals import metrics as M
from foresight_jax.evals import receipts as rc
from foresight_jax.evals import suites as S
from foresight_jax.evals.device_agent import device_tool_reason, run_device
from foresight_jax.train.stages_config import ConfigError


def agent_config(cfg) -> agent.AgentConfig:
  return agent.AgentConfig(variant=cfg.variant, max_turns=cfg.max_turns, max_new_tokens=cfg.max_new_tokens,
                           seed=cfg.seed)


def play(suite: S.Suite, rows: list, model: tuple, cfg) -> tuple[list[agent.Episode], str, str | None]:
  """(episodes in row order, "device" when the search rows ran on the device tool path else
  "host", why not the device one)."""
  mcfg, params, tok = model
  acfg = agent_config(cfg)
  temperature = cfg.temperature if (cfg.samples or cfg.k) > 1 else 0.0
  reason = device_tool_reason(tok, cfg.tool_path, cfg.retriever.kind,
                              suite.docs is not None or suite.worlds is not None)
  has_search = any(t.domain == "search" for t in rows)
  if cfg.tool_path == "device" and reason and has_search:  # math-only suites never use a search tool
    raise ConfigError(f"tool_path=device does not apply to suite {suite.name!r}: {reason}")
  episodes: list[Any] = [None] * len(rows)
  search = [i for i, t in enumerate(rows) if t.domain == "search"] if reason is None else []
  if search:
    try:
      eps = run_device([rows[i] for i in search], mcfg, params, tok, acfg, docs=suite.docs,
                       worlds=suite.worlds, chat=cfg.chat, temperature=temperature, top_p=cfg.top_p,
                       batch_size=min(cfg.batch_size, len(search)), seed=cfg.seed, topk=cfg.retriever.topk,
                       max_passage_tokens=cfg.retriever.max_passage_tokens)
    except ValueError as e:
      if cfg.tool_path == "device":
        raise ConfigError(f"tool_path=device, suite {suite.name!r}: {e}") from None
      reason, eps, search = str(e), [], []
    if search:
      print(f"eval {suite.name}: {len(search)} search episodes ran on the device tool path", file=sys.stderr,
            flush=True)
    for i, ep in zip(search, eps):
      episodes[i] = ep
  host = [i for i, ep in enumerate(episodes) if ep is None]
  if host:
    from tqdm import tqdm
    bs = min(cfg.batch_size, len(host))
    # at most max_turns turns per episode; the bar jumps to its end when episodes finish early
    with tqdm(total=len(host) * acfg.max_turns, desc=f"eval {suite.name} (host)", unit="turn",
              dynamic_ncols=True) as bar:
      # fixed batch and 256-wide prompt buckets: the agent loop's shrinking batches reuse programs
      gen = agent.model_generate_fn(mcfg, params, tok, temperature=temperature, top_p=cfg.top_p, chat=cfg.chat,
                                    prompt_multiple=256, batch_multiple=bs, progress=bar)
      eps, _ = agent.evaluate([rows[i] for i in host], gen, suite.tool_fn, acfg, batch_size=bs)
      bar.update(bar.total - bar.n)
    for i, ep in zip(host, eps):
      episodes[i] = ep
  return episodes, "device" if search else "host", reason


def run_suite(suite: S.Suite, model: tuple, cfg, judge, out_dir: str, run: str) -> dict:
  t0 = time.perf_counter()
  samples = cfg.samples or cfg.k
  rows = [t for t in suite.tasks for _ in range(samples)]
  episodes, path_used, reason = play(suite, rows, model, cfg)
  extras = S.episode_extras(suite.name, [j for _ in suite.tasks for j in range(samples)], episodes, judge)
  spec = agent_config(cfg).format_spec()
  receipts = os.path.join(out_dir, f"receipts_{suite.name}.jsonl")
  rc.write_receipts(receipts, episodes, spec.to_json(), run, cfg.max_obs_chars, extras=extras)
  figs = S.suite_figures([ep.task.id for ep in episodes], extras, M.metrics_from_episodes(episodes, spec), cfg.k)
  return {"suite": suite.name, "model": run, **figs, "judge": None if judge is None else judge.name,
          "search_tool_path": path_used, "device_path_note": reason, **suite.info,
          "receipts": receipts, "seconds": round(time.perf_counter() - t0, 2)}


def load_model(path: str) -> tuple:
  from foresight_jax.models.checkpoint import load_pretrained
  from foresight_jax.tokenizer import Tokenizer
  if not os.path.exists(path):
    raise FileNotFoundError(f"--model {path}: no such checkpoint directory or file")
  mcfg, params = load_pretrained(path)
  return mcfg, params, Tokenizer.load(path)


def run(cfg, model_path: str, out_dir: str, stream=None) -> list[dict]:
  """Every suite of `cfg.suites`; prints (to `stream`, default stdout) and returns one figures
  dict per suite."""
  from foresight_jax.evals.judge import make_judge
  eval_config.check(cfg)
  specs = [s.strip() for s in cfg.suites.split(",") if s.strip()]
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "eval_config.json"), "w") as f:
    f.write(cfg.to_json(indent=2, sort_keys=True))  # names the key's variable, never the key
  res = S.Resources(cfg.retriever)
  loaded = [S.load_suite(s, cfg, res) for s in specs]  # bad suite names fail before the model loads
  model = load_model(model_path)
  judge = make_judge(cfg.judge)
  run_name = os.path.normpath(model_path)  # the receipts' run label: stage exports are all named hf/
  out = []
  with open(os.path.join(out_dir, "figures.jsonl"), "w") as f:
    for suite in loaded:
      figs = run_suite(suite, model, cfg, judge, out_dir, run_name)
      line = json.dumps(figs)
      print(line, file=stream or sys.stdout, flush=True)
      f.write(line + "\n")
      out.append(figs)
  return out


__all__ = ["agent_config", "load_model", "play", "run", "run_suite"]
