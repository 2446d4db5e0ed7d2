"""The decoder: pure functions of (config, params pytree, tokens[, cache]).

`forward` serves training (packed segments, no cache), prefill and decode (stacked KV cache written
at a shared slot index; per-row positions and segment ids make left-padded batches exact).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from foresight_jax.models import attention, layers
from foresight_jax.models.config import ModelConfig
from foresight_jax.sharding import constrain

Params = dict[str, Any]
Cache = dict[str, jax.Array]

_REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> Cache:
  """An empty KV cache. `segment` marks filled slots (0 = empty/padding, never attended)."""
  dtype = jnp.dtype(dtype or cfg.compute_dtype)
  L = cfg.num_layers
  if cfg.is_mla:
    cache = {"c_kv": jnp.zeros((L, batch, max_len, cfg.kv_lora_rank), dtype),
             "k_rot": jnp.zeros((L, batch, max_len, cfg.qk_rope_head_dim), dtype)}
  else:
    shape = (L, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
    cache = {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
  cache["segment"] = jnp.zeros((batch, max_len), jnp.int32)
  return cache


def cache_logical_axes(cfg: ModelConfig) -> dict[str, tuple]:
  if cfg.is_mla:
    axes = {"c_kv": ("layers", "batch", "cache_seq", None), "k_rot": ("layers", "batch", "cache_seq", None)}
  else:
    kv = ("layers", "batch", "cache_seq", "act_kv_heads", None)
    axes = {"k": kv, "v": kv}
  axes["segment"] = ("batch", "cache_seq")
  return axes


def _decoder_layer(cfg: ModelConfig, lp, x, cos, sin, mask, cache, layer, index, dtype, segments):
  attn_fn = attention.mla if cfg.is_mla else attention.gqa
  h = layers.rms_norm(x, lp["attn_norm"], cfg.rms_norm_eps)
  a, cache = attn_fn(cfg, lp["attn"], h, cos, sin, mask, cache, layer, index, dtype, segments)
  x = constrain(x + a, ("batch", "seq", "act_embed"))
  h = layers.rms_norm(x, lp["mlp_norm"], cfg.rms_norm_eps)
  x = constrain(x + layers.mlp(lp["mlp"], h, dtype), ("batch", "seq", "act_embed"))
  return x, cache


def hidden_states(cfg: ModelConfig, params: Params, tokens: jax.Array, positions: jax.Array | None = None,
                  segment_ids: jax.Array | None = None, cache: Cache | None = None,
                  cache_index: jax.Array | int = 0) -> tuple[jax.Array, Cache | None]:
  """Final-normed hidden states [B, T, D] and the updated cache.

  tokens, positions, segment_ids: [B, T] int32. Without a cache, attention is causal within equal
  segment ids (packed training rows; 0 = padding). With a cache, the T new tokens are written at
  slots [cache_index, cache_index + T) and attend to every filled slot at or before their own.
  """
  dtype = jnp.dtype(cfg.compute_dtype)
  b, t = tokens.shape
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
  # no segment ids: every row is one causal sequence, which fused kernels run without a mask
  segments = (segment_ids if segment_ids is not None else jnp.ones((b, t), jnp.int32), segment_ids is not None)
  segment_ids = segments[0]
  q_slot = cache_index + jnp.arange(t, dtype=jnp.int32)
  if cache is None:
    k_slot, k_seg = q_slot, segment_ids
  else:
    k_seg = jax.lax.dynamic_update_slice(cache["segment"], segment_ids.astype(jnp.int32), (0, cache_index))
    cache = {**cache, "segment": k_seg}
    k_slot = jnp.arange(k_seg.shape[1], dtype=jnp.int32)
  mask = layers.attention_mask(q_slot, k_slot, segment_ids, k_seg)
  cos, sin = layers.rope_tables(cfg, positions)

  # gather rows from a table replicated over vocab (still split over embed): a vocab-sharded gather
  # would make XLA rematerialise the whole table on every device
  table = constrain(params["embed"], (None, "embed"))
  x = jnp.take(table, tokens, axis=0).astype(dtype)
  x = constrain(x, ("batch", "seq", "act_embed"))

  def body(carry, xs):
    x, cache = carry
    lp, i = xs
    x, cache = _decoder_layer(cfg, lp, x, cos, sin, mask, cache, i, cache_index, dtype, segments)
    return (x, cache), None

  if cfg.remat_policy != "none":
    body = jax.checkpoint(body, policy=_REMAT[cfg.remat_policy], prevent_cse=not cfg.scanned)
  layer_ids = jnp.arange(cfg.num_layers, dtype=jnp.int32)
  if isinstance(params["layers"], (list, tuple)):
    # already one pytree per layer (see `unstack_layers`): no per-step slicing of stacked weights
    for i, lp in enumerate(params["layers"]):
      (x, cache), _ = body((x, cache), (lp, i))
  elif cfg.scanned:
    (x, cache), _ = jax.lax.scan(body, (x, cache), (params["layers"], layer_ids))
  else:
    for i in range(cfg.num_layers):
      lp = jax.tree.map(lambda a: a[i], params["layers"])
      (x, cache), _ = body((x, cache), (lp, i))
  return layers.rms_norm(x, params["final_norm"], cfg.rms_norm_eps), cache


def unstack_layers(params: Params) -> Params:
  """Params with `layers` as a tuple of per-layer pytrees.

  Decode reads every weight once per token, so it is bandwidth-bound. Slicing one layer out of the
  stacked [L, ...] arrays inside the loop makes XLA:CPU copy that layer's weights every step (it
  cannot fuse a dynamic slice into a matmul operand). Unstacking once, outside the decode loop,
  costs one copy of the weights per `sample` call and then none per token.
  """
  stacked = params["layers"]
  if isinstance(stacked, (list, tuple)):
    return params
  n = jax.tree.leaves(stacked)[0].shape[0]
  return {**params, "layers": tuple(jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(n))}


def _tensor_parallel() -> bool:
  mesh = jax.sharding.get_abstract_mesh()
  return not mesh.empty and dict(mesh.shape).get("tensor", 1) > 1


def fuse_projections(lp: Params) -> Params:
  """One layer's weights with the projections that read the same input concatenated along their
  outputs: GQA's q/k/v -> `qkv` [D, (H + 2K) * hd] (and its biases), MLA's q_a/kv_a -> `q_kv_a`,
  the MLP's gate/up -> `gate_up` [D, 2F]. The attention and MLP code use a fused key when present.

  Why: a decode step at small batch is bound by the number of kernels, not by FLOPs (BUILD_NOTES,
  decode profile), and one [D, 3n] matmul is one kernel where three [D, n] are three. Decode-only:
  training keeps the declared parameters (their shardings and gradients are per projection).
  """
  attn, mlp = dict(lp["attn"]), dict(lp["mlp"])
  d = mlp["gate"].shape[0]
  if "q" in attn and "k" in attn and "v" in attn:
    attn["qkv"] = jnp.concatenate([attn.pop(n).reshape(d, -1) for n in ("q", "k", "v")], axis=1)
    if "q_bias" in attn:
      attn["qkv_bias"] = jnp.concatenate([attn.pop(f"{n}_bias").reshape(-1) for n in ("q", "k", "v")])
  elif "q_a" in attn:
    attn["q_kv_a"] = jnp.concatenate([attn.pop("q_a"), attn.pop("kv_a")], axis=1)
  mlp["gate_up"] = jnp.concatenate([mlp.pop("gate"), mlp.pop("up")], axis=1)
  return {**lp, "attn": attn, "mlp": mlp}


def decode_params(cfg: ModelConfig, params: Params) -> Params:
  """What the decode loop reads: one pytree per layer (`unstack_layers`) with fused projections
  (`fuse_projections`) when cfg.decode_fusion (None: on a GPU backend). Under a tensor-parallel
  mesh the projections stay apart: concatenating head-sharded weights would gather them onto every
  device."""
  params = unstack_layers(params)
  fuse = cfg.decode_fusion if cfg.decode_fusion is not None else jax.default_backend() == "gpu"
  if not fuse or _tensor_parallel():
    return params
  return {**params, "layers": tuple(fuse_projections(lp) for lp in params["layers"])}


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _logits_f32(spec: str, h: jax.Array, w: jax.Array) -> jax.Array:
  """fp32 logits `einsum(spec, h, w)` whose backward runs in h's dtype.

  Autodiff of an fp32-output einsum hands its transposes an fp32 cotangent, so with bf16 compute
  both backward GEMMs (dh, dW) of the LM head ran in fp32/TF32: 14% of a Qwen2.5-1.5B seq-4096
  train step on an H200 (BUILD_NOTES, train profile). Rounding the logits' gradient to bf16 first,
  as torch's autocast does, runs them as bf16 GEMMs with fp32 accumulation."""
  return jnp.einsum(spec, h, w, preferred_element_type=jnp.float32)


