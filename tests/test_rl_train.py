"""`foresight-jax train --config configs/fc_rl.py:tiny` as real subprocesses: SIGKILL + resume is
bitwise exact, and 2 processes x 2 devices equal 1 process x 4 devices.

The runs start from the scripted agent of tests/_scripted_policy.py, exported as an HF checkpoint
(`--config.model.init_from`), built over the run's own worlds (rl.task_seed) with the gold answer
of one task as its answer word: it searches, answers, writes foresight blocks or not, so the
rewards differ within groups and every step has a real loss, gradient and KL. (From a random
init, every reward is 0, every advantage 0 and the loss identically 0: a resume check of loss,
reward and KL would compare zeros.)

`--config.data.tokenizer=` is needed with init_from: tiny sets data.tokenizer=train_sentencepiece,
and rl/train.py then gets no tokenizer (see test_tiny_init_from_needs_no_tokenizer_override).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from _sigkill import kill_after_checkpoint, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK_SEED, N_WORLDS, N_TASKS = 3, 2, 8
STEPS = 4
RL_ARGS = ["--config", "configs/fc_rl.py:tiny", f"--config.rl.tasks={N_TASKS}", f"--config.rl.n_worlds={N_WORLDS}",
           f"--config.rl.task_seed={TASK_SEED}", "--config.rl.prompts_per_step=2", "--config.rl.group_size=2",
           "--config.rl.max_turns=2", "--config.rl.max_turn_tokens=24", "--config.rl.max_prompt_tokens=384",
           "--config.rl.max_passage_tokens=48", "--config.train.checkpoint_every=2",
           "--config.train.progress=False", "--config.train.tensorboard=False", "--config.data.tokenizer="]
TIMING = {"tokens_per_s", "step_time_s", "mfu"}


def test_prompt_schedule_resumes_exactly_and_reshuffles_each_epoch():
  """The RL data order: each epoch a new seeded permutation, `prompts_per_step` tasks a step, each
  repeated group_size times; a schedule restored from a JSON round trip of get_state() goes on
  with the very next batch (the fast check of what the SIGKILL test checks end to end)."""
  from foresight_jax.rl.train import PromptSchedule

  class Env:  # the two things PromptSchedule reads of a TaskEnv
    tasks = list(range(10))

    def batch(self, idx, group):
      return {"task": np.repeat(np.asarray(idx), group)}

  s = PromptSchedule(Env(), prompts_per_step=3, group_size=2, seed=5)
  seq = [next(s)["task"] for _ in range(9)]  # 3 steps an epoch (10 // 3), 3 epochs
  assert all((b[0::2] == b[1::2]).all() and len(b) == 6 for b in seq)
  epochs = [np.concatenate([b[0::2] for b in seq[e * 3:(e + 1) * 3]]) for e in range(3)]
  assert all(len(set(e.tolist())) == 9 for e in epochs)  # no task twice within an epoch
  assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
  again = PromptSchedule(Env(), 3, 2, seed=5)
  for _ in range(4):
    next(again)
  state = json.loads(json.dumps(again.get_state()))
  resumed = PromptSchedule(Env(), 3, 2, seed=5)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["task"], seq[4])
  np.testing.assert_array_equal(next(resumed)["task"], seq[5])


@pytest.fixture(scope="module")
def agent_hf(tmp_path_factory) -> str:
  """The scripted agent over the run's worlds, saved as an HF dir with its tokenizer."""
  from _scripted_policy import scripted_agent
  from foresight_jax.data.generate import GenConfig, generate, make_worlds
  from foresight_jax.data.render import render_prompt
  from foresight_jax.models.checkpoint import save_pretrained
  gcfg = GenConfig(seed=TASK_SEED, n_worlds=N_WORLDS, math_fraction=0.0)  # what rl/train.py builds
  worlds = make_worlds(gcfg)
  tasks = [t.task for t in generate(gcfg, N_TASKS, worlds=worlds)]
  query = worlds[0].docs[3][0].split()[0]
  texts = tuple(d for w in worlds for _, d in w.docs[:40]) + tuple(render_prompt(t) for t in tasks) * 3
  cfg, params, tok = scripted_agent(query, tasks[0].answers[0], texts)
  out = str(tmp_path_factory.mktemp("agent") / "hf")
  save_pretrained(cfg, params, out)
  tok.save(out)
  return out


def _env(devices: int, cache: str | None = None) -> dict:
  e = dict(os.environ)
  e.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  if cache:
    e.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return e


def _args(agent, workdir, *extra) -> list[str]:
  return [*RL_ARGS, f"--config.model.init_from={agent}", f"--config.workdir={workdir}", *extra]


