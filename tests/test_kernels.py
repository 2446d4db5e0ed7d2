"""Attention kernels and the chunked LM-head loss against their plain references.

Every no-cache attention path must equal `layers.dot_attention` over the explicit mask (fp32,
1e-5) with packed segments, left padding, GQA and MLA's qk dim 192 / v dim 128 shape, forwards and
backwards. The splash (TPU) kernel runs in Pallas interpret mode here; the cuDNN kernel runs only
where a GPU is present (on the device, BUILD_NOTES)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foresight_jax.models import kernels, layers, params as params_lib, presets, transformer
from foresight_jax.train import losses

ON_GPU = jax.devices()[0].platform == "gpu"


def _segments(b, t):
  """Row 0: two packed documents then padding; row 1: left padding then one document; rest: whole."""
  seg = np.ones((b, t), np.int32)
  seg[0, t // 3:] = 2
  seg[0, t - t // 8:] = 0
  seg[1, :t // 5] = 0
  return jnp.asarray(seg)


def _qkv(b, t, h, kh, d, dv, dtype=jnp.float32, seed=0):
  ks = jax.random.split(jax.random.key(seed), 4)
  q = jax.random.normal(ks[0], (b, t, h, d), dtype)
  k = jax.random.normal(ks[1], (b, t, kh, d), dtype)
  v = jax.random.normal(ks[2], (b, t, kh, dv), dtype)
  ct = jax.random.normal(ks[3], (b, t, h, dv), jnp.float32)  # a random cotangent for the backward
  return q, k, v, ct


def _documents(b, t, n):
  """Row 0: n packed documents of unequal lengths then padding; row 1: left padding then one."""
  seg = np.ones((b, t), np.int32)
  cuts = np.sort(np.random.default_rng(n).choice(np.arange(1, t - 9), n - 1, replace=False))
  seg[0] = np.searchsorted(cuts, np.arange(t), side="right") + 1
  seg[0, t - 9:] = 0
  seg[1, :t // 5] = 0
  return jnp.asarray(seg)


def _check(impl, b, t, h, kh, d, dv, dtype=jnp.float32, atol=1e-5, grad_rtol=1e-5, seg=None, max_segments=None):
  q, k, v, ct = _qkv(b, t, h, kh, d, dv, dtype)
  seg = _segments(b, t) if seg is None else seg
  slot = jnp.arange(t)
  mask = layers.attention_mask(slot, slot, seg, seg)
  scale = d ** -0.5
  real = (np.asarray(seg) != 0)[:, :, None, None]  # padding rows are unspecified by contract

  def loss(fn, q, k, v):
    return (fn(q, k, v).astype(jnp.float32) * ct * real).sum()

  ref_fn = lambda q, k, v: layers.dot_attention(q.astype(jnp.float32), k.astype(jnp.float32),
                                                v.astype(jnp.float32), mask, scale)
  fn = lambda q, k, v: kernels.self_attention(q, k, v, seg, mask, scale, impl, True, max_segments)
  out, ref = jax.jit(fn)(q, k, v), ref_fn(q, k, v)
  assert out.shape == ref.shape
  np.testing.assert_allclose(np.asarray(out, np.float32) * real, np.asarray(ref) * real, atol=atol)
  grads = jax.jit(jax.grad(functools.partial(loss, fn), argnums=(0, 1, 2)))(q, k, v)
  ref_grads = jax.grad(functools.partial(loss, ref_fn), argnums=(0, 1, 2))(q, k, v)
  for name, g, r in zip("qkv", grads, ref_grads):
    err = float(jnp.max(jnp.abs(g.astype(jnp.float32) - r)))
    assert err <= grad_rtol * float(jnp.max(jnp.abs(r))) + atol, (name, err)


SHAPES = {"gqa": (2, 256, 4, 2, 32, 32), "mla": (2, 256, 4, 4, 192, 128)}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("impl", ["xla", "splash"])
def test_attention_paths_equal_reference(impl, shape):
  _check(impl, *SHAPES[shape])


# T 203: not a multiple of cuDNN's 64, so the kernel pads the sequence (RL rollouts have any length)
CUDNN_SHAPES = {**SHAPES, "ragged": (2, 203, 4, 2, 32, 32)}


@pytest.mark.skipif(not ON_GPU, reason="cuDNN flash attention needs a GPU (run on the device)")
@pytest.mark.parametrize("docs", [2, 5, kernels.RAGGED_MAX_SEGMENTS + 4])
@pytest.mark.parametrize("shape", sorted(CUDNN_SHAPES))
@pytest.mark.parametrize("impl", ["cudnn", "cudnn_mask"])
def test_cudnn_attention_equals_reference(impl, shape, docs):
  # bf16 inputs (cuDNN has no fp32 kernel): bounds a few times bf16 rounding of O(1) outputs. More
  # documents in a row than RAGGED_MAX_SEGMENTS take the mask path inside "cudnn" (lax.cond)
  seg = _segments(2, CUDNN_SHAPES[shape][1]) if docs == 2 else _documents(2, CUDNN_SHAPES[shape][1], docs)
  _check(impl, *CUDNN_SHAPES[shape], dtype=jnp.bfloat16, atol=2e-2, grad_rtol=2e-2, seg=seg)


@pytest.mark.skipif(not ON_GPU, reason="cuDNN flash attention needs a GPU (run on the device)")
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_cudnn_packed_rows_take_the_ragged_layout(shape):
  """The packed layout is really taken (not silently the mask path) for GQA and MLA."""
  b, t, h, kh, d, dv = SHAPES[shape]
  q, k, v, _ = _qkv(b, t, h, kh, d, dv, dtype=jnp.bfloat16)
  out = kernels._cudnn_packed_or_none(q, k, v, _segments(b, t), d ** -0.5, kernels.RAGGED_MAX_SEGMENTS)
  assert out is not None and out.shape == (b, t, h, dv)


@pytest.mark.skipif(not ON_GPU, reason="cuDNN flash attention needs a GPU (run on the device)")
@pytest.mark.parametrize("max_segments", [4, 5, 6])
def test_cudnn_ragged_sized_to_the_documents(max_segments):
  """`ragged_max_segments` at, above and below a row's 5 documents (below: the mask path)."""
  seg = _documents(2, SHAPES["gqa"][1], 5)
  _check("cudnn", *SHAPES["gqa"], dtype=jnp.bfloat16, atol=2e-2, grad_rtol=2e-2, seg=seg, max_segments=max_segments)
  b, t, h, kh, d, dv = SHAPES["gqa"]
  q, k, v, _ = _qkv(b, t, h, kh, d, dv, dtype=jnp.bfloat16)
  fn = lambda q, k, v: kernels.self_attention(q, k, v, seg, None, d ** -0.5, "cudnn", True, max_segments)
  assert f"i32[{b},{max_segments}]" in str(jax.make_jaxpr(fn)(q, k, v))  # the per-row lengths' static size


