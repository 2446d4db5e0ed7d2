"""Shared benchmark helpers: same weights in ours and transformers, device peak, steady-state timing."""
from __future__ import annotations

import collections
import glob
import json
import os
import platform
import re
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


def timeit(fn, min_time=2.0, min_reps=3, warmup: bool = True) -> float:
  """Median seconds per call after one warm-up (the warm-up pays compilation)."""
  if warmup:
    fn()
  times, start = [], time.perf_counter()
  while len(times) < min_reps or time.perf_counter() - start < min_time:
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def interleaved(fns: dict, rounds: int = 3, min_time: float = 2.0) -> dict[str, list[float]]:
  """Median seconds per call of each function, for `rounds` rounds that take the functions in turn
  (a, b, a, b, ...): the host's drift (up to ±30% within minutes on a shared CPU host) then falls on
  every side alike, so per-round ratios compare. One function alone is timed in one round."""
  rounds = rounds if len(fns) > 1 else 1
  times = {name: [] for name in fns}
  for r in range(rounds):
    for name, fn in fns.items():
      times[name].append(timeit(fn, min_time / rounds, warmup=r == 0))
  return times


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


def kernel_kind(name: str) -> str:
  """'triton_gemm_fusion_123' -> 'triton_gemm_fusion'; 'loop_add_fusion.4' -> 'loop_add_fusion'."""
  return re.sub(r"([_.]?\d+)+$", "", name.split("(")[0].split("<")[0]) or name


def device_kernels(xplane_path: str) -> list[tuple[str, float, float]]:
  """(name, start_ns, duration_ns) of every event on a GPU stream line of the trace."""
  data = jax.profiler.ProfileData.from_file(xplane_path)
  out = []
  for plane in data.planes:
    if not plane.name.startswith("/device:GPU"):
      continue
    for line in plane.lines:
      if "stream" not in line.name.lower():  # skip the derived "XLA Ops" / "XLA Modules" lines
        continue
      out.extend((ev.name, ev.start_ns, ev.duration_ns) for ev in line.events)
  return out


def busy_ns(kernels) -> float:
  """Union of the kernels' intervals: time at least one kernel ran (streams can overlap)."""
  total, end = 0.0, -1.0
  for _, s, d in sorted(kernels, key=lambda k: k[1]):
    e = s + d
    if e > end:
      total += e - max(s, end)
      end = e
  return total


def kernel_profile(fn, reps: int, steps: int, top: int = 12) -> dict:
  """Trace `reps` calls of `fn` with `jax.profiler` and split the GPU's time per step (`steps` in
  all the calls): kernel count, kernel time, busy time (union of kernel intervals) against the
  traced span, and the `top` kernel kinds by time; `wall_s_per_call` is timed under the trace.
  Without GPU stream lines in the trace (CPU) it names what the trace holds instead."""
  trace_dir = tempfile.mkdtemp(prefix="trace_")
  with jax.profiler.trace(trace_dir):
    t0 = time.perf_counter()
    for _ in range(reps):
      fn()
    wall = (time.perf_counter() - t0) / reps
  path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
  kernels = device_kernels(path)
  if not kernels:
    data = jax.profiler.ProfileData.from_file(path)
    return {"wall_s_per_call": wall,
            "trace_lines": {pl.name: [ln.name for ln in pl.lines][:6] for pl in data.planes}}
  by_kind = collections.defaultdict(lambda: [0, 0.0])
  for name, _, dur in kernels:
    by_kind[kernel_kind(name)][0] += 1
    by_kind[kernel_kind(name)][1] += dur
  ranked = sorted(by_kind.items(), key=lambda kv: -kv[1][1])[:top]
  span = max(s + d for _, s, d in kernels) - min(s for _, s, _ in kernels)
  busy = busy_ns(kernels)
  return {"wall_s_per_call": wall, "kernels_per_step": len(kernels) / steps,
          "kernel_ms_per_step": sum(d for *_, d in kernels) / steps / 1e6,
          "busy_ms_per_step": busy / steps / 1e6, "traced_span_ms_per_step": span / steps / 1e6,
          "busy_fraction_of_span": busy / span, "mean_kernel_us": sum(d for *_, d in kernels) / len(kernels) / 1e3,
          "by_kind": {k: {"per_step": n / steps, "ms_per_step": t / steps / 1e6} for k, (n, t) in ranked}}


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)
