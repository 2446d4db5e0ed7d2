"""GRPO step time on CPU against the Tunix peer (../shared/peers/tunix_grpo_bench.py), same work:
tiny random Qwen3 (2 layers, embed 64, MLP 256, 4 q / 2 kv heads of 16, vocab 512), N arithmetic
prompts left-padded to 32, G samples of up to T new tokens at temperature 0.9, in-graph reward
(the completion contains the digits of a+b), beta 0.04, eps 0.2, optax.adamw(1e-4). Our step is
`foresight_jax.rl.arith.make_step`: ONE jitted call, state donated.

    .venv/bin/python benchmarks/rl_step.py --prompts 8 --group 4 --max-new-tokens 64 --steps 20 --seed 0
    .venv/bin/python benchmarks/rl_step.py ... --profile            # rollout vs update split
    .venv/bin/python benchmarks/rl_step.py ... --with-tunix --repeats 2   # ours, tunix, ours, tunix

Prints ONE JSON line on stdout with the peer's keys (first_step_s: step 1 with its compilation;
median_step_s: the median of steps 2..S; completion_tokens_per_s: the mean actual completion
tokens of steps 2..S, EOS excluded, / median_step_s; reward_mean over every sample of the run;
max_param_update; reference_frozen; ...) plus `cpu_s_per_step` (the median over steps 2..S of
the process CPU seconds: less sensitive to other jobs on a shared host than wall time, and above
wall time when XLA uses both cores), `minor_page_faults_per_step` and the 1-minute load average
before the run. Each step is timed with perf_counter around host batch encoding + the
jitted call + block_until_ready on the new params (the peer's clock also covers its prompt
tokenisation). No persistent compilation cache is used, so step 1 pays the full compile.

`--profile` runs the same step as two jitted halves (rollout = sampling; update = rewards, the
reference and policy log-prob passes, grads and AdamW) and times each (a separate run: the split
costs one extra host round trip). `--with-tunix` runs each side in its own fresh process,
interleaved (ours, tunix, ours, tunix, ... for --repeats), after measuring the host's fp32 matmul
peak, prints every run's JSON line (with "side" and "repeat") and a summary line with the ratios
tunix / ours of the medians over repeats (`--ours-variants` adds runs of ours with extra flags).
`--prompt-width auto` pads the prompts to the run's longest (16 columns here) instead of the
peer's 32.
"""
from __future__ import annotations

import os
import time

# CLOCK_MONOTONIC on Linux, so the start of the process before the huge-page re-exec carries over
T_START = float(os.environ.get("RL_STEP_T_START", time.perf_counter()))

import argparse
import json
import resource
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.path.normpath(os.path.join(ROOT, "..", "shared", "peers"))
PY = os.path.join(ROOT, ".venv", "bin", "python")
from foresight_jax import hostenv  # noqa: E402  (no jax import: the re-exec comes first)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--prompts", type=int, default=8, help="N prompts per step")
  p.add_argument("--group", type=int, default=4, help="G completions/prompt")
  p.add_argument("--max-new-tokens", type=int, default=64, help="T")
  p.add_argument("--steps", type=int, default=5, help="S GRPO steps")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--mesh", default="1,1", help="fsdp,tp mesh shape on CPU devices (1,1 or 2,1)")
  p.add_argument("--work-dir", default="/tmp/peers", help="where the sentencepiece model is cached")
  p.add_argument("--prompt-width", default="32",
                 help="columns the prompts are left-padded to: 32 (the peer's) or 'auto' (the run's "
                 "longest BOS+prompt rounded up to 8; the same samples and loss, less padding computed)")
  p.add_argument("--aggregation", default="token_mean", choices=["token_mean", "sequence_mean"])
  p.add_argument("--profile", action="store_true", help="time rollout and update as two jitted halves")
  p.add_argument("--with-tunix", action="store_true", help="run the peer too, interleaved, in subprocesses")
  p.add_argument("--repeats", type=int, default=2, help="with --with-tunix: runs of each side")
  p.add_argument("--ours-variants", nargs="*", default=[],
                 help="with --with-tunix: more runs of ours per repeat, each with these extra flags "
                 "(one quoted string per variant, e.g. '--prompt-width auto')")
  a = p.parse_args(argv)
  a.mesh_str = a.mesh
  a.mesh = tuple(int(x) for x in a.mesh.split(","))
  if len(a.mesh) != 2 or min(a.mesh) < 1:
    p.error("--mesh must be two positive ints, e.g. 1,1")
  if a.group < 2:
    p.error("--group must be >= 2 (GRPO needs a group)")
  if min(a.prompts, a.max_new_tokens, a.steps) < 1:
    p.error("--prompts, --max-new-tokens and --steps must be >= 1")
  return a


