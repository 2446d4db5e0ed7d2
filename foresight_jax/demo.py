"""`make demo`: the whole pipeline at a size that learns on a 2-core CPU in about ten minutes.

  0. foundation check: SmolLM2-135M-Instruct (GGUF from PyPI) answers a chat prompt through our
     loader, model and sampler;
  1. world -> augment: trajectories over many synthetic worlds, with foresight blocks (variant
     full) and without (none, the standard mid-training arm);
  2. a base LM, shared by both arms: pretraining on the encyclopedia of other worlds (sizes
     trained from scratch only; see demo_sizes.py for why);
  3. WM-AMT of each arm from the base; 4. FE-SFT of both on the same chat data;
  5. FC-RL (reward=fc) and outcome-only GRPO from the WM-AMT+FE-SFT model, a few steps each;
  6. every model plays the same held-out tasks from worlds no stage trained on, with the real
     search / calc tools; receipts are written; format, grounding, calibration and accuracy
     are printed side by side with 95% bootstrap intervals, and paired differences say which
     gaps the evaluation can and cannot resolve.
The run directory is kept (data, checkpoints, metrics.jsonl, TensorBoard, receipts, table).
"""
from __future__ import annotations

import json
import os
import time

from foresight_jax.demo_sizes import REFERENCE_TFLOPS, SIZES, DemoSize

ARMS = {"WM-AMT+FE-SFT": "full", "standard mid-training+FE-SFT": "none"}
RL_RUNS = {"FC-RL (reward=fc)": "fc", "GRPO (reward=outcome)": "outcome"}
FORMAT_BAR = 0.90
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _stage_config(name: str, size: str = "tiny", **overrides):
  from foresight_jax import configs
  path = os.path.join(CONFIGS_DIR, f"{name}.py")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: run the demo from a source checkout (pip install -e .)")
  cfg = configs.load(f"{path}:{size}")
  for key, value in overrides.items():
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return cfg


