"""Short real runs of both stages through `foresight-jax train` (subprocesses, 2 CPU devices).

WM-AMT tiny from scratch (own sentencepiece, synthetic world) -> metrics.jsonl + HF export with
its tokenizer; FE-SFT initialised from that export; the same WM-AMT run SIGKILLed after a
checkpoint and resumed, bitwise equal to the uninterrupted one; and a model-shape mismatch against
the WM-AMT checkpoint, which must fail before any compute.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from _sigkill import kill_after_checkpoint, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--config.data.branches=2", "--config.train.progress=False", "--config.train.tensorboard=False"]
WM_ARGS = ["--config", "configs/wm_amt.py:tiny", "--config.data.synthetic=48", "--config.data.seq_len=128",
           "--config.data.batch_size=4", "--config.train.checkpoint_every=2", *COMMON]
WM_STEPS = 6


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  e = dict(os.environ)
  e.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
           JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return e


def _train(env, *args, timeout=120) -> subprocess.CompletedProcess:
  p = subprocess.run([sys.executable, "-m", "foresight_jax.cli", "train", *args], env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=timeout)
  assert p.returncode == 0, f"rc={p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-4000:]}"
  return p


@pytest.fixture(scope="module")
def wm(env, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("wm_amt")
  p = _train(env, *WM_ARGS, f"--config.train.steps={WM_STEPS}", f"--config.workdir={workdir}")
  return workdir, p


def test_wm_amt_tiny_run(wm):
  workdir, p = wm
  done = json.loads(p.stdout.strip().splitlines()[-1])
  assert done["status"] == "completed" and done["step"] == WM_STEPS and done["export_dir"] == str(workdir / "hf")
  recs = read_metrics(workdir)
  assert [r["step"] for r in recs] == list(range(1, WM_STEPS + 1))
  assert all(math.isfinite(r["loss"]) and r["tokens"] > 0 for r in recs)
  assert {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"} <= set(os.listdir(workdir / "hf"))
  from foresight_jax.tokenizer import Tokenizer
  tok = Tokenizer.load(str(workdir / "hf"))
  assert tok.vocab_size == 512 and all(tok.is_single_token(t) for t in ("<foresight>", "<rollout>", "<success>"))
  hf_cfg = json.load(open(workdir / "hf" / "config.json"))
  assert hf_cfg["vocab_size"] == 512 and hf_cfg["num_hidden_layers"] == 2
  assert json.load(open(workdir / "stage_config.json"))["data"]["variant"] == "full"


def test_fe_sft_from_wm_export(env, wm, tmp_path, monkeypatch):
  wm_dir, _ = wm
  workdir = tmp_path / "fe_sft"
  # checkpoint every step: step 1 runs at lr 0 (warmup starts at 0), so its params are the init
  _train(env, "--config", "configs/fe_sft.py:tiny", f"--config.model.init_from={wm_dir / 'hf'}",
         "--config.data.synthetic=32", "--config.data.seq_len=512", "--config.data.batch_size=4",
         "--config.train.steps=3", "--config.train.checkpoint_every=1", "--config.train.keep=5",
         "--config.train.eval_every=3", "--config.data.eval_fraction=0.2", "--config.train.async_checkpoint=False",
         *COMMON, f"--config.workdir={workdir}")
  recs = read_metrics(workdir)
  assert [r["step"] for r in recs] == [1, 2, 3] and math.isfinite(recs[-1]["eval_loss"])
  assert recs[0]["lr"] == 0.0
  assert (workdir / "hf" / "model.safetensors").exists() and (workdir / "hf" / "tokenizer.model").exists()

  from foresight_jax.models.checkpoint import load_pretrained
  from foresight_jax.sharding import make_mesh
  from foresight_jax.train import optim, stages, state as state_lib
  from foresight_jax.train.checkpoint import Checkpointer
  mcfg = stages.checkpoint_model_config(str(wm_dir / "hf"), "float32")
  tx, _ = optim.make_optimizer(optim.OptimConfig())
  abstract, _ = state_lib.abstract_train_state(mcfg, tx, make_mesh(1, 1, 1, devices=jax.devices()[:1]))
  ckpt = Checkpointer(workdir / "checkpoints", async_save=False)
  try:
    state, _, _ = ckpt.restore(1, abstract)
  finally:
    ckpt.close()
  _, wm_params = load_pretrained(str(wm_dir / "hf"))
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(wm_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # FE-SFT started from WM-AMT's weights

  # the same command again resumes: its params come from the checkpoint, the init export is not read
  from foresight_jax import configs
  from foresight_jax.models import checkpoint as checkpoint_pkg
  from foresight_jax.train import loop
  monkeypatch.setattr(checkpoint_pkg, "load_pretrained", lambda *a, **k: pytest.fail("init export read on resume"))
  seen = {}
  monkeypatch.setattr(loop, "train", lambda *a, **k: seen.update(k) or loop.TrainResult("completed", 4, None, None))
  cfg = configs.load("configs/fe_sft.py:tiny", [f"model.init_from={wm_dir / 'hf'}", "data.synthetic=32",
                                                "data.seq_len=512", "data.batch_size=4", "train.steps=4", "mesh.data=2",
                                                "data.branches=2", f"workdir={workdir}"])
  assert stages.run(cfg)["status"] == "completed" and seen["init_params"] is None


def test_wm_amt_sigkill_after_checkpoint_resumes_bitwise(env, wm, tmp_path):
  """The real pipeline (synthetic world -> augment -> sentencepiece -> grain packing) inside the
  trainer: killed with SIGKILL after a checkpoint, restarted with the same command, its per-step
  loss and grad norm equal the uninterrupted run's (`wm`) bit for bit, so the grain iterator
  state restored with the checkpoint puts the stream exactly where it was."""
  workdir = tmp_path / "wm_killed"
  args = [*WM_ARGS, f"--config.train.steps={WM_STEPS}", f"--config.workdir={workdir}"]
  killed_at = kill_after_checkpoint(args, env, ROOT)
  ckpts = sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())
  assert ckpts and max(ckpts) <= killed_at < WM_STEPS, (ckpts, killed_at)
  tokenizer = (workdir / "tokenizer" / "tokenizer.model").read_bytes()
  p = _train(env, *args)
  assert f"resumed from checkpoint step {max(ckpts)}" in p.stdout, (ckpts, p.stdout[-2000:])
  assert (workdir / "tokenizer" / "tokenizer.model").read_bytes() == tokenizer  # never retrained
  got = {r["step"]: (r["loss"], r["grad_norm"], r["tokens"]) for r in read_metrics(workdir)}
  ref = {r["step"]: (r["loss"], r["grad_norm"], r["tokens"]) for r in read_metrics(wm[0])}
  assert sorted(got) == sorted(ref) == list(range(1, WM_STEPS + 1))
  diff = {s: (ref[s], got[s]) for s in ref if ref[s] != got[s]}  # exact float equality: bitwise
  assert not diff, f"killed after step {killed_at}, resumed from {max(ckpts)}: {diff}"
  print(f"killed after step {killed_at}, checkpoints {ckpts}; steps 1-{WM_STEPS} bitwise equal")


def test_checkpoint_mismatch_before_compute(wm, monkeypatch, capsys):
  from foresight_jax.train import cli_train, loop, stages_data
  boom = lambda *a, **k: pytest.fail("reached compute")  # noqa: E731
  monkeypatch.setattr(stages_data, "load_trajectories", boom)
  monkeypatch.setattr(loop, "train", boom)
  workdir = wm[0]
  lines = len(read_metrics(workdir))
  rc = cli_train.main([*WM_ARGS, "--config.mesh.data=2", "--config.model.config.hidden_size=32",
                       f"--config.workdir={workdir}"])
  err = capsys.readouterr().err
  assert rc == 2
  assert "tensor 'params/" in err and "model config differs: hidden_size: checkpoint 64 vs now 32" in err
  assert len(read_metrics(workdir)) == lines
