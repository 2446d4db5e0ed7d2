"""Shared building blocks: RMSNorm, rotary embeddings, the SwiGLU MLP and masked attention."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from foresight_jax.models.config import ModelConfig
from foresight_jax.sharding import constrain

# Finite instead of -inf: a fully masked row (left padding) softmaxes to uniform, not NaN.
NEG_INF = -0.7 * float(jnp.finfo(jnp.float32).max)


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
  # statistics in fp32 whatever the compute dtype (as HF does), result back in the input dtype
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return weight.astype(x.dtype) * y.astype(x.dtype)


def rope_inv_freq(cfg: ModelConfig) -> jax.Array:
  d = cfg.rope_dim
  inv = 1.0 / (cfg.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  if cfg.rope_llama3_scaling is not None:
    factor, low, high, old_ctx = cfg.rope_llama3_scaling
    wavelen = 2 * math.pi / inv
    scaled = jnp.where(wavelen > old_ctx / low, inv / factor, inv)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
    inv = jnp.where(medium, smoothed, scaled)
  return inv


def rope_tables(cfg: ModelConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
  """cos, sin of shape [batch, seq, rope_dim/2] in fp32."""
  ang = positions.astype(jnp.float32)[..., None] * rope_inv_freq(cfg)
  return jnp.cos(ang), jnp.sin(ang)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array, interleave: bool) -> jax.Array:
  """x: [batch, seq, heads, d]. Interleaved layout pairs (x0,x1),(x2,x3)...; the output, like HF's,
  is in the half-split layout either way (q and k get the same permutation, so scores agree)."""
  if interleave:
    x1, x2 = x[..., 0::2], x[..., 1::2]
  else:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
  c, s = cos[:, :, None, :], sin[:, :, None, :]
  x1f, x2f = x1.astype(jnp.float32), x2.astype(jnp.float32)
  out = jnp.concatenate([x1f * c - x2f * s, x2f * c + x1f * s], axis=-1)
  return out.astype(x.dtype)


def mlp(p: dict, x: jax.Array, dtype) -> jax.Array:
  """SwiGLU: down(silu(x @ gate) * (x @ up)); x [B, T, D] in the compute dtype. With `gate_up`
  (decode, `transformer.fuse_projections`) gate and up are one matmul."""
  if "gate_up" in p:
    gate, up = jnp.split(jnp.einsum("btd,df->btf", x, p["gate_up"].astype(dtype)), 2, axis=-1)
    return jnp.einsum("btf,fd->btd", jax.nn.silu(gate) * up, p["down"].astype(dtype))
  return _swiglu(x, p["gate"].astype(dtype), p["up"].astype(dtype), p["down"].astype(dtype))


def _swiglu_fwd(x, wg, wu, wd):
  gate = jnp.einsum("btd,df->btf", x, wg)
  up = jnp.einsum("btd,df->btf", x, wu)
  h = constrain(jax.nn.silu(gate) * up, ("batch", "seq", "act_mlp"))
  return jnp.einsum("btf,fd->btd", h, wd), (x, wg, wu, wd, gate, up)


def _swiglu_bwd(res, dy):
  # Written by hand so that every matmul is a plain 2-D [tokens, k] x [k, n] product over the
  # flattened batch*seq rows and the SiLU backward is one elementwise pass. Autodiff's 3-D
  # contractions make XLA:CPU write transposed copies of the [tokens, mlp] gradients fused with
  # the SiLU backward: 1.3-1.4x slower on a SmolLM2 MLP layer (benchmarks/mlp_backward.py, BUILD_NOTES).
  x, wg, wu, wd, gate, up = res
  b, t, d = x.shape
  f = gate.shape[-1]
  x2, dy2 = x.reshape(b * t, d), dy.reshape(b * t, d)
  g = gate.reshape(b * t, f).astype(jnp.float32)
  u = up.reshape(b * t, f).astype(jnp.float32)
  sg = jax.nn.sigmoid(g)
  act = g * sg  # silu(gate)
  dh = (dy2 @ wd.T).astype(jnp.float32)  # d(silu(gate) * up)
  dgate = (dh * u * sg * (1.0 + g * (1.0 - sg))).astype(x.dtype)
  dup = (dh * act).astype(x.dtype)
  h = (act * u).astype(x.dtype)
  dwg, dwu, dwd = x2.T @ dgate, x2.T @ dup, h.T @ dy2
  dx = dgate @ wg.T + dup @ wu.T
  return (dx.reshape(b, t, d).astype(x.dtype), dwg.astype(wg.dtype), dwu.astype(wu.dtype),
          dwd.astype(wd.dtype))


@jax.custom_vjp
def _swiglu(x, wg, wu, wd):
  return _swiglu_fwd(x, wg, wu, wd)[0]


_swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


def attention_mask(q_slot, k_slot, q_seg, k_seg) -> jax.Array:
  """[batch, q, k] bool: causal by slot, same segment, key not padding (segment 0)."""
  causal = k_slot[None, None, :] <= q_slot[None, :, None]
  same = q_seg[:, :, None] == k_seg[:, None, :]
  return causal & same & (k_seg[:, None, :] != 0)


# Query rows per block of `causal_attention`. Measured on the 2-core CPU host (BUILD_NOTES,
# "Causal attention by query blocks"): 128 is the best trade of step time and compile time.
CAUSAL_BLOCK = 128


def causal_attention(q, k, v, mask, scale, block: int | None = None) -> jax.Array:
  """Self-attention where query i and key i are the same slot (training, no cache), computed by
  blocks of query rows: block j only scores keys [0, end of block j), so the fully masked upper
  triangle is never materialised (about half the score work and memory at T >= 4 blocks). Each
  block sees all the keys it may attend to, so its softmax is exact (no online rescaling).

  Why not one [T, T] product: on CPU the step is dominated by elementwise passes over the fp32
  scores (mask, softmax and their backward), and half of them are the masked triangle. Why
  head-major and a hand-written block VJP: slicing [B, T, H, D] per block made XLA:CPU transpose
  the K/V prefix again in every block, and autodiff's softmax backward takes more passes over the
  scores than `p * (dp - rowsum(do * o))`: together 1.36x on the demo model's step (BUILD_NOTES).
  """
  b, t, h, d = q.shape
  kh, block = k.shape[2], block or CAUSAL_BLOCK
  qh = q.reshape(b, t, kh, h // kh, d).transpose(0, 2, 3, 1, 4)  # [B, K, G, T, D], once
  kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, S, D]
  outs = []
  for start in range(0, t, block):  # static: a handful of blocks at training lengths
    end = min(start + block, t)
    bias = jax.lax.stop_gradient(jnp.where(mask[:, None, None, start:end, :end], 0.0, NEG_INF))
    outs.append(_attention_block(qh[:, :, :, start:end], kt[:, :, :end], vt[:, :, :end], bias, scale))
  o = jnp.concatenate(outs, axis=3) if len(outs) > 1 else outs[0]
  return o.transpose(0, 3, 1, 2, 4).reshape(b, t, h, v.shape[-1])


def _attention_block_fwd(q, k, v, bias, scale):
  """q [B,K,G,t,D], k [B,K,S,D], v [B,K,S,Dv], bias [B,1,1,t,S] (0 or NEG_INF)."""
  s = jnp.einsum("bkgtd,bksd->bkgts", q, k, preferred_element_type=jnp.float32) * scale + bias
  p = jax.nn.softmax(s, axis=-1)
  o = jnp.einsum("bkgts,bksd->bkgtd", p.astype(v.dtype), v)
  return o, (q, k, v, p, o, scale)


def _attention_block_bwd(res, do):
  q, k, v, p, o, scale = res
  dv = jnp.einsum("bkgts,bkgtd->bksd", p.astype(do.dtype), do)
  dp = jnp.einsum("bkgtd,bksd->bkgts", do, v, preferred_element_type=jnp.float32)
  delta = jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), axis=-1, keepdims=True)  # rowsum(dp * p)
  ds = (p * (dp - delta) * scale).astype(q.dtype)
  return (jnp.einsum("bkgts,bksd->bkgtd", ds, k), jnp.einsum("bkgts,bkgtd->bksd", ds, q), dv, None, None)


@jax.custom_vjp
def _attention_block(q, k, v, bias, scale):
  return _attention_block_fwd(q, k, v, bias, scale)[0]


_attention_block.defvjp(_attention_block_fwd, _attention_block_bwd)


def dot_attention(q, k, v, mask, scale) -> jax.Array:
  """Grouped-query attention. q [B,T,H,D], k [B,S,K,D], v [B,S,K,Dv], mask [B,T,S] -> [B,T,H,Dv].

  Query heads are grouped over their KV head instead of repeating K/V (no H/K-fold copy).
  """
  b, t, h, d = q.shape
  kh = k.shape[2]
  qg = q.reshape(b, t, kh, h // kh, d)
  s = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
  s = jnp.where(mask[:, None, None], s, NEG_INF)
  p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
  o = jnp.einsum("bkgts,bskd->btkgd", p, v)
  return o.reshape(b, t, h, v.shape[-1])
