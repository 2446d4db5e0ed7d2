"""Train-step throughput and time to the first finished step: our `loop.train` vs Tunix's PeftTrainer.

Same model shape (Llama, tied embeddings), batch, sequence length, fp32, full fine-tuning, random
init and the same optimizer (global-norm clip 1.0 + AdamW b1 .9 b2 .95 wd .1, warmup-cosine LR) on
both sides; random-token batches. Each side runs in its own fresh process, one after the other
(never concurrently): ours under this venv's python, Tunix under the Tunix venv's python
(google-tunix==0.1.7, see `tunix_side.py`). Prints ONE JSON line.

    .venv/bin/python benchmarks/tunix_compare.py      # SmolLM2-135M shape, batch 4, seq 256, 12 steps, 2 repeats
    .venv/bin/python benchmarks/tunix_compare.py --shape small --steps 20 --repeats 3
    .venv/bin/python benchmarks/tunix_compare.py --split 3   # profile split: loss+grad alone vs whole step

Set up the Tunix venv once (git-ignored; `make bench-tunix` sets it up, then runs the first and the
third command): python3 -m venv .venv-tunix && .venv-tunix/bin/pip install torch==2.13.0 google-tunix==0.1.7
(torch first so pip takes the local CPU wheel, not a CUDA one).

The 2-core dev VM is shared: other jobs running at the same time change wall-clock figures by up to
2x. Each configuration runs `--repeats` times, interleaved, and the medians are reported, with the
1-minute load average before each run (`loadavg_1m_before`; a side's own process adds ~2) and the
process CPU-seconds per step (`cpu_s_per_step`, much less sensitive to other jobs).

Figures (the same definition on both sides):
* time to first step: from the parent's spawn of the process (interpreter start, imports, model
  init, optimizer init, compile, first step) to the moment the loop has step 1's metrics on the
  host. `*_from_setup` starts after the imports instead.
* steady-state steps/s: (N - W) / (t_N - t_W) over the loop's own per-step completion times,
  skipping the first W steps (compilation, first-touch of buffers).
Our loop runs with checkpointing effectively off (checkpoint_every > steps; its final checkpoint is
written after the last measured step), export_hf=False, tensorboard=False; Tunix with
checkpoint_root_directory=None and no metrics backends. Both keep their tqdm bar.
"""
from __future__ import annotations

import time

T_START = time.time()

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SHAPES = {
    # SmolLM2-135M's shape (foresight_jax preset smollm2_135m)
    "smollm2_135m": dict(vocab=49152, hidden=576, inter=1536, layers=30, heads=9, kv_heads=3, head_dim=64,
                         tie=1, rope_theta=100000.0),
    # a smaller shared shape for quick runs
    "small": dict(vocab=8192, hidden=256, inter=768, layers=4, heads=4, kv_heads=2, head_dim=64, tie=1,
                  rope_theta=100000.0),
}


def _rate(step_times: list, warmup: int) -> dict:
  """Steady state over steps warmup..last: steps/s, median step time, process CPU-seconds per step."""
  import statistics
  t = {int(r[0]): (float(r[1]), float(r[2])) for r in step_times}
  last = max(t)
  if warmup not in t or last <= warmup:
    raise RuntimeError(f"not enough steps for warm-up {warmup}: got steps {sorted(t)}")
  dts = [t[s][0] - t[s - 1][0] for s in range(warmup + 1, last + 1)]
  return {"steps_per_s": (last - warmup) / (t[last][0] - t[warmup][0]), "median_step_s": statistics.median(dts),
          "best_step_s": min(dts), "cpu_s_per_step": (t[last][1] - t[warmup][1]) / (last - warmup)}


# --------------------------------------------------------------------------------------- ours side
def _model_cfg(a):
  """Our model config for the shared shape: the `tiny` preset's architecture with every size overridden."""
  from foresight_jax.models import presets
  return presets.model_config("tiny", vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.inter,
                              num_layers=a.layers, num_heads=a.heads, num_kv_heads=a.kv_heads,
                              head_dim=a.head_dim, tie_embeddings=bool(a.tie), rope_theta=a.rope_theta,
                              max_position_embeddings=max(2048, a.seq), param_dtype="float32",
                              compute_dtype="float32", remat_policy=a.remat)


