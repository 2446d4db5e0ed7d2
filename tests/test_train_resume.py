"""Exact resume, SIGTERM and interrupted-save tests: real subprocesses of `train.loop_main`.

Every run is the tiny preset, seq 64, batch 4, 12 steps, a checkpoint every 3 steps, on a 2-device
(data=2) CPU mesh so checkpoints hold sharded arrays. A persistent compilation cache shared by the
runs of this module keeps each restart at a few seconds (the cached executable is the one a fresh
compile produces, so it cannot change the numbers being compared).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

STEPS = 12
ARGS = ["--preset", "tiny", "--steps", str(STEPS), "--seq", "64", "--batch", "4", "--checkpoint-every", "3",
        "--mesh", "2,1,1", "--no-progress", "--max-to-keep", "2"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  e = dict(os.environ)
  e.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
           JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
           PYTHONUNBUFFERED="1")
  return e


def _cmd(workdir, *extra):
  return [sys.executable, "-m", "foresight_jax.train.loop_main", "--workdir", str(workdir), *ARGS, *extra]


def _run(workdir, env, *extra, timeout=120):
  p = subprocess.run(_cmd(workdir, *extra), env=env, capture_output=True, text=True, timeout=timeout)
  assert p.returncode == 0, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr[-4000:]}"
  return p


def _records(workdir) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as fh:
    for line in fh:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:  # a line being written right now
        pass
  return out


def _wait_for_step(proc, workdir, step, timeout=90) -> int:
  t = time.time()
  while time.time() - t < timeout:
    recs = _records(workdir)
    if recs and recs[-1]["step"] >= step:
      return recs[-1]["step"]
    if proc.poll() is not None:
      raise AssertionError(f"run ended (rc={proc.returncode}) before step {step}: {proc.stderr.read()[-3000:]}")
    time.sleep(0.02)
  raise AssertionError(f"step {step} not reached in {timeout}s")


def _losses(workdir) -> dict[int, tuple[float, float]]:
  recs = _records(workdir)
  steps = [r["step"] for r in recs]
  assert steps == list(range(1, STEPS + 1)), f"expected one record per step, got steps {steps}"
  return {r["step"]: (r["loss"], r["grad_norm"]) for r in recs}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
  workdir = tmp_path_factory.mktemp("ref")
  t = time.time()
  p = _run(workdir, env)
  print(f"uninterrupted run: {time.time() - t:.1f}s")
  assert "completed at step 12" in p.stdout
  return workdir


def test_metrics_jsonl_tensorboard_and_export(reference):
  recs = _records(reference)
  assert [r["step"] for r in recs] == list(range(1, STEPS + 1))
  for r in recs:
    for key in ("loss", "grad_norm", "lr", "tokens", "tokens_per_s", "mfu", "skipped", "nonfinite"):
      assert key in r, (key, r)
    assert np.isfinite(r["loss"]) and r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1
    assert r["skipped"] == 0 and r["nonfinite"] == 0
  # warmup 2 steps to 3e-3 (the CLI's defaults), then cosine
  assert recs[0]["lr"] == 0.0 and recs[1]["lr"] == pytest.approx(1.5e-3) and recs[2]["lr"] == pytest.approx(3e-3)
  assert recs[-1]["loss"] < recs[0]["loss"]
  tb = os.listdir(os.path.join(reference, "tb"))
  assert any(n.startswith("events.out.tfevents") for n in tb), tb
  assert sorted(os.listdir(os.path.join(reference, "hf"))) == ["config.json", "model.safetensors"]
  # keep-N: only the 2 newest checkpoints remain
  assert sorted(int(s) for s in os.listdir(os.path.join(reference, "checkpoints")) if s.isdigit()) == [9, 12]


def test_sigkill_at_random_step_then_restart_is_bitwise_identical(reference, env, tmp_path):
  kill_after = random.Random().randint(4, 10)  # printed on failure to reproduce
  proc = subprocess.Popen(_cmd(tmp_path, "--data-delay", "0.3"), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    reached = _wait_for_step(proc, tmp_path, kill_after)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
  assert proc.returncode == -signal.SIGKILL
  ckpts = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert ckpts and max(ckpts) <= reached + 1, (ckpts, reached)
  logged = _records(tmp_path)[-1]["step"]
  print(f"killed after step {reached} (target {kill_after}); checkpoints {ckpts}; logged up to {logged}")
  p = _run(tmp_path, env)
  assert f"resumed from checkpoint step {max(ckpts)}" in p.stdout, (kill_after, reached, ckpts, p.stdout)
  ref, got = _losses(reference), _losses(tmp_path)
  diff = {s: (ref[s], got[s]) for s in ref if ref[s] != got[s]}  # exact float equality: bitwise
  assert not diff, f"killed after step {reached} (target {kill_after}), resumed at {max(ckpts)}: {diff}"


def test_sigterm_saves_and_exits_zero_then_resumes_next_step(reference, env, tmp_path):
  proc = subprocess.Popen(_cmd(tmp_path, "--data-delay", "0.3"), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    _wait_for_step(proc, tmp_path, 5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, err[-3000:]
  assert "SIGTERM: saved checkpoint at step" in out, out
  saved = int(out.split("SIGTERM: saved checkpoint at step ")[1].split()[0])
  assert 5 <= saved < STEPS
  assert str(saved) in os.listdir(tmp_path / "checkpoints")
  assert _records(tmp_path)[-1]["step"] == saved  # everything up to the saved step was logged
  p = _run(tmp_path, env)
  assert f"resumed from checkpoint step {saved}" in p.stdout
  assert _losses(tmp_path) == _losses(reference)


_CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    import jax, jax.numpy as jnp
    from foresight_jax.train.checkpoint import Checkpointer
    from foresight_jax.train.state import TrainState

    def state(v):  # 64 MiB of params: the async write takes long enough to be killed mid-way
      return TrainState(step=jnp.int32(v), params={"w": jnp.full((4096, 4096), float(v))}, opt_state=(),
                        rng=jnp.full((2,), v, jnp.uint32), skipped=jnp.int32(0))

    ck = Checkpointer(sys.argv[1], max_to_keep=1)
    ck.save(1, state(1), {"index": 1}); ck.wait()
    ck.save(2, state(2), {"index": 2})   # async: returns while the background write runs
    t = time.time()   # kill as soon as the write is under way (its tmp dir exists), never after commit
    while not any(".orbax-checkpoint-tmp" in n for n in os.listdir(sys.argv[1])) and time.time() - t < 30:
      time.sleep(0.0005)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_interrupted_async_save_never_replaces_last_good_checkpoint(env, tmp_path):
  import jax
  from foresight_jax.train.checkpoint import Checkpointer
  from foresight_jax.train.state import TrainState

  ckdir = tmp_path / "ck"
  p = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT, str(ckdir)], env=env, capture_output=True, text=True,
                     timeout=120)
  assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
  names = os.listdir(ckdir)
  assert "1" in names and "2" not in names, names  # max_to_keep=1, yet step 1 survives
  assert any(".orbax-checkpoint-tmp" in n for n in names), names  # the killed write's leftovers
  # a second kind of leftover: a tmp dir of a later step with a partial payload
  os.makedirs(ckdir / "3.orbax-checkpoint-tmp-1" / "state")

  abstract = TrainState(step=jax.ShapeDtypeStruct((), np.int32), params={"w": jax.ShapeDtypeStruct((4096, 4096), np.float32)},
                        opt_state=(), rng=jax.ShapeDtypeStruct((2,), np.uint32), skipped=jax.ShapeDtypeStruct((), np.int32))
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=dev), abstract)
  ck = Checkpointer(ckdir, max_to_keep=1)
  try:
    assert ck.latest_step() == 1
    state, data, _ = ck.restore_latest(abstract)
    assert int(state.step) == 1 and float(state.params["w"][0, 0]) == 1.0 and data == {"index": 1}
  finally:
    ck.close()
  assert not any(".orbax-checkpoint-tmp" in n for n in os.listdir(ckdir))  # cleaned on open
