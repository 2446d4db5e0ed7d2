"""SwiGLU MLP forward+backward: our `layers.mlp` (hand-written VJP) against autodiff of the same formula.

Both are jitted `jax.vjp` calls on the same inputs, timed best-of-N after a compiling call. Defaults
are one SmolLM2-135M layer at batch 4 x seq 256 (hidden 576, intermediate 1536), fp32. Prints one
JSON line:
  python benchmarks/mlp_backward.py
  python benchmarks/mlp_backward.py --batch 2 --seq 512 --dtype bfloat16
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import common
from foresight_jax.models import layers


def autodiff_mlp(p, x, dtype):
  """The SwiGLU formula `layers.mlp` computes, left to autodiff."""
  gate = jnp.einsum("btd,df->btf", x, p["gate"].astype(dtype))
  up = jnp.einsum("btd,df->btf", x, p["up"].astype(dtype))
  return jnp.einsum("btf,fd->btd", jax.nn.silu(gate) * up, p["down"].astype(dtype))


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--seq", type=int, default=256)
  ap.add_argument("--hidden", type=int, default=576)
  ap.add_argument("--inter", type=int, default=1536)
  ap.add_argument("--dtype", default="float32", help="compute dtype (weights stay fp32)")
  ap.add_argument("--reps", type=int, default=20)
  a = ap.parse_args()
  dtype = jnp.dtype(a.dtype)
  k = jax.random.split(jax.random.key(0), 5)
  x = jax.random.normal(k[0], (a.batch, a.seq, a.hidden), dtype)
  dy = jax.random.normal(k[1], (a.batch, a.seq, a.hidden), dtype)
  p = {"gate": jax.random.normal(k[2], (a.hidden, a.inter)) * 0.02,
       "up": jax.random.normal(k[3], (a.hidden, a.inter)) * 0.02,
       "down": jax.random.normal(k[4], (a.inter, a.hidden)) * 0.02}

  def fwd_bwd(fn):
    @jax.jit
    def run(p, x, dy):
      _, vjp = jax.vjp(lambda p_, x_: fn(p_, x_, dtype), p, x)
      return vjp(dy)
    return lambda: run(p, x, dy)

  ours = common.best_of(fwd_bwd(layers.mlp), a.reps)
  auto = common.best_of(fwd_bwd(autodiff_mlp), a.reps)
  common.emit({"bench": "mlp_backward", "ours_ms": ours * 1e3, "autodiff_ms": auto * 1e3, "speedup": auto / ours,
               "batch": a.batch, "seq": a.seq, "hidden": a.hidden, "intermediate": a.inter, "dtype": a.dtype,
               **common.device_info()})


if __name__ == "__main__":
  main()