def setup_env(args):
  """Before jax is imported (as the peer does)."""
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  n = args.mesh[0] * args.mesh[1]
  if n > 1:
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
      os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _minflt() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _loadavg() -> float:
  try:
    return round(os.getloadavg()[0], 2)
  except OSError:
    return -1.0


# ------------------------------------------------------------------------------------- our side
def run_ours(args) -> dict:
  setup_env(args)
  load0 = _loadavg()
  import flax
  import jax
  import jax.numpy as jnp
  import numpy as np

  from foresight_jax import sharding
  from foresight_jax.models.config import param_count
  from foresight_jax.rl import arith, arith_task


  n, g, t, s = args.prompts, args.group, args.max_new_tokens, args.steps
  sp = arith_task.build_tokenizer(args.work_dir)
  batches = arith_task.make_batches(n, s, args.seed)
  longest = max(len(sp.encode(p)) + 1 for b in batches for p in b["prompts"])
  width = -(-longest // 8) * 8 if args.prompt_width == "auto" else int(args.prompt_width)
  if longest > width:
    sys.exit(f"a prompt is {longest} tokens with BOS, more than --prompt-width {width}")
  cfg = arith_task.model_config()
  acfg = arith.ArithConfig(group_size=g, max_new_tokens=t, aggregation=args.aggregation)
  tx, schedule = arith.optimizer()
  n_dev = args.mesh[0] * args.mesh[1]
  if len(jax.devices()) < n_dev:
    sys.exit(f"need {n_dev} devices, have {len(jax.devices())}")
  mesh = sharding.make_mesh(data=1, fsdp=args.mesh[0], tensor=args.mesh[1], devices=jax.devices()[:n_dev])
  if (n * g) % args.mesh[0]:
    sys.exit("prompts*group must be divisible by the fsdp mesh size")
  # placed on the mesh from the start (replicated; rows are split over fsdp by the model's
  # constraints), so step 2 sees the same input shardings as step 1 and does not recompile
  state = jax.device_put(arith.init_state(cfg, tx, args.seed), sharding.replicated(mesh))
  table = jax.device_put(arith_task.DigitTable.build(sp), sharding.replicated(mesh))
  ref0 = [np.array(x) for x in jax.tree.leaves(state.ref_params)]

  step_s, cpu_s, tokens, rewards, faults = [], [], [], [], []
  roll_s, upd_s = [], []
  setup_s = time.perf_counter() - T_START
  if not args.profile:
    step = arith.make_step(cfg, acfg, tx, schedule, mesh)
    for b in batches:
      t0, c0, f0 = time.perf_counter(), time.process_time(), _minflt()
      state, m = step(state, arith_task.encode_batch(sp, b, width), table)
      jax.block_until_ready(state.params)
      step_s.append(time.perf_counter() - t0)
      cpu_s.append(time.process_time() - c0)
      faults.append(_minflt() - f0)
      tokens.append(int(m["completion_tokens"]))
      rewards.extend(np.asarray(m["rewards"]).tolist())
  else:
    roll, upd = arith.make_split_step(cfg, acfg, tx, schedule)
    with jax.set_mesh(mesh):
      for b in batches:
        t0, c0, f0 = time.perf_counter(), time.process_time(), _minflt()
        eb = arith_task.encode_batch(sp, b, width)
        rng, ro = roll(state.params, state.rng, eb)
        jax.block_until_ready(ro)
        t1 = time.perf_counter()
        state, m = upd(state, ro, eb, table, rng)
        jax.block_until_ready(state.params)
        t2 = time.perf_counter()
        roll_s.append(t1 - t0)
        upd_s.append(t2 - t1)
        step_s.append(t2 - t0)
        cpu_s.append(time.process_time() - c0)
        faults.append(_minflt() - f0)
        tokens.append(int(m["completion_tokens"]))
        rewards.extend(np.asarray(m["rewards"]).tolist())
  wall_s = time.perf_counter() - T_START

  delta = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), state.params, state.ref_params)
  max_update = float(max(jax.tree.leaves(delta)))
  ref_frozen = all(np.array_equal(np.asarray(a), b) for a, b in zip(jax.tree.leaves(state.ref_params), ref0))
  steady = step_s[1:] if s > 1 else step_s
  median_step = statistics.median(steady)
  tok_per_step = statistics.mean(tokens[1:] if s > 1 else tokens)
  mid = lambda xs: statistics.median(xs[1:] if s > 1 else xs)
  out = {
      "peer": "foresight_jax",
      "prompts": n, "group": g, "max_new_tokens": t, "steps": s,
      "first_step_s": round(step_s[0], 4),
      "median_step_s": round(median_step, 4),
      "completion_tokens_per_s": round(tok_per_step / median_step, 1),
      "tokens_counted": "actual",
      "jax": jax.__version__,
      "seed": args.seed,
      "mesh_fsdp_tp": list(args.mesh),
      "step_s": [round(x, 4) for x in step_s],
      "completion_tokens_per_step": round(tok_per_step, 1),
      "reward_mean": round(float(np.mean(rewards)), 4),
      "max_param_update": float(f"{max_update:.3g}"),
      "reference_frozen": ref_frozen,
      "params": int(param_count(cfg)),
      "model": dict(arith_task.MODEL, max_prompt_length=width, beta=acfg.beta, aggregation=acfg.aggregation,
                    update_chunks=acfg.update_chunks),
      "flax": flax.__version__,
      "cpu_s_per_step": round(mid(cpu_s), 4),
      "minor_page_faults_per_step": int(mid(faults)),
      "loadavg_1m_before": load0,
      "setup_s": round(setup_s, 2),
      "wall_s": round(wall_s, 2),
      "cpu_count": os.cpu_count(),
  }
  if args.profile:
    out.update(profile=True, median_rollout_s=round(mid(roll_s), 4), median_update_s=round(mid(upd_s), 4),
               first_rollout_s=round(roll_s[0], 4), first_update_s=round(upd_s[0], 4))
  return out