def _random_batch(rng, a) -> dict:
  """Random tokens (ids from 3 up, as on the Tunix side) as a causal-LM batch, every token trained."""
  import numpy as np
  toks = rng.integers(3, a.vocab, (a.batch, a.seq + 1)).astype(np.int32)
  return {"inputs": toks[:, :-1], "targets": toks[:, 1:], "loss_mask": np.ones((a.batch, a.seq), np.int32)}


def run_ours(a) -> dict:
  """Runs in a fresh process of our venv: loop.train, with a timestamp per finished step."""
  import jax
  import numpy as np
  from foresight_jax.train import loop, optim
  t_imported = time.time()

  times: list[tuple[int, float, float]] = []  # (step, wall, process cpu)

  def on_step_end(record):  # the loop calls it right after step s's metrics reached the host
    times.append((int(record["step"]), time.time(), time.process_time()))

  class RandomTokens:
    def __init__(self):
      self.rng = np.random.default_rng(0)

    def __iter__(self):
      return self

    def __next__(self):
      return _random_batch(self.rng, a)

  t_setup = time.time()
  cfg = _model_cfg(a)
  tcfg = loop.TrainConfig(steps=a.steps, optim=optim.OptimConfig(), checkpoint_every=10**9, export_hf=False,
                          tensorboard=False, progress=True, remat_policy=a.remat)
  workdir = tempfile.mkdtemp(prefix="tunix_compare_ours_")
  try:
    res = loop.train(cfg, tcfg, RandomTokens(), workdir, handle_sigterm=False, on_step_end=on_step_end)
    jax.block_until_ready(res.state)
    t_end = time.time()
    final_loss = json.loads(open(os.path.join(workdir, "metrics.jsonl")).read().splitlines()[-1])["loss"]
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  import flax
  import optax
  return {"side": "ours", "t_start": T_START, "t_imported": t_imported, "t_setup": t_setup, "t_end": t_end,
          "step_times": times, "steps": a.steps, "train_steps_done": res.step, "remat": a.remat,
          "n_params": int(sum(x.size for x in jax.tree.leaves(res.state.params))), "final_loss": final_loss,
          "versions": {"python": sys.version.split()[0], "jax": jax.__version__,
                       "jaxlib": __import__("jaxlib").__version__, "flax": flax.__version__,
                       "optax": optax.__version__},
          "devices": [str(d) for d in jax.devices()]}


def split_ours(a) -> dict:
  """Profile split, ours: best-of-N seconds of the jitted loss+grad alone and of the whole train step."""
  import functools
  import jax
  import numpy as np
  from foresight_jax.train import losses, loop, optim, state as state_lib, step as step_lib
  cfg = _model_cfg(a)
  mesh = loop.build_mesh((-1, 1, 1))
  batch = step_lib.shard_batch(_random_batch(np.random.default_rng(0), a), mesh)
  tx, schedule = optim.make_optimizer(optim.OptimConfig())
  _, shardings = state_lib.abstract_train_state(cfg, tx, mesh)
  box = [state_lib.init_train_state(cfg, tx, mesh, seed=0)]
  grad = jax.jit(jax.value_and_grad(functools.partial(losses.causal_lm_loss, cfg), has_aux=True))
  train_step = step_lib.make_train_step(cfg, tx, schedule, mesh, shardings)

  def step():
    box[0], m = train_step(box[0], batch)
    return m

  import common
  with jax.set_mesh(mesh):
    g = common.best_of(lambda: grad(box[0].params, batch), a.split)
  return {"side": "ours", "grad_s": g, "step_s": common.best_of(step, a.split)}


# ------------------------------------------------------------------------------------- orchestrator
def _spawn(cmd: list[str], env: dict, log_path: str) -> tuple[dict, float]:
  t0 = time.time()
  with open(log_path, "w") as log:
    p = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
  if p.returncode != 0:
    tail = open(log_path).read()[-3000:]
    raise RuntimeError(f"{cmd[:3]} exited {p.returncode}; stderr tail:\n{tail}")
  line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
  with open(log_path[:-4] + ".json", "w") as fh:  # the raw record (per-step timestamps) beside the log
    fh.write(line + "\n")
  return json.loads(line), t0


