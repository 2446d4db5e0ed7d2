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
  Packed rows go to cuDNN's packed (ragged) layout: each document of a row is its own sequence,
  named by offsets and lengths (`segment_runs`), so blocks across documents are never computed.
  A row with more than `max_segments` documents (`ModelConfig.ragged_max_segments`: the offsets
  have a static size) takes the "cudnn_mask" path for that step, through `lax.cond`. Measured on
  an H200 (BUILD_NOTES, "Packed rows in cuDNN's ragged layout"): attention fwd+bwd on two documents
  a row 2.1x (Youtu MLA) and 2.4x (Qwen GQA) faster than the mask, the full Youtu-2B trainer 1.16x;
  peak memory at Youtu-2B seq 4096 batch 4 is 15 GiB higher (76 against 61 GiB; most likely the
  cond's copies of q/k/v/o). An unpacked row (no segment ids given) uses cuDNN's built-in causal
  mask alone. cuDNN takes bf16/fp16 only, so fp32 compute falls back to XLA.
- "cudnn_mask": the same kernel with the segment mask passed as a [B, 1, T, T] boolean bias,
  broadcast over heads (the earlier packed path, 2.3x the unpacked time at the Youtu shape, kept
  to measure against and as the fallback).
- "splash" (auto on TPU): Pallas splash attention with segment ids, vmapped over KV heads for GQA
  (interpret mode elsewhere, for tests).
- "xla" (auto on CPU): `layers.causal_attention`, exact softmax by query blocks (measured fastest
  on the 2-core CPU host, BUILD_NOTES).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from foresight_jax.models import layers
from foresight_jax.models.config import ModelConfig

IMPLS = ("auto", "xla", "cudnn", "cudnn_mask", "splash")


def resolve(impl: str, dtype) -> str:
  """The kernel `impl` stands for on this backend and compute dtype."""
  if impl not in IMPLS:
    raise ValueError(f"unknown attention_impl {impl!r}; choose one of {IMPLS}")
  if impl == "auto":
    platform = jax.devices()[0].platform
    impl = {"gpu": "cudnn", "tpu": "splash"}.get(platform, "xla")
  if impl.startswith("cudnn") and jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16):
    return "xla"  # cuDNN's fused attention has no fp32 kernel
  return impl


def self_attention(q, k, v, segment_ids, mask, scale: float, impl: str, packed: bool = True,
                   max_segments: int | None = None) -> jax.Array:
  """q [B,T,H,D], k [B,T,K,D], v [B,T,K,Dv] -> [B,T,H,Dv].

  segment_ids [B,T] int (0 = padding); mask [B,T,T] is the same mask as a boolean array (the XLA
  path reads it; the fused kernels rebuild what they need from segment ids, so XLA drops it).
  `packed=False` promises every row is one causal sequence without padding. Rows of padding
  (segment 0) produce unspecified values: every caller masks them out. `max_segments`: documents per
  row on cuDNN's ragged path (default `RAGGED_MAX_SEGMENTS`)."""
  impl = resolve(impl, q.dtype)
  if impl == "xla":
    return layers.causal_attention(q, k, v, mask, scale)
  if impl.startswith("cudnn"):
    return _cudnn(q, k, v, segment_ids, scale, packed, impl == "cudnn", max_segments or RAGGED_MAX_SEGMENTS)
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


def _cudnn(q, k, v, segment_ids, scale, packed, ragged, max_segments):
  t = q.shape[1]
  segment_ids, q, k, v = _pad_seq(CUDNN_SEQ_MULTIPLE, segment_ids, q, k, v)
  out = _cudnn_packed_or_none(q, k, v, segment_ids, scale, max_segments) if packed and ragged else None
  if out is None:
    out = _cudnn_masked(q, k, v, segment_ids if packed else None, scale)
  return out[:, :t]


def _cudnn_masked(q, k, v, segment_ids, scale):
  """cuDNN causal attention, with the segment mask as a [B, 1, T, T] bias where segment ids are given."""
  bias = None
  if segment_ids is not None:
    same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, None, :] != 0)
    bias = same[:, None]  # [B, 1, T, T]: one mask shared by all heads
  dv = v.shape[-1]
  out = _cudnn_two_head_dims(q, k, v, bias, scale) if dv != q.shape[-1] else None
  if out is None:
    # MLA without the native path: V zero-padded to the qk dim (the padded output columns are
    # exactly zero and dropped; costs (192 - 128) / 128 more PV work)
    out = jax.nn.dot_product_attention(q, k, _pad_v(v, q.shape[-1]), mask=bias, scale=scale, is_causal=True,
                                       implementation="cudnn")
  return out[..., :dv]


