"""Host-side metric sinks for the train loop: `<workdir>/metrics.jsonl`, TensorBoard, and MFU.

metrics.jsonl holds one JSON object per step (`step`, `loss`, ...). On resume it is cut back to
the restored step first, so a run killed after its last checkpoint and restarted still has
exactly one line per step (the re-run steps replace the lost ones; with exact resume they are
bit-identical anyway). TensorBoard gets the same scalars via tensorboardX (no TensorFlow needed);
`purge_step` makes TensorBoard drop the events a killed run wrote past the checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s per device (vendor figures, no sparsity), by `device_kind` substring.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 70e12,
              "TPU v5 lite": 197e12, "TPU v5p": 459e12, "TPU v4": 275e12}
_measured: dict[str, float] = {}


def measure_peak_flops(n: int = 1024, reps: int = 5) -> float:
  """FLOP/s of a jitted n x n fp32 matmul on one device: the CPU 'peak' MFU is measured against
  (CPUs have no meaningful vendor figure for XLA's kernels). Measured once per process."""
  if "v" in _measured:
    return _measured["v"]
  dev = jax.devices()[0]
  a = jax.device_put(jnp.ones((n, n), jnp.float32), dev)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = math.inf
  for _ in range(reps):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  _measured["v"] = 2.0 * n ** 3 / best
  return _measured["v"]


def peak_flops_total(n_devices: int, configured_per_device: float | None = None) -> float:
  """Peak FLOP/s of the whole mesh: configured or vendor figure per device x devices; else (CPU)
  a measured matmul. The measurement is not multiplied: XLA:CPU's matmul already uses every core,
  and forced host "devices" (--xla_force_host_platform_device_count) share those same cores."""
  if configured_per_device:
    return float(configured_per_device) * n_devices
  kind = jax.devices()[0].device_kind
  for name, flops in PEAK_FLOPS.items():
    if name.lower() in kind.lower():
      return flops * n_devices
  return measure_peak_flops()


def _scalar(v: Any) -> float | int:
  a = np.asarray(v)
  return int(a) if a.dtype.kind in "iub" else float(a)


def _truncate_jsonl(path: str, last_step: int) -> None:
  """Keep the lines with step <= last_step (atomically: a kill mid-rewrite leaves the old file)."""
  if not os.path.exists(path):
    return
  keep = []
  with open(path) as fh:
    for line in fh:
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:  # a line torn by a kill mid-write
        continue
      if isinstance(rec, dict) and rec.get("step", math.inf) <= last_step:
        keep.append(json.dumps(rec, sort_keys=True) + "\n")
  tmp = path + ".tmp"
  with open(tmp, "w") as fh:
    fh.writelines(keep)
  os.replace(tmp, path)


class MetricsWriter:
  """Appends one record per step to metrics.jsonl (flushed each line) and to TensorBoard."""

  def __init__(self, workdir: str, start_step: int = 0, tensorboard: bool = True):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._fh = self._tb = None
    if jax.process_index() != 0:  # one writer per run (workdirs are usually shared between hosts)
      return
    _truncate_jsonl(self.path, start_step)
    self._fh = open(self.path, "a")
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter
      except ImportError:
        log.warning("tensorboardX is not installed: metrics go to metrics.jsonl only "
                    "(pip install tensorboardX for TensorBoard event files)")
      else:
        self._tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=start_step + 1)

  def write(self, record: dict[str, Any]) -> dict[str, Any]:
    rec = {k: (_scalar(v) if not isinstance(v, (str, list, dict)) else v) for k, v in record.items()}
    if self._fh is not None:
      self._fh.write(json.dumps(rec, sort_keys=True) + "\n")
      self._fh.flush()  # the resume tests (and people tailing the file) read it while we run
      if self._tb is not None:
        for k, v in rec.items():
          if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
            self._tb.add_scalar(f"train/{k}", v, rec["step"])
    return rec

  def close(self) -> None:
    if self._fh is not None:
      self._fh.close()
    if self._tb is not None:
      self._tb.close()