def _logits_f32_fwd(spec, h, w):
  return _logits_f32(spec, h, w), (h, w)


def _logits_f32_bwd(spec, res, g):
  h, w = res
  g = g.astype(h.dtype)
  hs, rest = spec.split(",")
  ws, out = rest.split("->")
  return jnp.einsum(f"{out},{ws}->{hs}", g, w), jnp.einsum(f"{hs},{out}->{ws}", h, g)


_logits_f32.defvjp(_logits_f32_fwd, _logits_f32_bwd)


def lm_head(cfg: ModelConfig, params: Params, h: jax.Array) -> jax.Array:
  """fp32 logits [..., vocab] from final hidden states."""
  dtype = h.dtype
  spec, w = ("btd,vd->btv", params["embed"]) if cfg.tie_embeddings else ("btd,dv->btv", params["lm_head"])
  w = w.astype(dtype)
  if dtype == jnp.float32:
    out = jnp.einsum(spec, h, w, preferred_element_type=jnp.float32)
  else:
    out = _logits_f32(spec, h, w)
  return constrain(out, ("batch", "seq", "act_vocab"))


def forward(cfg: ModelConfig, params: Params, tokens: jax.Array, positions=None, segment_ids=None,
            cache: Cache | None = None, cache_index=0) -> tuple[jax.Array, Cache | None]:
  h, cache = hidden_states(cfg, params, tokens, positions, segment_ids, cache, cache_index)
  return lm_head(cfg, params, h), cache


def logits(cfg: ModelConfig, params: Params, tokens: jax.Array) -> jax.Array:
  """Public API: fp32 logits [batch, seq, vocab] for int32 tokens [batch, seq] (plain causal)."""
  return _logits_jit(cfg, params, jnp.asarray(tokens, jnp.int32))


@functools.partial(jax.jit, static_argnums=0)
def _logits_jit(cfg, params, tokens):
  return forward(cfg, params, tokens)[0]
