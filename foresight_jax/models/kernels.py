"""Training self-attention behind one function, with the kernel chosen per backend.

`self_attention` serves the no-cache path (training, RL log-prob recomputation, prefill from slot
0), where query t and key t are the same slot and rows may be packed (segment ids, 0 = padding).
Decode and `extend` keep the cached path in `layers.dot_attention`.

Choices (`ModelConfig.attention_impl`, "auto" picks per backend):
- "cudnn" (auto on GPU): cuDNN's fused flash attention through `jax.nn.dot_product_attention`.
  It never materialises the [T, T] scores (the XLA path's fp32 probabilities were the largest
  buffer of a seq-4096 step) and handles GQA natively (K/V heads are not repeated) and MLA's
  qk dim 192 with v dim 128 (in one call through jax's cuDNN entry point where cuDNN >= 9.10 on
  Hopper allows it, else V zero-padded to the qk dim: `jax.nn.dot_product_attention` wants one).
  Packed rows pass their segment mask as a [B, 1, T, T] bias, broadcast over heads; an unpacked
  row (no segment ids given) uses cuDNN's built-in causal mask alone. cuDNN takes bf16/fp16 only,
  so fp32 compute falls back to XLA.
- "splash" (auto on TPU): Pallas splash attention with segment ids, vmapped over KV heads for GQA
  (interpret mode elsewhere, for tests).
- "xla" (auto on CPU): `layers.causal_attention`, exact softmax by query blocks (measured fastest
  on the 2-core CPU host, BUILD_NOTES).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from foresight_jax.models import layers

IMPLS = ("auto", "xla", "cudnn", "splash")


def resolve(impl: str, dtype) -> str:
  """The kernel `impl` stands for on this backend and compute dtype."""
  if impl not in IMPLS:
    raise ValueError(f"unknown attention_impl {impl!r}; choose one of {IMPLS}")
  if impl == "auto":
    platform = jax.devices()[0].platform
    impl = {"gpu": "cudnn", "tpu": "splash"}.get(platform, "xla")
  if impl == "cudnn" and jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16):
    return "xla"  # cuDNN's fused attention has no fp32 kernel
  return impl


def self_attention(q, k, v, segment_ids, mask, scale: float, impl: str, packed: bool = True) -> jax.Array:
  """q [B,T,H,D], k [B,T,K,D], v [B,T,K,Dv] -> [B,T,H,Dv].

  segment_ids [B,T] int (0 = padding); mask [B,T,T] is the same mask as a boolean array (the XLA
  path reads it; the fused kernels rebuild what they need from segment ids, so XLA drops it).
  `packed=False` promises every row is one causal sequence without padding. Rows of padding
  (segment 0) produce unspecified values: every caller masks them out."""
  impl = resolve(impl, q.dtype)
  if impl == "xla":
    return layers.causal_attention(q, k, v, mask, scale)
  if impl == "cudnn":
    return _cudnn(q, k, v, segment_ids, scale, packed)
  # off TPU the Pallas kernel runs in interpret mode: slow, but the same kernel code, so the TPU
  # path is tested on CPU
  return _splash(q, k, v, segment_ids, scale, interpret=jax.devices()[0].platform != "tpu")


# cuDNN's flash kernels take sequence lengths in multiples of 64 only ("Unsupported sequence
# length", seen on RL log-prob recomputation over rollouts of any length)
CUDNN_SEQ_MULTIPLE = 64


def _pad_seq(multiple, segment_ids, *xs):
  """Pad [B, T, ...] arrays at the end of T to a multiple: under the causal mask no real query sees
  a padded key (they come after it), and padded queries' rows are sliced off by the caller."""
  pad = -xs[0].shape[1] % multiple
  if not pad:
    return (segment_ids, *xs)
  widths = lambda x: [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)
  return (jnp.pad(segment_ids, widths(segment_ids)), *(jnp.pad(x, widths(x)) for x in xs))


def _cudnn(q, k, v, segment_ids, scale, packed):
  t = q.shape[1]
  segment_ids, q, k, v = _pad_seq(CUDNN_SEQ_MULTIPLE, segment_ids, q, k, v)
  bias = None
  if packed:
    same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, None, :] != 0)
    bias = same[:, None]  # [B, 1, T, T]: one mask shared by all heads
  dv = v.shape[-1]
  out = _cudnn_two_head_dims(q, k, v, bias, scale) if dv != q.shape[-1] else None
  if out is None:
    # MLA without the native path: V zero-padded to the qk dim (the padded output columns are
    # exactly zero and dropped; costs (192 - 128) / 128 more PV work)
    v = jnp.pad(v, [(0, 0)] * 3 + [(0, q.shape[-1] - dv)])
    out = jax.nn.dot_product_attention(q, k, v, mask=bias, scale=scale, is_causal=True, implementation="cudnn")
  return out[:, :t, :, :dv]


def _cudnn_two_head_dims(q, k, v, mask, scale):
  """MLA's qk dim 192 with v dim 128 in one cuDNN call (cuDNN >= 9.10 on Hopper), or None where
  that is not available. `jax.nn.dot_product_attention` checks one head dim for q, k and v, so this
  goes through jax's own cuDNN entry point beneath it, a private module: any change there (import,
  signature, a refusal of the shape at trace time) falls back to the padded public call."""
  try:
    from jax._src.cudnn import fused_attention_stablehlo as fa
    return fa.dot_product_attention(q, k, v, mask=mask, scale=scale, mask_type=fa.MaskType.CAUSAL)
  except (ImportError, AttributeError, TypeError, ValueError, NotImplementedError, RuntimeError):
    return None


def _splash(q, k, v, segment_ids, scale, interpret):
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

  b, t, h, d = q.shape
  kh, dv = k.shape[2], v.shape[-1]
  g = h // kh
  if dv != d:  # splash needs one head dim for q, k and v
    v = jnp.pad(v, [(0, 0)] * 3 + [(0, d - dv)])
  block = min(512, t)
  sizes = sk.BlockSizes(block_q=block, block_kv_compute=block, block_kv=block, block_q_dkv=block,
                        block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
  mask = sm.MultiHeadMask([sm.CausalMask((t, t)) for _ in range(g)])
  kernel = sk.make_splash_mqa_single_device(mask, block_sizes=sizes, interpret=interpret)
  seg = sk.SegmentIds(q=segment_ids, kv=segment_ids)
  # splash wants [heads, T, D] per example with the scale folded into q; GQA = one MQA call per KV head
  qs = (q * scale).reshape(b, t, kh, g, d).transpose(0, 2, 3, 1, 4)  # [B, K, G, T, D]
  ks, vs = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, T, D]
  per_kv = jax.vmap(kernel, in_axes=(0, 0, 0, None))  # over KV heads
  out = jax.vmap(per_kv, in_axes=(0, 0, 0, 0))(qs, ks, vs, seg)  # over the batch
  out = out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)
  return out[..., :dv]
