"""Where a decode step's time goes: GPU busy time vs wall time, and kernel time by kind.

Issue 10 asks to profile decode before changing it. `decode_kernels.py` counts the kernels in the
compiled loop body; this traces the jitted sampler with `jax.profiler`, reads the trace back with
`jax.profiler.ProfileData` and splits the wall time of a decode step into time the GPU spent in
kernels and time it sat idle between them (launch overhead when the body has hundreds of small
kernels). Kernel names are grouped by kind (trailing ids dropped). Prints one JSON line. GPU:
  python benchmarks/decode_profile.py --preset youtu_llm_2b --batch 1 --dtype bfloat16
On a CPU the trace has no device plane; the record then holds the wall time only.
"""
from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time

import jax
import jax.numpy as jnp

import common
from foresight_jax import sampling
from foresight_jax.models import params as params_lib, presets


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


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--preset", default="tiny")
  ap.add_argument("--batch", type=int, default=1)
  ap.add_argument("--prompt-len", type=int, default=32)
  ap.add_argument("--new-tokens", type=int, default=64)
  ap.add_argument("--dtype", default="float32")
  ap.add_argument("--reps", type=int, default=3, help="traced sampler calls")
  ap.add_argument("--top", type=int, default=12)
  args = ap.parse_args()
  cfg = presets.model_config(args.preset, param_dtype=args.dtype).replace(compute_dtype=args.dtype)
  params = params_lib.init_params(cfg, jax.random.key(0))
  prompt = jnp.full((args.batch, args.prompt_len), 3, jnp.int32)
  lengths = jnp.full((args.batch,), args.prompt_len, jnp.int32)
  sp = sampling.SamplingParams.make(args.batch, temperature=0.0)

  def call():
    out = sampling.sample_jit(cfg, params, prompt, lengths, jax.random.key(0), sp, None,
                              max_new_tokens=args.new_tokens)
    jax.block_until_ready(out.tokens)

  call()
  call()
  trace_dir = tempfile.mkdtemp(prefix="decode_trace_")
  with jax.profiler.trace(trace_dir):
    t0 = time.perf_counter()
    for _ in range(args.reps):
      call()
    wall = (time.perf_counter() - t0) / args.reps
  kernels = device_kernels(sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1])
  steps = args.reps * args.new_tokens  # prefill included: one step's worth of the work at these lengths
  rec = {"bench": "decode_profile", "preset": args.preset, "batch": args.batch, "dtype": args.dtype,
         "new_tokens": args.new_tokens, "wall_ms_per_step": 1e3 * wall / args.new_tokens,
         **common.device_info()}
  if kernels:
    by_kind = collections.defaultdict(lambda: [0, 0.0])
    for name, _, dur in kernels:
      by_kind[kernel_kind(name)][0] += 1
      by_kind[kernel_kind(name)][1] += dur
    top = sorted(by_kind.items(), key=lambda kv: -kv[1][1])[:args.top]
    span = max(s + d for _, s, d in kernels) - min(s for _, s, _ in kernels)
    rec.update(
        kernels_per_step=len(kernels) / steps,
        kernel_ms_per_step=sum(d for *_, d in kernels) / steps / 1e6,
        busy_ms_per_step=busy_ns(kernels) / steps / 1e6,
        traced_span_ms_per_step=span / steps / 1e6,
        busy_fraction_of_span=busy_ns(kernels) / span,
        mean_kernel_us=sum(d for *_, d in kernels) / len(kernels) / 1e3,
        by_kind={k: {"per_step": n / steps, "ms_per_step": t / steps / 1e6} for k, (n, t) in top})
  else:  # no GPU stream lines: name what the trace holds, to adapt the reader
    data = jax.profiler.ProfileData.from_file(sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1])
    rec["trace_lines"] = {pl.name: [ln.name for ln in pl.lines][:6] for pl in data.planes}
  common.emit(rec)


if __name__ == "__main__":
  main()
