"""Kernels per generated token: count the ops of the compiled sampler's decode-loop body.

Decode at small batch is launch-bound when the loop body launches hundreds of kernels per token
(BUILD_NOTES, GPU throughput). This compiles `sampling.sample_jit` for a preset, finds the while
loops of the compiled HLO and counts each body's fusions by kind and by fused computation.
Prints one JSON line; `--hlo FILE` also writes the compiled HLO text. GPU:
  python benchmarks/decode_kernels.py --preset youtu_llm_2b --batch 128 --dtype bfloat16
"""
from __future__ import annotations

import argparse
import collections
import re

import jax
import jax.numpy as jnp

import common
from foresight_jax import sampling
from foresight_jax.models import params as params_lib, presets


def computations(hlo: str) -> dict[str, list[str]]:
  """Computation name -> its instruction lines."""
  out, cur = {}, None
  for line in hlo.splitlines():
    head = re.match(r"^(?:ENTRY )?(%?[\w.\-]+) .*\{$", line)
    if head:
      cur = head.group(1)
      out[cur] = []
    elif cur and " = " in line:
      out[cur].append(line)
  return out


def body_counts(lines: list[str]) -> dict:
  kinds, fused = collections.Counter(), collections.Counter()
  for line in lines:
    if " fusion(" not in line:
      continue
    kind = re.search(r"kind=(\w+)", line)
    kinds[kind.group(1) if kind else "?"] += 1
    calls = re.search(r"calls=%?([\w\-]+)", line)
    if calls:
      fused[re.sub(r"[.\d_]+$", "", calls.group(1))] += 1
  return {"fusions": sum(kinds.values()), "by_kind": dict(kinds), "by_computation": dict(fused.most_common(12))}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--preset", default="tiny")
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--new-tokens", type=int, default=128)
  ap.add_argument("--dtype", default="float32")
  ap.add_argument("--hlo", default=None, help="write the compiled HLO text here")
  args = ap.parse_args()
  cfg = presets.model_config(args.preset, param_dtype=args.dtype).replace(compute_dtype=args.dtype)
  params = params_lib.init_params(cfg, jax.random.key(0))
  prompt = jnp.ones((args.batch, 32), jnp.int32)
  lengths = jnp.full((args.batch,), 32, jnp.int32)
  sp = sampling.SamplingParams.make(args.batch, temperature=0.0)
  hlo = sampling.sample_jit.lower(cfg, params, prompt, lengths, jax.random.key(0), sp, None,
                                  max_new_tokens=args.new_tokens).compile().as_text()
  if args.hlo:
    with open(args.hlo, "w") as f:
      f.write(hlo)
  comps = computations(hlo)
  bodies = re.findall(r"while\(.*?body=(%?[\w.\-]+)", hlo)
  counts = {b: body_counts(comps.get(b, [])) for b in bodies}
  # the decode loop is the while body with the most kernels (the others are small inner loops)
  decode = max(counts.values(), key=lambda c: c["fusions"]) if counts else None
  common.emit({"bench": "decode_kernels", "preset": args.preset, "batch": args.batch, "dtype": args.dtype,
               "layers": cfg.num_layers, "decode_body": decode, "loops": len(bodies), **common.device_info()})


if __name__ == "__main__":
  main()
