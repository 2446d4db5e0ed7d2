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

import jax
import jax.numpy as jnp

import common
from foresight_jax import sampling
from foresight_jax.models import params as params_lib, presets


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
  steps = args.reps * args.new_tokens  # prefill included: one step's worth of the work at these lengths
  prof = common.kernel_profile(call, args.reps, steps, args.top)
  rec = {"bench": "decode_profile", "preset": args.preset, "batch": args.batch, "dtype": args.dtype,
         "new_tokens": args.new_tokens, "wall_ms_per_step": 1e3 * prof["wall_s_per_call"] / args.new_tokens,
         **prof, **common.device_info()}
  common.emit(rec)


if __name__ == "__main__":
  main()