def test_segment_runs_are_the_documents_of_each_row():
  seg = jnp.asarray([[1, 1, 1, 2, 2, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1, 1], [1, 2, 3, 3, 4, 0, 5, 5]])
  lengths, starts, fits = kernels.segment_runs(seg, 3)
  np.testing.assert_array_equal(lengths, [[3, 2, -1], [6, -1, -1], [1, 1, 2]])
  np.testing.assert_array_equal(starts, [[0, 3, -1, -1], [2, -1, -1, -1], [0, 1, 2, -1]])
  assert not bool(fits)  # row 2 holds 5 documents
  assert bool(kernels.segment_runs(seg[:2], 3)[2])
  # on the test layouts, the runs rebuild exactly the tokens of each document
  t = 96
  for seg in (_segments(2, t), _documents(2, t, 5), _documents(2, t, 12)):
    lengths, starts, fits = kernels.segment_runs(seg, 12)
    pos = np.arange(t)
    for row in range(2):
      rebuilt = np.zeros(t, np.int32)
      for r, (s0, n) in enumerate(zip(np.asarray(starts[row]), np.asarray(lengths[row]))):
        if n > 0:
          rebuilt[(pos >= s0) & (pos < s0 + n)] = r + 1
      # same partition into documents (ids renumbered in order of appearance)
      np.testing.assert_array_equal(rebuilt != 0, np.asarray(seg[row]) != 0)
      np.testing.assert_array_equal(np.diff(rebuilt) != 0, np.diff(np.asarray(seg[row])) != 0)
    assert bool(fits)


@pytest.mark.skipif(not ON_GPU, reason="cuDNN flash attention needs a GPU (run on the device)")
def test_cudnn_mla_runs_two_head_dims_in_one_call():
  """On Hopper with cuDNN >= 9.10, MLA's qk 192 / v 128 reaches cuDNN as is (no V padding): the
  native call answers, and `test_cudnn_attention_equals_reference[mla]` checks its values."""
  q, k, v, _ = _qkv(2, 256, 4, 4, 192, 128, dtype=jnp.bfloat16)
  out = kernels._cudnn_two_head_dims(q, k, v, None, 192 ** -0.5)
  assert out is not None and out.shape == (2, 256, 4, 128)


