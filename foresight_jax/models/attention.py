"""Attention variants: grouped-query attention (Llama, Qwen2 bias, Qwen3 q/k-norm) and dense
multi-head latent attention (Youtu / DeepSeek-V3).

Both take the layer's params, the normed hidden state, rope tables and a precomputed mask, and
optionally a stacked KV cache plus this layer's index and the write slot. They return the block
output and the updated cache. MLA caches the compressed latent (kv_lora_rank + rope dims per token,
576 values for Youtu-2B against 5120 for expanded K/V) and attends in latent space by absorbing
the K/V up-projection into the query and output (mathematically the same as HF's expansion).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from foresight_jax.models import kernels, layers
from foresight_jax.models.config import ModelConfig
from foresight_jax.sharding import constrain

MLA_NORM_EPS = 1e-6  # HF builds q_a_layernorm / kv_a_layernorm with the RMSNorm default, not config eps


def _write(cache_arr, new, layer, index):
  """Write `new` [B,T,...] into cache_arr [L,B,S,...] at (layer, :, index); return (cache, layer slice)."""
  start = (layer, 0, index) + (0,) * (new.ndim - 2)
  cache_arr = jax.lax.dynamic_update_slice(cache_arr, new[None].astype(cache_arr.dtype), start)
  return cache_arr, cache_arr[layer]


def _qkv(cfg: ModelConfig, p, x, dtype):
  """q [B,T,H,hd], k and v [B,T,K,hd]: three projections, or one over `transformer.fuse_projections`'
  concatenated `qkv` (decode)."""
  if "qkv" not in p:
    q, k, v = (jnp.einsum("btd,dhk->bthk", x, p[n].astype(dtype)) for n in ("q", "k", "v"))
    if cfg.attention_bias:
      q, k, v = q + p["q_bias"].astype(dtype), k + p["k_bias"].astype(dtype), v + p["v_bias"].astype(dtype)
    return q, k, v
  y = jnp.einsum("btd,dn->btn", x, p["qkv"].astype(dtype))
  if cfg.attention_bias:
    y = y + p["qkv_bias"].astype(dtype)
  nq, nk, hd = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.head_dim
  b, t = x.shape[:2]
  return (y[..., :nq].reshape(b, t, cfg.num_heads, hd), y[..., nq:nq + nk].reshape(b, t, cfg.num_kv_heads, hd),
          y[..., nq + nk:].reshape(b, t, cfg.num_kv_heads, hd))


def gqa(cfg: ModelConfig, p, x, cos, sin, mask, cache, layer, index, dtype, segments=None):
  q, k, v = _qkv(cfg, p, x, dtype)
  if cfg.qk_norm:
    q = layers.rms_norm(q, p["q_norm"], cfg.rms_norm_eps)
    k = layers.rms_norm(k, p["k_norm"], cfg.rms_norm_eps)
  q = constrain(layers.apply_rope(q, cos, sin, cfg.rope_interleave), ("batch", "seq", "act_heads", None))
  k = constrain(layers.apply_rope(k, cos, sin, cfg.rope_interleave), ("batch", "seq", "act_kv_heads", None))
  if cache is not None:
    ck, k = _write(cache["k"], k, layer, index)
    cv, v = _write(cache["v"], v, layer, index)
    cache = {**cache, "k": ck, "v": cv}
    k, v = k.astype(dtype), v.astype(dtype)
  # no cache, or a prefill from slot 0: query t and key t are the same slot, so the masked upper
  # triangle can be skipped (keys past the prompt are empty slots, masked anyway)
  scale = cfg.head_dim ** -0.5
  if cache is None:
    o = _self_attention(cfg, q, k, v, segments, mask, scale)
  elif isinstance(index, int) and index == 0:
    o = layers.causal_attention(q, k, v, mask, scale)
  else:
    o = layers.dot_attention(q, k, v, mask, scale)
  return jnp.einsum("bthk,hkd->btd", o, p["o"].astype(dtype)), cache


def _self_attention(cfg: ModelConfig, q, k, v, segments, mask, scale):
  """No-cache attention through the per-backend kernel; `segments` is (segment ids, packed)."""
  seg, packed = segments
  return kernels.self_attention(q, k, v, seg, mask, scale, cfg.attention_impl, packed, cfg.ragged_max_segments)


def mla(cfg: ModelConfig, p, x, cos, sin, mask, cache, layer, index, dtype, segments=None):
  dn = cfg.qk_nope_head_dim
  if "q_kv_a" in p:  # decode: q_a and kv_a as one matmul (`transformer.fuse_projections`)
    y = jnp.einsum("btd,dr->btr", x, p["q_kv_a"].astype(dtype))
    qa_raw, kv_a = y[..., :cfg.q_lora_rank], y[..., cfg.q_lora_rank:]
  else:
    qa_raw = jnp.einsum("btd,dr->btr", x, p["q_a"].astype(dtype)) if cfg.q_lora_rank else None
    kv_a = jnp.einsum("btd,dr->btr", x, p["kv_a"].astype(dtype))
  if cfg.q_lora_rank:
    qa = layers.rms_norm(qa_raw, p["q_a_norm"], MLA_NORM_EPS)
    q = jnp.einsum("btr,rhk->bthk", qa, p["q_b"].astype(dtype))
  else:
    q = jnp.einsum("btd,dhk->bthk", x, p["q"].astype(dtype))
  q = constrain(q, ("batch", "seq", "act_heads", None))
  q_nope, q_rot = q[..., :dn], q[..., dn:]
  c = layers.rms_norm(kv_a[..., :cfg.kv_lora_rank], p["kv_a_norm"], MLA_NORM_EPS)
  q_rot = layers.apply_rope(q_rot, cos, sin, cfg.rope_interleave)
  k_rot = layers.apply_rope(kv_a[..., None, cfg.kv_lora_rank:], cos, sin, cfg.rope_interleave)[:, :, 0]
  scale = cfg.qk_head_dim ** -0.5
  kv_b = p["kv_b"].astype(dtype)  # [r, h, dn + dv]
  if cache is None:
    # Training / no-cache path: expand K and V per head (fewer FLOPs than latent attention for T x T).
    kv = jnp.einsum("btr,rhk->bthk", c, kv_b)
    k_nope, v = kv[..., :dn], kv[..., dn:]
    k = jnp.concatenate([k_nope, jnp.broadcast_to(k_rot[:, :, None], k_nope.shape[:3] + k_rot.shape[-1:])], -1)
    o = _self_attention(cfg, jnp.concatenate([q_nope, q_rot], -1), k, v, segments, mask, scale)
  else:
    c_cache, c_all = _write(cache["c_kv"], c, layer, index)
    r_cache, r_all = _write(cache["k_rot"], k_rot, layer, index)
    cache = {**cache, "c_kv": c_cache, "k_rot": r_cache}
    c_all, r_all = c_all.astype(dtype), r_all.astype(dtype)
    q_lat = jnp.einsum("bthn,rhn->bthr", q_nope, kv_b[..., :dn])  # absorb W_UK into the query
    s = (jnp.einsum("bthr,bsr->bhts", q_lat, c_all, preferred_element_type=jnp.float32)
         + jnp.einsum("bthd,bsd->bhts", q_rot, r_all, preferred_element_type=jnp.float32)) * scale
    s = jnp.where(mask[:, None], s, layers.NEG_INF)
    w = jax.nn.softmax(s, axis=-1).astype(dtype)
    o_lat = jnp.einsum("bhts,bsr->bthr", w, c_all)
    o = jnp.einsum("bthr,rhv->bthv", o_lat, kv_b[..., dn:])  # absorb W_UV into the output
  return jnp.einsum("bthv,hvd->btd", o, p["o"].astype(dtype)), cache