def _train(env, args, timeout=300) -> subprocess.CompletedProcess:
  p = subprocess.run([sys.executable, "-m", "foresight_jax.cli", "train", *args], env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=timeout)
  assert p.returncode == 0, f"rc={p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-4000:]}"
  return p


def _ckpt_state(workdir, step: int) -> dict:
  """Checkpoint `step`'s state as numpy (no target: read as saved)."""
  import jax
  import orbax.checkpoint as ocp
  from foresight_jax.train.checkpoint import Checkpointer
  ck = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=None, async_save=False)
  try:
    out = ck.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                           data=ocp.args.JsonRestore()))
  finally:
    ck.close()
  return {"state": jax.tree.map(np.asarray, out["state"]), "data": out["data"]}


# ------------------------------------------------------------------------------ SIGKILL + resume
@pytest.fixture(scope="module")
def resume_env(tmp_path_factory):
  # one compilation cache for the three runs: the restarts load the step the first run compiled
  # (the cached executable is the one a fresh compile produces: no number can change)
  return _env(2, str(tmp_path_factory.mktemp("jax_cache")))


@pytest.fixture(scope="module")
def uninterrupted(agent_hf, resume_env, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("rl_ref")
  t = time.time()
  _train(resume_env, _args(agent_hf, workdir, f"--config.train.steps={STEPS}"))
  print(f"uninterrupted fc_rl run: {time.time() - t:.1f}s")
  return workdir


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_is_bitwise_exact(agent_hf, resume_env, uninterrupted, tmp_path):
  workdir = tmp_path / "killed"
  args = _args(agent_hf, workdir, f"--config.train.steps={STEPS}")
  killed_at = kill_after_checkpoint(args, resume_env, ROOT)
  ckpts = sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())
  assert ckpts == [2] and killed_at == 3, (ckpts, killed_at)
  assert [r["step"] for r in read_metrics(workdir)] == [1, 2, 3]

  p = _train(resume_env, args)
  assert "resumed from checkpoint step 2" in p.stdout, p.stdout[-2000:]
  got, ref = read_metrics(workdir), read_metrics(uninterrupted)
  assert [r["step"] for r in got] == [r["step"] for r in ref] == list(range(1, STEPS + 1))
  for key in ("loss", "reward", "grad_norm", "kl", "response_tokens"):
    assert all(key in r for r in ref), key
  # the whole step's MFU, from its model FLOPs (rollout + update) and its wall time
  assert all(0 < r["mfu"] < 1 for r in ref), [r.get("mfu") for r in ref]
  # the run is not trivial: rewards vary, the policy moves away from the reference
  assert any(r["adv_abs"] > 0 for r in ref) and ref[0]["kl"] == 0 and ref[-1]["kl"] > 0
  # every logged figure but the timings, bit for bit (exact float equality)
  diff = {r["step"]: {k: (r[k], g[k]) for k in r if k not in TIMING and r[k] != g.get(k)} for r, g in zip(ref, got)}
  diff = {s: d for s, d in diff.items() if d}
  assert not diff, f"killed after step {killed_at}, resumed from 2: {diff}"

  # the checkpoints: the resumed run's final state is the uninterrupted run's, bit for bit
  import jax
  from foresight_jax.models.checkpoint import load_pretrained
  final, final_ref, at2 = _ckpt_state(workdir, STEPS), _ckpt_state(uninterrupted, STEPS), _ckpt_state(workdir, 2)
  assert final["data"] == final_ref["data"] == {"iterator": {"k": STEPS}}
  jax.tree.map(np.testing.assert_array_equal, final["state"], final_ref["state"])
  # the reference is frozen at the initial (HF) params; the policy moved; a fresh key every step
  _, init = load_pretrained(agent_hf)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), init, final["state"]["ref_params"])
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), init, at2["state"]["ref_params"])
  assert not np.array_equal(final["state"]["params"]["lm_head"], np.asarray(init["lm_head"]))
  assert not np.array_equal(final["state"]["rng"], at2["state"]["rng"])
  assert int(final["state"]["step"]) == STEPS and int(at2["state"]["step"]) == 2
  print(f"killed after step {killed_at}, resumed from checkpoint 2: steps 1-{STEPS} and the final state bitwise "
        f"equal")


# ------------------------------------------------------------------------------ 2 processes vs 1
def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


MH_STEPS = 3
MH_ARGS = [f"--config.train.steps={MH_STEPS}", "--config.mesh.data=1", "--config.mesh.fsdp=-1"]