def test_end_padding_leaves_causal_attention_unchanged():
  """What `_pad_seq` relies on for cuDNN: keys appended after the last query (segment 0) change no
  real row of causal, segment-masked attention."""
  b, t, h, kh, d, dv = 2, 203, 4, 2, 32, 32
  q, k, v, _ = _qkv(b, t, h, kh, d, dv)
  seg = _segments(b, t)
  seg_p, qp, kp, vp = kernels._pad_seq(kernels.CUDNN_SEQ_MULTIPLE, seg, q, k, v)
  assert qp.shape[1] == 256 and seg_p.shape == (b, 256) and int(jnp.abs(seg_p[:, t:]).sum()) == 0
  attn = lambda s, q, k, v: layers.dot_attention(
      q, k, v, layers.attention_mask(jnp.arange(q.shape[1]), jnp.arange(q.shape[1]), s, s), d ** -0.5)
  real = (np.asarray(seg) != 0)[:, :, None, None]
  want = np.asarray(attn(seg, q, k, v)) * real
  np.testing.assert_allclose(np.asarray(attn(seg_p, qp, kp, vp)[:, :t]) * real, want, atol=1e-6)
  # unpacked rows reach cuDNN with no segment mask at all: padded keys in the row's own segment
  # are excluded by causality alone
  seg_live = seg_p.at[:, t:].set(seg[:, -1:])
  np.testing.assert_allclose(np.asarray(attn(seg_live, qp, kp, vp)[:, :t]) * real, want, atol=1e-6)


def test_auto_picks_per_backend_and_fp32_never_reaches_cudnn():
  want = {"gpu": "cudnn", "tpu": "splash"}.get(jax.devices()[0].platform, "xla")
  assert kernels.resolve("auto", jnp.bfloat16) == want
  assert kernels.resolve("cudnn_mask", jnp.float32) == "xla"
  assert kernels.resolve("cudnn", jnp.float32) == "xla"
  with pytest.raises(ValueError, match="attention_impl"):
    kernels.resolve("flash3", jnp.float32)
  with pytest.raises(ValueError, match="attention_impl"):
    presets.model_config("tiny").replace(attention_impl="flash3")


@pytest.mark.parametrize("name", ["tiny", "tiny_mla"])
def test_model_with_splash_equals_xla(name):
  """The whole decoder on a packed batch: the kernel choice does not change the logits."""
  cfg = presets.model_config(name)
  params = params_lib.init_params(cfg, jax.random.key(1))
  b, t = 2, 128
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (b, t)), jnp.int32)
  seg = _segments(b, t)
  pos = jnp.broadcast_to(jnp.arange(t), (b, t))
  out = {impl: transformer.forward(cfg.replace(attention_impl=impl), params, tokens, pos, seg)[0]
         for impl in ("xla", "splash")}
  real = (np.asarray(seg) != 0)[..., None]
  np.testing.assert_allclose(np.asarray(out["splash"]) * real, np.asarray(out["xla"]) * real, atol=1e-5)


@pytest.mark.parametrize("tie", [True, False])
def test_chunked_lm_loss_and_grads_equal_plain(tie):
  cfg = presets.model_config("tiny").replace(tie_embeddings=tie)
  params = params_lib.init_params(cfg, jax.random.key(2))
  b, t = 2, 64
  rng = np.random.default_rng(3)
  h = jnp.asarray(rng.normal(size=(b, t, cfg.hidden_size)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, cfg.vocab_size, (b, t)), jnp.int32)
  mask = jnp.asarray(rng.random((b, t)) < 0.7, jnp.float32)

  def plain(params, h):
    return losses.masked_cross_entropy(transformer.lm_head(cfg, params, h), targets, mask)[0]

  def chunked(params, h):
    return losses.lm_head_cross_entropy(cfg, params, h, targets, mask, chunk=8)[0]

  (l0, g0), (l1, g1) = (jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(params, h) for f in (plain, chunked))
  np.testing.assert_allclose(float(l1), float(l0), rtol=1e-6)
  for a, r in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(r), atol=1e-6 * float(jnp.max(jnp.abs(r))) + 1e-9)
  # the chunk never holds more than its budget: 8 positions of 2 rows
  assert losses.logits_chunk(2, 64, cfg.vocab_size, budget=2 * 8 * cfg.vocab_size * 4) == 8
  assert losses.logits_chunk(4, 4096, 151_936) == 512  # Qwen2.5 at seq 4096, batch 4: 8 chunks of 1.2 GB