def chat_generate_fn(cfg, params, tok, max_positions: int, progress=None, batch: int = 1):
  """GenerateFn for models trained on chat-formatted conversations (FE-SFT), greedy. Every call is
  padded to a quarter of `batch` rows and prompt widths to multiples of 256, so an agent loop whose
  batch shrinks turn by turn reuses a handful of compiled programs (shared by same-shaped models)
  without decoding a full batch for the few episodes still running (quarters against whole
  batches: the demo's evaluation of three models 76 -> 65 s, the same figures; BUILD_NOTES)."""
  from foresight_jax.evals.agent import model_generate_fn
  del max_positions  # model_generate_fn caps each row at the model's own position limit
  return model_generate_fn(cfg, params, tok, chat=True, prompt_multiple=256,
                           batch_multiple=max(1, -(-batch // 4)), progress=progress)


class StageClock:
  """Wall seconds by stage, summed over arms (timing.json and the run's last line): where a demo's
  minutes go, so a slow run names its slow stage.

  With `shares` ((stage, share of a whole run) pairs, from the size) and `plan` (laps each stage will
  take: one per arm for WM-AMT and FE-SFT), each lap also prints the run's pace: the time so far over
  the share of the planned work done, i.e. the whole run's expected length on this host as it runs."""

  def __init__(self, shares: tuple = (), plan: dict | None = None, now=time.perf_counter):
    self._now = now
    self._t = self._start = now()
    self.seconds: dict[str, float] = {}
    self._plan = {s: n for s, n in (plan or {}).items() if n > 0}
    total = sum(w for s, w in shares if s in self._plan)
    self._shares = {s: w / total for s, w in shares if s in self._plan} if total else {}
    self._laps: dict[str, int] = {}

  def lap(self, stage: str) -> None:
    """Charge the time since the last lap to `stage`."""
    now = self._now()
    self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._t
    self._t = now
    self._laps[stage] = self._laps.get(stage, 0) + 1
    done = self.done_fraction()
    if stage in self._shares and 0.15 <= done < 1.0:  # before 15% the setup's fixed costs dominate
      spent = now - self._start
      print(f"  [demo] {spent / 60:.1f} min so far, about {done:.0%} of the run: at this pace the whole "
            f"run takes about {spent / done / 60:.1f} min", flush=True)

  def done_fraction(self) -> float:
    """Share of the planned run whose stages have finished (0 without shares)."""
    return sum(w * min(1.0, self._laps.get(s, 0) / self._plan[s]) for s, w in self._shares.items())

  def summary(self) -> str:
    return "time by stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())


def _banner(text: str) -> None:
  print(f"\n{'=' * 8} {text} {'=' * max(0, 70 - len(text))}", flush=True)


def _last_eval_loss(workdir: str) -> float | None:
  loss = None
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      rec = json.loads(line)
      if rec.get("eval_loss") is not None:
        loss = rec["eval_loss"]
  return loss


def untrained_held_out_loss(sft_dir: str) -> float:
  """Held-out loss of a randomly initialised model of the same shape on the same held-out
  batches as the FE-SFT stage's own evaluation (the floor any training must beat)."""
  import jax
  import ml_collections

  from foresight_jax.evals import metrics
  from foresight_jax.models import params as params_lib
  from foresight_jax.models.checkpoint.hf import hf_config_to_model_config, read_config
  from foresight_jax.tokenizer import Tokenizer
  from foresight_jax.train import stages_data
  with open(os.path.join(sft_dir, "stage_config.json")) as f:
    cfg = ml_collections.ConfigDict(json.load(f))
  hf = os.path.join(sft_dir, "hf")
  mcfg = hf_config_to_model_config(read_config(hf), where=hf)
  _, held, _ = stages_data.load_trajectories(cfg)
  it = stages_data.make_iterator(held, Tokenizer.load(hf), cfg, eval_=True)
  params = params_lib.init_params(mcfg, jax.random.key(0))
  return metrics.held_out_loss(mcfg, params, it, max_batches=cfg.train.eval_batches)["loss"]


def header(size: DemoSize, peak: float) -> float:
  """Print what the demo is about to do and how long it should take here; returns the estimate."""
  from foresight_jax.models import presets
  from foresight_jax.models.config import param_count
  expect = size.fixed_minutes + size.minutes_at_reference * REFERENCE_TFLOPS / max(peak / 1e12, 1e-3)
  model = (f"{param_count(presets.model_config(dict(presets.get('tiny').to_dict(), **size.model, vocab_size=size.vocab_size))):,} "
           f"params ({size.model['num_layers']} layers, hidden {size.model['hidden_size']}), vocab {size.vocab_size}"
           if size.model else f"from {size.init_from}")
  modelled = size.fixed_minutes + size.minutes_at_reference > 0
  base = (f"base LM {size.base_steps} steps on {size.base_worlds} worlds' documents" if size.model and size.base_worlds
          else f"no base LM (every arm starts from {size.init_from or 'a random init'})")
  timing = (f"expected time {expect:.1f} min ({size.fixed_minutes + size.minutes_at_reference:.1f} min at "
            f"{REFERENCE_TFLOPS} TFLOP/s)" if modelled else "expected time: not modelled for this size (BUILD_NOTES)")
  print(f"foresight-jax demo --size {size.name}: {model}\n"
        f"  {base}; per arm WM-AMT "
        f"{size.wm_steps} + FE-SFT {size.sft_steps} steps (rows {size.batch} x {size.seq_len}); FC-RL and GRPO "
        f"{size.rl_steps} steps each; {size.n_eval} held-out tasks per model (search questions of "
        f"{'/'.join(map(str, size.hops))} hops, and math)\n"
        f"  this host's fp32 matmul peak: {peak / 1e12:.2f} TFLOP/s; {timing}", flush=True)
  if modelled and peak / 1e12 < 0.4:
    print(f"  WARNING: this host is slower than the 0.4 TFLOP/s the 10-minute budget assumes; the run "
          f"will take about {expect:.0f} minutes", flush=True)
  return expect


def evaluate_model(hf: str, tasks, tool_fn, size: DemoSize, receipts: str, run: str):
  """(episodes, per-episode figures, metrics) of one model on the held-out tasks."""
  from tqdm import tqdm

  from foresight_jax.evals import agent, metrics
  from foresight_jax.models.checkpoint import load_pretrained
  from foresight_jax.tokenizer import Tokenizer
  mcfg, params = load_pretrained(hf)
  tok = Tokenizer.load(hf)
  acfg = agent.AgentConfig(variant="full", max_new_tokens=size.max_new_tokens, max_turns=size.max_turns)
  with tqdm(total=len(tasks) * size.max_turns, desc=f"eval {run}", unit="turn", dynamic_ncols=True) as bar:
    gen = chat_generate_fn(mcfg, params, tok, mcfg.max_position_embeddings, progress=bar, batch=len(tasks))
    episodes, m = agent.evaluate(tasks, gen, tool_fn, acfg, receipts_path=receipts, run=run)
    bar.update(bar.total - bar.n)
  return episodes, metrics.episode_figures(episodes, acfg.format_spec()), m


def held_out_config(size: DemoSize):
  """The generator of the demo's held-out tasks (worlds and tasks no stage trained on: seed 7), whose
  search returns size.search_k documents and whose questions have size.hops hops, as in training."""
  from foresight_jax.data.generate import GenConfig
  from foresight_jax.data.world import WorldConfig
  return GenConfig(seed=7, hops=tuple(size.hops), world=WorldConfig(search_k=size.search_k))


def held_out_tasks(size: DemoSize):
  """(tasks, tool_fn): the demo's held-out tasks and their search / calc tools."""
  from foresight_jax.data.generate import generate, make_worlds
  from foresight_jax.evals import agent
  cfg = held_out_config(size)
  return [t.task for t in generate(cfg, size.n_eval)], agent.make_tool_fn(make_worlds(cfg))


def augment_args(size: DemoSize) -> list[str]:
  """`foresight-jax augment` options of a demo size (how its foresight blocks are built)."""
  return ["--horizon", str(size.horizon), "--forecast-noise", str(size.forecast_noise)]


def rl_keys(size: DemoSize) -> dict:
  """The FC-RL / GRPO stage overrides a demo size sets (the tasks, the turn budget, rows per step)."""
  return {"data.tokenizer": "", "rl.prompts_per_step": size.rl_prompts, "rl.group_size": size.rl_group,
          "rl.max_turns": size.rl_turns, "rl.max_turn_tokens": size.rl_turn_tokens, "rl.tasks": 64,
          "rl.n_worlds": 16, "rl.search_k": size.search_k, "rl.hops": tuple(size.hops), "rl.max_prompt_tokens": 0}


def _train(name: str, size_name: str, **overrides) -> str:
  from foresight_jax.train import stages
  out = stages.run(_stage_config(name, size_name, **overrides))
  if out.get("status") != "completed":
    raise RuntimeError(f"{name} stopped early: {out}")
  return out["export_dir"]


def _train_keys(size: DemoSize) -> dict:
  """The `train.*` overrides a size sets for every stage it trains (compute dtype, remat)."""
  return {f"train.{k}": v for k, v in (("compute_dtype", size.compute_dtype), ("remat", size.remat)) if v}


def base_keys(size: DemoSize, workdir: str) -> dict:
  """The stage overrides of a from-scratch size's base LM (`configs/pretrain.py`): its model, the
  documents of size.base_worlds worlds, and its rows, learning rate and steps."""
  import jax
  return {**{f"model.config.{k}": v for k, v in size.model.items()}, **_train_keys(size),
          "mesh.data": -1 if size.base_batch % jax.device_count() == 0 else 1,
          "workdir": workdir, "data.documents": size.base_worlds, "data.seed": 100,
          "data.doc_readouts": size.base_readouts, "data.vocab_size": size.vocab_size,
          "data.seq_len": size.base_seq, "data.batch_size": size.base_batch,
          "optim.learning_rate": size.base_lr, "train.steps": size.base_steps,
          "train.checkpoint_every": size.base_steps}


def _stage_size(size: DemoSize) -> str:
  """The stage config size the demo's stages start from: `tiny` overridden by a from-scratch model,
  else the size's own (e.g. smollm2_135m, which loads its checkpoint)."""
  return "tiny" if size.model is not None else size.name


def train_arm(out_dir: str, size: DemoSize, arm: str, tag: str, variant: str, init: str, wm_data: str,
              sft_data: str, clock: StageClock | None = None) -> tuple[str, str]:
  """One arm of the ablation: WM-AMT on `wm_data` (trajectories rendered with `variant`) from
  `init`, then FE-SFT on `sft_data`. Returns (the FE-SFT export, the FE-SFT workdir)."""
  import jax
  stage_size = _stage_size(size)
  # one data-parallel mesh over every device when the rows split evenly over them, else one device
  common = {"mesh.data": -1 if size.batch % jax.device_count() == 0 else 1, "train.progress": True,
            "data.seq_len": size.seq_len, "data.batch_size": size.batch, "data.slip_rate": size.slip_rate,
            "data.synthetic": 0, "data.augment": False,
            **_train_keys(size)}
  _banner(f"3. WM-AMT [{arm}] on variant={variant}")
  wm = _train("wm_amt", stage_size, **common, **{
      "workdir": os.path.join(out_dir, f"wm_amt_{tag}"), "data.paths": wm_data,
      "data.variant": variant, "model.init_from": init, "data.tokenizer": "",
      "optim.learning_rate": size.wm_lr, "optim.warmup_steps": 10, "train.steps": size.wm_steps,
      "train.checkpoint_every": size.wm_steps})
  if clock:
    clock.lap("WM-AMT")
  _banner(f"4. FE-SFT [{arm}]")
  sft_dir = os.path.join(out_dir, f"fe_sft_{tag}")
  hf = _train("fe_sft", stage_size, **common, **{
      "workdir": sft_dir, "model.init_from": wm, "data.paths": sft_data, "data.eval_fraction": 0.1,
      "optim.learning_rate": size.sft_lr, "optim.warmup_steps": 10, "train.steps": size.sft_steps,
      "train.eval_every": size.sft_steps, "train.checkpoint_every": size.sft_steps})
  if clock:
    clock.lap("FE-SFT")
  return hf, sft_dir


def _compilation_cache(path: str) -> None:
  """A persistent compilation cache for this run (unless the process already has one, as the test
  suite does): the second arm's WM-AMT and FE-SFT steps, and every later program of an
  already-seen shape, load their executable instead of compiling it again (the demo model's
  gradient: 4.6 s to compile, 0.4 s from the cache). A cached executable is the one a fresh
  compile produces, so no figure changes."""
  import jax
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run(out_dir: str, size: str | DemoSize = "cpu", *, smollm2: bool = True, rl: bool = True) -> dict:
  from foresight_jax import cli
  from foresight_jax.evals import bootstrap, report
  from foresight_jax.train import metrics as train_metrics

  size = SIZES[size] if isinstance(size, str) else size
  t0 = time.perf_counter()
  clock = StageClock(size.stage_shares, plan={
      "setup and foundation check": 1, "data": 1, "base LM": int(size.model is not None and size.base_worlds > 0),
      "WM-AMT": len(ARMS), "FE-SFT": len(ARMS), "FC-RL": int(rl), "GRPO": int(rl), "evaluation": 1,
      "tables and report": 1})
  _compilation_cache(os.path.join(out_dir, "jit_cache"))
  expect = header(size, train_metrics.measure_peak_flops())
  data = os.path.join(out_dir, "data")
  os.makedirs(data, exist_ok=True)
  if smollm2:
    _banner("0. foundation: SmolLM2-135M-Instruct through our loader, model and sampler")
    cli.main(["generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "24"])
  clock.lap("setup and foundation check")

  _banner(f"1. world -> augment ({size.n_train} trajectories over {size.n_worlds} worlds)")
  world, sft_world = os.path.join(data, "world.jsonl"), os.path.join(data, "sft_world.jsonl")
  k = ["--search-k", str(size.search_k), "--hops", ",".join(map(str, size.hops))]
  cli.main(["world", "--out", world, "-n", str(size.n_train), "--seed", "0", "--n-worlds", str(size.n_worlds), *k])
  cli.main(["world", "--out", sft_world, "-n", str(size.n_sft), "--seed", "1",
            "--n-worlds", str(max(4, size.n_worlds * size.n_sft // size.n_train)), *k])
  for variant in sorted(set(ARMS.values())):
    cli.main(["augment", world, "--out", os.path.join(data, f"wm_{variant}.jsonl"), "--variant", variant,
              *augment_args(size)])
  sft_data = os.path.join(data, "sft_full.jsonl")
  cli.main(["augment", sft_world, "--out", sft_data, "--variant", "full", *augment_args(size)])
  clock.lap("data")

  import jax
  scratch = size.model is not None
  stage_size = _stage_size(size)
  init = size.init_from
  if scratch and size.base_worlds:
    _banner(f"2. base LM: {size.base_steps} steps on the documents of {size.base_worlds} worlds (shared by both arms)")
    init = _train("pretrain", "tiny", **base_keys(size, os.path.join(out_dir, "base")))
    clock.lap("base LM")

  eval_tasks, tool_fn = held_out_tasks(size)
  runs, units, hf_dirs = {}, {}, {}
  for arm, variant in ARMS.items():
    tag = "foresight" if variant == "full" else "standard"
    hf_dirs[arm], sft_dir = train_arm(out_dir, size, arm, tag, variant, init,
                                      os.path.join(data, f"wm_{variant}.jsonl"), sft_data, clock)
    runs[arm] = {"held_out_loss": _last_eval_loss(sft_dir)}
    if arm == "WM-AMT+FE-SFT":
      runs[arm]["untrained_held_out_loss"] = untrained_held_out_loss(sft_dir)
      clock.lap("untrained model's loss")

  if rl:
    start = hf_dirs["WM-AMT+FE-SFT"]
    for name, reward in RL_RUNS.items():
      _banner(f"5. {name}: {size.rl_steps} steps from the WM-AMT+FE-SFT model")
      hf_dirs[name] = _train("fc_rl", stage_size, **rl_keys(size), **{
          "workdir": os.path.join(out_dir, f"fc_rl_{reward}"), "model.init_from": start, "rl.reward": reward,
          "optim.learning_rate": size.rl_lr, "train.steps": size.rl_steps,
          "train.checkpoint_every": size.rl_steps, "train.progress": True,
          "mesh.data": -1 if (size.rl_prompts * size.rl_group) % jax.device_count() == 0 else 1})
      runs[name] = {"held_out_loss": None}
      clock.lap(name.split()[0])

  for i, (name, hf) in enumerate(hf_dirs.items()):
    _banner(f"6. held-out tasks [{name}]: {len(eval_tasks)} tasks from unseen worlds, up to {size.max_turns} turns, greedy")
    tag = name.split()[0].lower().replace("+", "_").replace("-", "")
    _, units[name], m = evaluate_model(hf, eval_tasks, tool_fn, size, os.path.join(out_dir, f"receipts_{i}_{tag}.jsonl"), name)
    runs[name] = {**m.to_dict(), **runs[name]}
  clock.lap("evaluation")

  intervals = {name: bootstrap.intervals(u) for name, u in units.items()}
  pairs = [("WM-AMT+FE-SFT", "standard mid-training+FE-SFT")]
  if rl:
    pairs += [("FC-RL (reward=fc)", "WM-AMT+FE-SFT"), ("FC-RL (reward=fc)", "GRPO (reward=outcome)")]
  differences = {f"{a} - {b}": bootstrap.paired_differences(units[a], units[b]) for a, b in pairs}
  elapsed = time.perf_counter() - t0
  _banner(f"result ({elapsed:.0f} s, expected {expect * 60:.0f} s); run directory: {out_dir}")
  text = report.write_comparison(runs, os.path.join(out_dir, "comparison.json"), os.path.join(out_dir, "comparison.txt"),
                                 intervals=intervals, differences=differences)
  print(text)
  print(bars_summary(runs))
  print("format: turns passing the block grammar; grounding: token precision of each rollout's step 1 against the\n"
        "observation that followed; Brier/skill/ECE: success estimates against outcomes (skill > 0 beats the\n"
        "constant base-rate predictor); accuracy: task score; [lo, hi]: 95% bootstrap interval over tasks.\n"
        "Recompute any figure from the receipts: foresight_jax.evals.metrics.metrics_from_receipts(path).")
  from foresight_jax.evals import html_report
  rep = html_report.write_report([out_dir], os.path.join(out_dir, "report.html"))
  print(f"audit report (calibration per turn, theater flags, every episode): {rep['out']}")
  clock.lap("tables and report")
  print(clock.summary())
  with open(os.path.join(out_dir, "timing.json"), "w") as f:
    json.dump({"seconds": elapsed, "expected_seconds": expect * 60, "size": size.name,
               "stages": clock.seconds}, f)
  return runs


def bars_summary(runs: dict) -> str:
  """One line per model: does it meet the demo's bars (format >= 0.90 of turns, accuracy > 0,
  success estimates with Brier skill > 0)?"""
  lines = []
  for name, m in runs.items():
    ok = [(m.get("format_turn") or 0) >= FORMAT_BAR, (m.get("accuracy") or 0) > 0, (m.get("brier_skill") or 0) > 0]
    verdict = "meets the bars" if all(ok) else "BELOW the bars: " + ", ".join(
        w for w, good in zip((f"format < {FORMAT_BAR}", "accuracy 0", "skill <= 0"), ok) if not good)
    lines.append(f"{name}: {verdict}")
  return "\n".join(lines)


__all__ = ["ARMS", "RL_RUNS", "bars_summary", "chat_generate_fn", "evaluate_model", "header", "run"]