@pytest.fixture(scope="module")
def two_and_one(agent_hf, tmp_path_factory):
  """2 processes x 2 devices and 1 process x 4 devices, mesh fsdp=4 (params and Adam state
  sharded across the processes, rows too): the same global batch every step."""
  base = tmp_path_factory.mktemp("rl_multihost")
  port = _free_port()
  multi, single = base / "multi", base / "single"
  t = time.time()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "foresight_jax.cli", "train", *_args(agent_hf, multi, *MH_ARGS),
       f"--config.distributed.coordinator_address=127.0.0.1:{port}", "--config.distributed.num_processes=2",
       f"--config.distributed.process_id={i}"],
      env=_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  try:
    outs = [p.communicate(timeout=400)[0] for p in procs]
  finally:
    for p in procs:  # a process left waiting on its peer would otherwise outlive the test
      if p.poll() is None:
        p.kill()
        p.wait()
  print(f"2 processes: {time.time() - t:.1f}s")
  t = time.time()
  _train(_env(4), _args(agent_hf, single, *MH_ARGS))
  print(f"1 process: {time.time() - t:.1f}s")
  return dict(multi=multi, single=single, outs=outs, rcs=[p.returncode for p in procs])


@pytest.mark.slow
def test_two_processes_match_one_process(two_and_one):
  m, r = read_metrics(two_and_one["multi"]), read_metrics(two_and_one["single"])
  outs = two_and_one["outs"]
  assert [x["step"] for x in m] == [x["step"] for x in r] == list(range(1, MH_STEPS + 1)), (outs[0][-3000:],)
  assert r[0]["adv_abs"] > 0 and r[-1]["kl"] > 0  # a real update every step
  plan = json.loads(next(line for line in outs[0].splitlines() if line.startswith('{"stage"')))
  assert plan["rows_per_step"] == 4 and plan["mesh"] == [1, 4, 1]
  # the same rollouts (counts exact), the same update up to the cross-process reduction order
  for key in ("response_tokens", "trained_tokens", "answered", "searches"):
    assert [x[key] for x in m] == [x[key] for x in r], (key, [x[key] for x in m], [x[key] for x in r])
  # the mean reward is a float mean of weighted components, summed in another order over 2 processes
  # (0.6749999523 against 0.6750000119 once): equal to float32 rounding, not bitwise
  np.testing.assert_allclose([x["reward"] for x in m], [x["reward"] for x in r], rtol=1e-6, atol=0)
  rel = {k: max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for a, b in zip(m, r))
         for k in ("loss", "grad_norm", "kl", "adv_abs")}
  print("2 processes vs 1: max relative difference " + ", ".join(f"{k} {v:.3g}" for k, v in rel.items()))
  np.testing.assert_allclose([x["loss"] for x in m], [x["loss"] for x in r], rtol=2e-6, atol=0)
  np.testing.assert_allclose([x["grad_norm"] for x in m], [x["grad_norm"] for x in r], rtol=2e-6, atol=0)
  np.testing.assert_allclose([x["kl"] for x in m], [x["kl"] for x in r], rtol=1e-4, atol=1e-9)
  np.testing.assert_allclose([x["adv_abs"] for x in m], [x["adv_abs"] for x in r], rtol=2e-6, atol=0)
  assert two_and_one["rcs"][1] == 0, outs[1][-3000:]
  assert sorted(os.listdir(two_and_one["multi"] / "checkpoints")) == ["2", "3"]


@pytest.mark.slow
def test_two_process_run_exports_the_policy(two_and_one):
  assert two_and_one["rcs"] == [0, 0], two_and_one["outs"][0][-3000:]
  assert {"config.json", "model.safetensors", "tokenizer.model"} <= set(os.listdir(two_and_one["multi"] / "hf"))


# ------------------------------------------------------------------------------ init_from
def test_tiny_init_from_needs_no_tokenizer_override(agent_hf, capsys, monkeypatch, tmp_path):
  """The command configs/fc_rl.py documents: `--config configs/fc_rl.py:tiny --config.model.init_from=DIR`."""
  from foresight_jax.train import cli_train
  monkeypatch.chdir(ROOT)
  # 4 prompts x 2 = 8 rows: the 8 devices of this test process
  args = [a for a in _args(agent_hf, tmp_path / "w", "--config.rl.prompts_per_step=4")
          if a != "--config.data.tokenizer="]
  rc = cli_train.main([*args, "--dry_run"])
  out = capsys.readouterr().out
  assert rc == 0 and json.loads(out.strip().splitlines()[-1])["init_from"] == agent_hf
