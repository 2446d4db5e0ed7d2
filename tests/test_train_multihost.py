"""Multi-host: `foresight-jax train` as 2 processes x 2 CPU devices equals 1 process x 4 devices.

The two processes meet through `jax.distributed.initialize(coordinator_address=127.0.0.1:PORT,
num_processes=2, process_id=i)` (from `--config.distributed.*`) and run cross-process CPU
collectives over gloo (jax's default CPU collectives implementation). With
`data.host_sharding=slice` each process builds the same global batch and feeds only its rows
(`jax.make_array_from_process_local_data` in `step.shard_batch`), so the per-step losses must
equal a single-process run on 4 devices with the same global batch, up to the order in which
the gradient all-reduce sums (gloo's ring vs XLA:CPU's in-process reduction: a float32 ulp).

The mesh is fsdp=4: parameters and Adam state are sharded across both processes, so the run
also covers the multi-process checkpoint save and the HF export's cross-host gather.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np

ARGS = ["--config", "configs/wm_amt.py:tiny", "--config.data.synthetic=32", "--config.data.branches=2",
        "--config.data.seq_len=128", "--config.data.batch_size=8", "--config.train.steps=4",
        "--config.train.checkpoint_every=2", "--config.train.progress=False", "--config.train.tensorboard=False",
        "--config.data.host_sharding=slice", "--config.mesh.data=1", "--config.mesh.fsdp=-1"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(devices: int) -> dict:
  e = dict(os.environ)
  e.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
           PYTHONUNBUFFERED="1")
  return e


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _cmd(workdir, *extra):
  return [sys.executable, "-m", "foresight_jax.cli", "train", *ARGS, f"--config.workdir={workdir}", *extra]


def _metrics(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as fh:
    return [json.loads(line) for line in fh]


def test_two_processes_match_one(tmp_path):
  port = _free_port()
  multi = tmp_path / "multi"
  procs = [subprocess.Popen(
      _cmd(multi, f"--config.distributed.coordinator_address=127.0.0.1:{port}",
           "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"),
      env=_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  try:
    outs = [p.communicate(timeout=240)[0] for p in procs]
  finally:
    for p in procs:  # a process left waiting on its peer would otherwise outlive the test
      if p.poll() is None:
        p.kill()
        p.wait()
  for i, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, f"process {i} rc={p.returncode}\n{out[-4000:]}"
  single = tmp_path / "single"
  s = subprocess.run(_cmd(single), env=_env(4), cwd=ROOT, capture_output=True, text=True, timeout=240)
  assert s.returncode == 0, s.stderr[-4000:]

  plan = json.loads(next(line for line in outs[0].splitlines() if line.startswith('{"stage"')))
  assert plan["processes"] == 2 and plan["devices"] == 4 and plan["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
  # only process 0 reports and writes: one metrics line per step, one export
  assert not any(line.startswith('{"stage"') for line in outs[1].splitlines())
  m, r = _metrics(multi), _metrics(single)
  assert [x["step"] for x in m] == [x["step"] for x in r] == [1, 2, 3, 4]
  assert [x["tokens"] for x in m] == [x["tokens"] for x in r]  # same global batches
  rel = {k: max(abs(a[k] / b[k] - 1) for a, b in zip(m, r)) for k in ("loss", "grad_norm")}
  print(f"2 processes vs 1: max relative difference loss {rel['loss']:.3g}, grad_norm {rel['grad_norm']:.3g}")
  np.testing.assert_allclose([x["loss"] for x in m], [x["loss"] for x in r], rtol=2e-6, atol=0)
  np.testing.assert_allclose([x["grad_norm"] for x in m], [x["grad_norm"] for x in r], rtol=2e-6, atol=0)
  assert r[-1]["loss"] < r[0]["loss"]  # it trains
  assert sorted(os.listdir(multi / "checkpoints")) == ["2", "4"]
  assert {"config.json", "model.safetensors", "tokenizer.model"} <= set(os.listdir(multi / "hf"))
