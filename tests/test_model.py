"""Model math: size arithmetic, equivalence of scan/remat/packing, and sharded == single-device."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foresight_jax import sharding
from foresight_jax.models import config as config_lib
from foresight_jax.models import params as params_lib
from foresight_jax.models import presets, transformer


def _tokens(cfg, b=2, t=12, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, cfg.vocab_size, (b, t)), jnp.int32)


@pytest.mark.parametrize("name,expected", [
    ("smollm2_135m", 134_515_008),
    ("youtu_llm_2b", 1_961_560_064),
    ("qwen2_5_1_5b", 1_543_714_304),
    ("qwen2_5_7b", 7_615_616_512),
    ("llama3_2_3b", 3_212_749_824),
])
def test_param_count_matches_published_models(name, expected):
  # Totals of the public HF checkpoints (tied embeddings counted once).
  assert config_lib.param_count(presets.model_config(name)) == expected


@pytest.mark.parametrize("name", ["tiny", "tiny_mla"])
def test_param_count_equals_materialised_sizes(name):
  cfg = presets.model_config(name)
  p = params_lib.init_params(cfg, jax.random.key(0))
  assert sum(x.size for x in jax.tree.leaves(p)) == config_lib.param_count(cfg)
  flops = config_lib.train_flops_per_token(cfg, 128)
  assert flops > 6 * config_lib.param_count(cfg, include_embeddings=False)


@pytest.mark.parametrize("name", ["tiny", pytest.param("tiny_mla", marks=pytest.mark.slow)])
def test_scan_unrolled_and_remat_agree(name):
  cfg = presets.model_config(name)
  p = params_lib.init_params(cfg, jax.random.key(1))
  tok = _tokens(cfg)
  ref = transformer.logits(cfg, p, tok)

  def loss(cfg, p):
    return jnp.mean(transformer.forward(cfg, p, tok)[0] ** 2)

  g_ref = jax.grad(functools.partial(loss, cfg))(p)
  for variant in (dict(scan_layers=False), dict(remat_policy="full"), dict(remat_policy="dots")):
    c2 = cfg.replace(**variant)
    np.testing.assert_allclose(transformer.logits(c2, p, tok), ref, atol=1e-5, err_msg=str(variant))
    g = jax.grad(functools.partial(loss, c2))(p)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
      np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4, err_msg=str(variant))


@pytest.mark.parametrize("name", ["tiny", "tiny_mla"])
def test_packed_segments_equal_separate_sequences(name):
  cfg = presets.model_config(name)
  p = params_lib.init_params(cfg, jax.random.key(2))
  a, b = _tokens(cfg, 1, 5, 3), _tokens(cfg, 1, 7, 4)
  packed = jnp.concatenate([a, b], axis=1)
  seg = jnp.asarray([[1] * 5 + [2] * 7], jnp.int32)
  pos = jnp.asarray([list(range(5)) + list(range(7))], jnp.int32)
  out, _ = transformer.forward(cfg, p, packed, positions=pos, segment_ids=seg)
  np.testing.assert_allclose(out[:, :5], transformer.logits(cfg, p, a), atol=1e-5)
  np.testing.assert_allclose(out[:, 5:], transformer.logits(cfg, p, b), atol=1e-5)


def test_bf16_compute_close_to_fp32():
  cfg = presets.model_config("tiny")
  p = params_lib.init_params(cfg, jax.random.key(3))
  tok = _tokens(cfg)
  ref = transformer.logits(cfg, p, tok)
  out = transformer.logits(cfg.replace(compute_dtype="bfloat16"), p, tok)
  assert out.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(out - ref))) < 5e-2


@pytest.mark.parametrize("name", ["tiny", "tiny_mla"])
# (2,2,2) and (1,1,8) cover data, fsdp and tensor splits in the default run; the other two are slow
@pytest.mark.parametrize("mesh_shape", [pytest.param((8, 1, 1), marks=pytest.mark.slow), (2, 2, 2),
                                        pytest.param((1, 4, 2), marks=pytest.mark.slow), (1, 1, 8)])
def test_sharded_logits_equal_single_device(name, mesh_shape):
  assert jax.device_count() == 8, "conftest forces 8 host devices"
  cfg = presets.model_config(name)
  key = jax.random.key(4)
  tok = _tokens(cfg, b=8, t=10)
  ref = transformer.logits(cfg, params_lib.init_params(cfg, key), tok)

  mesh = sharding.make_mesh(*mesh_shape)
  p = params_lib.init_params(cfg, key, mesh)
  # parameters really are distributed when the mesh has more than data parallelism
  if mesh_shape[1] * mesh_shape[2] > 1:
    emb = p["layers"]["mlp"]["gate"]
    assert math.prod(emb.sharding.shard_shape(emb.shape)) < emb.size
  with jax.set_mesh(mesh):
    tok_s = jax.device_put(tok, sharding.logical_sharding(mesh, ("batch", "seq"), tok.shape))
    out = jax.jit(functools.partial(transformer.forward, cfg))(p, tok_s)[0]
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)


def test_mesh_errors_name_the_problem():
  with pytest.raises(ValueError, match="does not divide"):
    sharding.make_mesh(data=-1, fsdp=3)
  with pytest.raises(ValueError, match="needs 4 devices"):
    sharding.make_mesh(data=2, fsdp=2, tensor=1)
  with pytest.raises(ValueError, match="unknown model preset"):
    presets.get("gpt5")
  with pytest.raises(ValueError, match="unknown model config keys"):
    presets.model_config("tiny", n_layers=3)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_swiglu_hand_written_backward_matches_autodiff(dtype, tol):
  # layers.mlp carries a custom VJP (2-D matmuls, one fused SiLU backward pass): its gradients must
  # equal autodiff of the plain formula, for every input, in fp32 and in bf16 compute.
  from foresight_jax.models import layers
  k = jax.random.split(jax.random.key(3), 5)
  b, t, d, f = 2, 7, 16, 40
  x = jax.random.normal(k[0], (b, t, d), dtype)
  p = {"gate": jax.random.normal(k[1], (d, f)) * 0.3, "up": jax.random.normal(k[2], (d, f)) * 0.3,
       "down": jax.random.normal(k[3], (f, d)) * 0.3}
  dy = jax.random.normal(k[4], (b, t, d), dtype)

  def plain(p, x):
    g = jnp.einsum("btd,df->btf", x, p["gate"].astype(dtype))
    u = jnp.einsum("btd,df->btf", x, p["up"].astype(dtype))
    return jnp.einsum("btf,fd->btd", jax.nn.silu(g) * u, p["down"].astype(dtype))

  y_ref, vjp_ref = jax.vjp(plain, p, x)
  y, vjp = jax.vjp(lambda p, x: layers.mlp(p, x, dtype), p, x)
  assert y.dtype == dtype
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), atol=tol, rtol=tol)
  for a, r in zip(jax.tree.leaves(vjp(dy)), jax.tree.leaves(vjp_ref(dy))):
    assert a.dtype == r.dtype and a.shape == r.shape
    scale = float(jnp.max(jnp.abs(r.astype(jnp.float32))))
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(r, np.float32), atol=tol * scale, rtol=tol)