def _summarise(r: dict, t_spawn: float, warmup: int, load: tuple) -> dict:
  t1 = {int(x[0]): float(x[1]) for x in r["step_times"]}[1]
  return {**_rate(r["step_times"], warmup), "time_to_first_step_s": t1 - t_spawn,
          "time_to_first_step_from_setup_s": t1 - r["t_setup"], "import_s": r["t_imported"] - t_spawn,
          "total_wall_s": r["t_end"] - t_spawn, "n_params": r["n_params"], "final_loss": r["final_loss"],
          "loadavg_1m_before": round(load[0], 2)}


def _median_runs(runs: list[dict]) -> dict:
  """Median of every figure over the repeats (each repeat is a fresh process)."""
  import statistics
  out = {k: statistics.median(x[k] for x in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}
  out["repeats"] = len(runs)
  out["steps_per_s_each"] = [round(x["steps_per_s"], 5) for x in runs]
  out["time_to_first_step_s_each"] = [round(x["time_to_first_step_s"], 2) for x in runs]
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--side", choices=["ours", "ours-split"], default=None, help=argparse.SUPPRESS)
  ap.add_argument("--shape", default="smollm2_135m", choices=sorted(SHAPES))
  for k in ("vocab", "hidden", "inter", "layers", "heads", "kv_heads", "head_dim", "tie"):
    ap.add_argument("--" + k.replace("_", "-"), dest=k, type=int, default=None)
  ap.add_argument("--rope-theta", type=float, default=None)
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--seq", type=int, default=256)
  ap.add_argument("--steps", type=int, default=12, help="train steps per side, warm-up included")
  ap.add_argument("--warmup", type=int, default=2, help="steps left out of the steady-state window")
  ap.add_argument("--remat", default="dots_no_batch,none",
                  help="our remat policy; a comma list runs ours once per policy (the first is the headline)")
  ap.add_argument("--tunix-remat", default="NONE", help="Tunix RematConfig (NONE|BLOCK|DECODER), comma list")
  ap.add_argument("--tunix-python", default=os.path.join(ROOT, ".venv-tunix", "bin", "python"))
  ap.add_argument("--repeats", type=int, default=2,
                  help="fresh processes per configuration, interleaved (tunix, ours, tunix, ours ...); medians")
  ap.add_argument("--no-prewarm", action="store_true", help="skip the untimed import of each side first")
  ap.add_argument("--split", type=int, default=0,
                  help="profile split instead of training runs: best of N calls of loss+grad alone and of "
                       "the whole jitted train step, each side in its own process")
  a = ap.parse_args()
  for k, v in SHAPES[a.shape].items():
    if getattr(a, k, None) is None:
      setattr(a, k, v)

  if a.side in ("ours", "ours-split"):  # ours as the CLI runs it; the peer's side keeps its environment
    from foresight_jax import hostenv
    hostenv.reexec_with_huge_pages()
  if a.side == "ours":
    print(json.dumps(run_ours(a)), flush=True)
    return
  if a.side == "ours-split":
    a.remat = a.remat.split(",")[0]
    print(json.dumps(split_ours(a)), flush=True)
    return

  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one CPU device on both sides, XLA defaults
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  env["JAX_PLATFORMS"] = "cpu"
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  shape_args = ["--vocab", str(a.vocab), "--hidden", str(a.hidden), "--inter", str(a.inter), "--layers",
                str(a.layers), "--heads", str(a.heads), "--kv-heads", str(a.kv_heads), "--head-dim",
                str(a.head_dim), "--tie", str(a.tie), "--rope-theta", str(a.rope_theta)]
  common = shape_args + ["--batch", str(a.batch), "--seq", str(a.seq), "--steps", str(a.steps)]
  ours_py = sys.executable
  logdir = tempfile.mkdtemp(prefix="tunix_compare_logs_")

  if not a.no_prewarm:  # page-cache both venvs' libraries so neither side pays a cold disk
    subprocess.run([ours_py, "-c", "import jax, flax, optax, orbax.checkpoint, foresight_jax.train.loop; "
                    "jax.devices()"], env=env, check=True, capture_output=True)
    subprocess.run([a.tunix_python, "-c", "import jax, flax, optax; import tunix.sft.peft_trainer, "
                    "tunix.models.llama3.model, tunix.models.dummy_model_creator; jax.devices()"],
                   env=env, check=True, capture_output=True)

  if a.split:
    split_args = common + ["--split", str(a.split)]
    rm_t, rm_o = a.tunix_remat.split(",")[0], a.remat.split(",")[0]
    t, _ = _spawn([a.tunix_python, os.path.join(HERE, "tunix_side.py"), *split_args, "--remat", rm_t], env,
                  os.path.join(logdir, "tunix_split.log"))
    o, _ = _spawn([ours_py, os.path.abspath(__file__), "--side", "ours-split", *split_args, "--remat", rm_o], env,
                  os.path.join(logdir, "ours_split.log"))
    print(json.dumps({"bench": "tunix_compare_split", "ours": o, "tunix": t, "ours_remat": rm_o, "tunix_remat": rm_t,
                      "optimizer_etc_s": {"ours": o["step_s"] - o["grad_s"], "tunix": t["step_s"] - t["grad_s"]},
                      "batch": a.batch, "seq": a.seq, "shape": a.shape, "repeats": a.split}), flush=True)
    return

  tunix_runs: dict[str, list] = {}
  ours_runs: dict[str, list] = {}
  meta = {}
  for rep in range(a.repeats):
    for rm in a.tunix_remat.split(","):
      load = os.getloadavg()
      r, t0 = _spawn([a.tunix_python, os.path.join(HERE, "tunix_side.py"), *common, "--remat", rm], env,
                     os.path.join(logdir, f"tunix_{rm}_{rep}.log"))
      tunix_runs.setdefault(rm, []).append(_summarise(r, t0, a.warmup, load))
      meta["tunix"] = r
    for rm in a.remat.split(","):
      load = os.getloadavg()
      r, t0 = _spawn([ours_py, os.path.abspath(__file__), "--side", "ours", "--shape", a.shape, *common,
                      "--remat", rm], env, os.path.join(logdir, f"ours_{rm}_{rep}.log"))
      ours_runs.setdefault(rm, []).append(_summarise(r, t0, a.warmup, load))
      meta["ours"] = r
  tunix_med = {k: _median_runs(v) for k, v in tunix_runs.items()}
  ours_med = {k: _median_runs(v) for k, v in ours_runs.items()}

  t_name = a.tunix_remat.split(",")[0]
  o_name = a.remat.split(",")[0]
  tr, ts = meta["tunix"], tunix_med[t_name]
  orr, os_ = meta["ours"], ours_med[o_name]
  out = {
      "bench": "tunix_compare",
      "ours_steps_per_s": os_["steps_per_s"], "tunix_steps_per_s": ts["steps_per_s"],
      "ratio": os_["steps_per_s"] / ts["steps_per_s"],
      "ours_time_to_first_step_s": os_["time_to_first_step_s"],
      "tunix_time_to_first_step_s": ts["time_to_first_step_s"],
      "ours_time_to_first_step_from_setup_s": os_["time_to_first_step_from_setup_s"],
      "tunix_time_to_first_step_from_setup_s": ts["time_to_first_step_from_setup_s"],
      "ours_remat": o_name, "tunix_remat": t_name,
      "ours_cpu_s_per_step": os_["cpu_s_per_step"], "tunix_cpu_s_per_step": ts["cpu_s_per_step"],
      "cpu_time_ratio": ts["cpu_s_per_step"] / os_["cpu_s_per_step"],
      "ours": ours_med, "tunix": tunix_med,
      "shape": {"name": a.shape, "vocab": a.vocab, "hidden": a.hidden, "intermediate": a.inter,
                "layers": a.layers, "heads": a.heads, "kv_heads": a.kv_heads, "head_dim": a.head_dim,
                "tie_embeddings": bool(a.tie), "n_params_ours": orr["n_params"], "n_params_tunix": tr["n_params"]},
      "batch": a.batch, "seq": a.seq, "steps": a.steps, "warmup": a.warmup, "repeats": a.repeats, "dtype": "float32",
      "tokens_per_step": a.batch * a.seq,
      "versions": {"ours": orr["versions"], "tunix": tr["versions"]},
      "devices": {"ours": orr["devices"], "tunix": tr["devices"]}, "cpus": os.cpu_count(),
      "logs": logdir,
  }
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
