"""Shared benchmark helpers: same weights in ours and transformers, device peak, steady-state timing."""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np


def device_info() -> dict:
  d = jax.devices()[0]
  return {"platform": d.platform, "device": getattr(d, "device_kind", str(d)), "devices": jax.device_count(),
          "host": platform.node(), "cpus": os.cpu_count(), "jax": jax.__version__}


def peak_memory_gib() -> float | None:
  """Peak bytes the first device's allocator has handed out (None where the backend keeps no stats)."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else peak / 2 ** 30


def measured_matmul_peak(dtype=jnp.float32, n=None) -> float:
  """FLOP/s of a large square matmul: the practical ceiling MFU is quoted against on CPU."""
  n = n or (2048 if jax.devices()[0].platform == "cpu" else 8192)
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  t = timeit(lambda: f(a).block_until_ready(), min_time=1.0)
  return 2 * n ** 3 / t


def timeit(fn, min_time=2.0, min_reps=3) -> float:
  """Median seconds per call after one warm-up (the warm-up pays compilation)."""
  fn()
  times, start = [], time.perf_counter()
  while len(times) < min_reps or time.perf_counter() - start < min_time:
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def best_of(fn, reps: int) -> float:
  """Best seconds per call over `reps` calls after a warm-up call (which pays compilation); the
  result is blocked on, so asynchronous dispatch is inside the timing."""
  jax.block_until_ready(fn())
  best = float("inf")
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t0)
  return best


def load_both(preset: str | None, weights: str | None, dtype: str = "float32"):
  """(cfg, params, hf_model) holding identical weights: a real checkpoint, or our random init exported."""
  import torch
  import transformers
  from foresight_jax.models import params as params_lib, presets
  from foresight_jax.models.checkpoint import load_pretrained, save_pretrained

  if weights:
    cfg, params = load_pretrained(weights, dtype=dtype)
    if weights.endswith(".gguf"):
      hf = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(weights),
                                                             gguf_file=os.path.basename(weights),
                                                             dtype=torch.float32)
    else:
      hf = transformers.AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32)
  else:
    cfg = presets.model_config(preset, param_dtype=dtype)
    params = params_lib.init_params(cfg, jax.random.key(0))
    tmp = tempfile.mkdtemp()
    save_pretrained(cfg, params, tmp)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
  hf.train(False)  # inference mode (no dropout)
  return cfg, params, hf


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)
