"""Training self-attention forward+backward through `models/kernels.py`, per kernel, at one shape.

The same shapes as the attention peer (../shared/peers/attn_gpu.py): Qwen2.5-1.5B's GQA
(`--shape 4,4096,12,2,128`) and Youtu-2B's MLA (`--shape 4,4096,16,16,192,128`: qk dim 192, v 128).
`packed` runs pass `--docs` equal documents per row as segment ids (the trainer's packed batches),
so the kernel applies the segment mask too; `--max-segments 2,4,16` times the ragged cuDNN path at
each static documents-per-row size (one line each). Prints one JSON line per kernel. GPU:
  python benchmarks/attention.py --dtype bfloat16 --impls xla,cudnn
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import common
from foresight_jax.models import kernels, layers


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--shape", default="4,4096,12,2,128", help="B,T,heads,kv_heads,qk_dim[,v_dim]")
  ap.add_argument("--dtype", default="bfloat16")
  ap.add_argument("--impls", default="xla,cudnn")
  ap.add_argument("--min-time", type=float, default=2.0)
  ap.add_argument("--docs", type=int, default=2, help="documents per packed row")
  ap.add_argument("--max-segments", default=str(kernels.RAGGED_MAX_SEGMENTS),
                  help="comma list of ModelConfig.ragged_max_segments values to time packed rows at")
  ap.add_argument("--packed-only", action="store_true", help="skip the unpacked runs")
  args = ap.parse_args()
  dims = [int(x) for x in args.shape.split(",")]
  b, t, h, kh, d = dims[:5]
  dv = dims[5] if len(dims) > 5 else d
  dtype = jnp.dtype(args.dtype)
  ks = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(ks[0], (b, t, h, d), dtype)
  k = jax.random.normal(ks[1], (b, t, kh, d), dtype)
  v = jax.random.normal(ks[2], (b, t, kh, dv), dtype)
  slot = jnp.arange(t)
  flops = 3 * 2 * b * h * t * t * (d + dv) / 2  # fwd + bwd (2x fwd), causal half
  docs = 1 + np.arange(t) * args.docs // t  # ids 1..docs, equal runs
  runs = [(False, None)] * (not args.packed_only) + [(True, int(m)) for m in args.max_segments.split(",")]
  for impl in args.impls.split(","):
    for packed, max_segments in runs:
      seg = jnp.asarray(np.repeat(docs[None], b, 0) if packed else np.ones((b, t)), jnp.int32)

      def loss(q, k, v, seg=seg, impl=impl, packed=packed, m=max_segments):
        mask = layers.attention_mask(slot, slot, seg, seg)
        o = kernels.self_attention(q, k, v, seg, mask, d ** -0.5, impl, packed, m)
        return o.astype(jnp.float32).sum()

      g = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
      rec = {"bench": "attention_fwd_bwd", "impl": kernels.resolve(impl, dtype), "packed": packed,
             "docs": args.docs if packed else 1, "ragged_max_segments": max_segments,
             "shape": [b, t, h, kh, d, dv], "dtype": args.dtype}
      try:
        dt = common.timeit(lambda g=g: jax.block_until_ready(g(q, k, v)), args.min_time)
        rec.update(ms=1e3 * dt, tflops=flops / dt / 1e12, peak_mem_gib=common.peak_memory_gib())
      except Exception as e:  # one kernel failing (e.g. a shape cuDNN refuses) must not hide the others
        rec.update(error=f"{type(e).__name__}: {str(e)[:300]}")
      common.emit({**rec, **common.device_info()})


if __name__ == "__main__":
  main()