def _pad_v(v, d):
  return jnp.pad(v, [(0, 0)] * 3 + [(0, d - v.shape[-1])]) if v.shape[-1] != d else v


# The packed layout's offsets have a static number of documents per row; a row with more takes the
# mask path (lax.cond). The default lives in the model config, with why it is sized as it is
RAGGED_MAX_SEGMENTS = ModelConfig.ragged_max_segments


def segment_runs(segment_ids, max_segments: int):
  """cuDNN's packed layout of [B, T] segment ids: every maximal run of one nonzero id is a sequence
  (the packer writes each document contiguously; 0 = padding, in no sequence).

  Returns (lengths [B, M] int32, starts [B, M + 1] int32, fits bool[]): each row's runs in order,
  unused entries -1, as jax's cuDNN entry point takes `q_seqlen`/`q_offsets`; `fits` is False when
  some row holds more than M runs (then its later runs are missing from the arrays)."""
  m = max_segments
  live = segment_ids != 0
  prev = jnp.pad(segment_ids, ((0, 0), (1, 0)))[:, :-1]
  start = live & (segment_ids != prev)
  count = start.sum(axis=1)
  starts = jax.vmap(lambda s: jnp.nonzero(s, size=m + 1, fill_value=-1)[0])(start).astype(jnp.int32)
  starts = starts.at[:, m].set(-1)
  run = jnp.cumsum(start, axis=1) - 1  # run index per token (padding tokens weigh 0 below)
  lengths = jax.vmap(lambda r, w: jnp.zeros(m, jnp.int32).at[r].add(w, mode="drop"))(run, live.astype(jnp.int32))
  lengths = jnp.where(jnp.arange(m) < count[:, None], lengths, -1)
  return lengths, starts, jnp.all(count <= m)


def _cudnn_packed_or_none(q, k, v, segment_ids, scale, max_segments):
  """Packed rows in cuDNN's ragged layout (Hopper or later), or None where it does not apply.

  jax's wrapper turns the per-row offsets into flat element offsets with Q's per-token stride for
  Q and O and K's for K and V: so V is zero-padded to the qk dim where MLA's differ, and GQA needs
  jax >= 0.11.1, whose wrapper scales K/V offsets by the K/V heads (jax PR #39521). A private
  module, like `_cudnn_two_head_dims`: any refusal at trace time returns None (the mask path)."""
  if k.shape[2] != q.shape[2] and jax.__version_info__ < (0, 11, 1):
    return None
  try:
    from jax._src.cudnn import fused_attention_stablehlo as fa
    lengths, starts, fits = segment_runs(segment_ids, max_segments)
    dv = v.shape[-1]

    def ragged(q, k, v, segment_ids, lengths, starts):
      # tokens in no sequence (padding) are never written by the kernel, forwards (O) or backwards
      # (dQ, dK, dV): their values are whatever the buffer held, NaN included (measured on an H200).
      # So O is zeroed there, and the inputs pass through a select whose backward zeroes their
      # gradients there (its forward is the identity)
      live = (segment_ids != 0)[:, :, None, None]
      q, k, v = (jnp.where(live, x, jax.lax.stop_gradient(x)) for x in (q, k, v))
      out = fa.dot_product_attention(q, k, _pad_v(v, q.shape[-1]), q_seqlen=lengths, kv_seqlen=lengths,
                                     q_offsets=starts, kv_offsets=starts, scale=scale,
                                     mask_type=fa.MaskType.PADDING_CAUSAL)
      return jnp.where(live, out[..., :dv], 0).astype(q.dtype)

    def masked(q, k, v, segment_ids, lengths, starts):
      return _cudnn_masked(q, k, v, segment_ids, scale).astype(q.dtype)

    return jax.lax.cond(fits, ragged, masked, q, k, v, segment_ids, lengths, starts)
  except (ImportError, AttributeError, TypeError, ValueError, NotImplementedError, RuntimeError):
    return None


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