# ------------------------------------------------------------------------------ side by side
def _child_args(args) -> list[str]:
  return ["--prompts", str(args.prompts), "--group", str(args.group), "--max-new-tokens",
          str(args.max_new_tokens), "--steps", str(args.steps), "--seed", str(args.seed), "--mesh",
          args.mesh_str]


def _run_json(cmd: list[str], env=None) -> dict:
  p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  if p.returncode != 0:
    sys.stderr.write(p.stderr[-4000:])
    raise SystemExit(f"{cmd[:3]} failed with {p.returncode}")
  return json.loads(p.stdout.strip().splitlines()[-1])


def side_by_side(args) -> None:
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")}
  peak = float(subprocess.run([PY, "-c", "from foresight_jax.train import metrics; "
                               "print(metrics.measure_peak_flops())"], cwd=ROOT, env=env, check=True,
                              stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1])
  print(json.dumps({"fp32_matmul_peak_flops": peak, "loadavg_1m": _loadavg()}), flush=True)
  base = [PY, os.path.abspath(__file__), *_child_args(args), "--work-dir", args.work_dir,
          "--aggregation", args.aggregation, "--prompt-width", args.prompt_width]
  variants = {"ours": base}
  for extra in args.ours_variants:  # extra flags, e.g. "--prompt-width auto"
    variants["ours " + extra] = base + extra.split()
  variants["tunix"] = ["bash", os.path.join(PEERS, "run_tunix_grpo.sh"), *_child_args(args),
                       "--work-dir", args.work_dir]
  runs = {k: [] for k in variants}
  for r in range(args.repeats):
    for side, cmd in variants.items():
      load = _loadavg()
      rec = _run_json(cmd, env)
      rec.update(side=side, repeat=r, loadavg_1m_before=rec.get("loadavg_1m_before", load))
      runs[side].append(rec)
      print(json.dumps(rec), flush=True)
  med = lambda side, k: statistics.median(x[k] for x in runs[side])
  summary = {"summary": True, "repeats": args.repeats, "fp32_matmul_peak_flops": peak}
  for side in variants:
    summary[side] = {"median_step_s": med(side, "median_step_s"), "first_step_s": med(side, "first_step_s"),
                     "completion_tokens_per_s": med(side, "completion_tokens_per_s")}
    if side != "tunix":
      summary[side].update(
          median_step_ratio_tunix_over_ours=round(med("tunix", "median_step_s") / med(side, "median_step_s"), 2),
          first_step_ratio_tunix_over_ours=round(med("tunix", "first_step_s") / med(side, "first_step_s"), 2),
          per_repeat_median_step_ratio=[round(t["median_step_s"] / o["median_step_s"], 2)
                                        for o, t in zip(runs[side], runs["tunix"])])
  head = summary["ours"]
  summary["median_step_ratio_tunix_over_ours"] = head["median_step_ratio_tunix_over_ours"]
  summary["first_step_ratio_tunix_over_ours"] = head["first_step_ratio_tunix_over_ours"]
  summary["target_met"] = head["median_step_ratio_tunix_over_ours"] >= 3.0 and head["first_step_ratio_tunix_over_ours"] >= 1.0
  print(json.dumps(summary), flush=True)


def main(argv=None):
  args = parse_args(argv)
  if args.with_tunix:  # the peer's children get this process's environment as it is
    side_by_side(args)
    return
  os.environ.setdefault("RL_STEP_T_START", repr(T_START))  # the first step counts from the first exec
  hostenv.reexec_with_huge_pages()  # ours as the CLI runs it (foresight_jax/hostenv.py)
  rec = run_ours(args)
  sys.stdout.write(json.dumps(rec) + "\n")
  sys.stdout.flush()


if __name__ == "__main__":
  main()
