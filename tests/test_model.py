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
from foresight_jax.train import losses

from _model_weights import order10_params


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


@pytest.mark.parametrize("name,want", [
    # tiny: matmul params 74,048 + the LM head 64 x 512 = 32,768 -> 6 x 106,816 = 640,896; attention at
    # seq 128, QK^T and PV: 2 x 128 x (4 heads x 2 x 16) a layer forward, halved (causal), x 2 layers =
    # 32,768, x 3 (fwd + bwd) = 98,304
    ("tiny", 640_896 + 98_304),
    # tiny_mla (tied: the head is still a matmul): 6 x (75,168 + 32,768) = 647,616; attention
    # 2 x 128 x 4 x (qk 24 + v 16) x 2 / 2 = 40,960, x 3 = 122,880
    ("tiny_mla", 647_616 + 122_880),
])
def test_train_flops_per_token_by_hand(name, want):
  """The FLOP count every MFU figure divides by: 6 x (matmul params + the LM head, counted once
  whether tied or not) + 3 x causal attention (PaLM / MaxText convention)."""
  assert config_lib.train_flops_per_token(presets.model_config(name), 128) == want


@pytest.mark.parametrize("std", [0.02, 0.08])
def test_init_std_follows_initializer_range(std):
  """Every normal weight has std initializer_range (truncated at 2 sigma: x 0.88), the residual-branch
  outputs (attention o, MLP down) that / sqrt(2 layers); norms stay ones."""
  cfg = presets.model_config("tiny", initializer_range=std)
  p = params_lib.init_params(cfg, jax.random.key(0))
  trunc = 0.8796  # std of a standard normal truncated to [-2, 2]
  branch = std / math.sqrt(2 * cfg.num_layers)
  for leaf, want in [(p["embed"], std), (p["layers"]["attn"]["q"], std), (p["layers"]["mlp"]["up"], std),
                     (p["layers"]["attn"]["o"], branch), (p["layers"]["mlp"]["down"], branch)]:
    assert float(jnp.std(leaf)) == pytest.approx(want * trunc, rel=0.05)
  assert bool(jnp.all(p["final_norm"] == 1.0))


def test_each_tensor_draws_its_own_values_whatever_else_the_tree_holds():
  """Each tensor's key is folded from its path: tensors of one shape (gate and up, k and v) are not
  copies of each other, and a tensor's values do not depend on which other tensors exist."""
  cfg = presets.model_config("tiny")
  p = params_lib.init_params(cfg, jax.random.key(0))
  for a, b in [("mlp", "gate"), ("mlp", "up")], [("attn", "k"), ("attn", "v")]:
    x, y = p["layers"][a[0]][a[1]], p["layers"][b[0]][b[1]]
    assert x.shape == y.shape and abs(float(jnp.corrcoef(x.ravel(), y.ravel())[0, 1])) < 0.05
  untied = params_lib.init_params(cfg.replace(tie_embeddings=not cfg.tie_embeddings), jax.random.key(0))
  assert ("lm_head" in p) != ("lm_head" in untied)
  np.testing.assert_array_equal(np.asarray(p["embed"]), np.asarray(untied["embed"]))
  np.testing.assert_array_equal(np.asarray(p["layers"]["mlp"]["up"]), np.asarray(untied["layers"]["mlp"]["up"]))


def test_scan_layers_default_resolves_per_backend():
  """None (the default) scans everywhere but on a GPU, where unrolled layers measured faster; an
  explicit value wins on every backend, and the resolved choice changes no logits (below)."""
  cfg = presets.model_config("tiny")
  assert cfg.scan_layers is None and cfg.scanned == (jax.default_backend() != "gpu")
  assert cfg.replace(scan_layers=False).scanned is False and cfg.replace(scan_layers=True).scanned is True


SCAN_VARIANTS = {"unrolled": dict(scan_layers=False), "remat_full": dict(remat_policy="full"),
                 "remat_dots": dict(remat_policy="dots"),
                 "unrolled_remat_dots": dict(scan_layers=False, remat_policy="dots")}
# Per leaf: max |g - g_ref| <= GRAD_RTOL * max |g_ref|, so small leaves are checked as tightly as large
# ones (the q/k gradients are ~7e-6 in absolute terms, MLA's q_a_norm ~2e-7: an absolute 1e-6 bound
# left them unchecked). Measured, jitted as here: every variant is bitwise equal to the scan. Run op by
# op (no jit), unrolled layers differ by up to 8.3e-7 (tiny) and 1.2e-6 (tiny_mla) of the leaf's
# largest gradient: the reduction-order noise this bound leaves room for. A 1% error in one leaf's
# gradient fails it (it passed the old atol 1e-6 / rtol 1e-4 check).
GRAD_RTOL = 5e-6


@pytest.mark.parametrize("name,variants", [
    ("tiny", ("unrolled", "remat_full", "remat_dots")),
    ("tiny_mla", ("unrolled_remat_dots",)),  # MLA in the default run: one compile covers both paths
    pytest.param("tiny_mla", ("unrolled", "remat_full", "remat_dots"), marks=pytest.mark.slow),
])
def test_scan_unrolled_and_remat_agree(name, variants):
  cfg = presets.model_config(name).replace(scan_layers=True)  # the reference: one lax.scan on every backend
  p = params_lib.init_params(cfg, jax.random.key(1))
  tok = _tokens(cfg)

  def loss(cfg, p):
    out = transformer.forward(cfg, p, tok)[0]
    return jnp.mean(out ** 2), out

  def run(cfg):  # one compile per variant for logits and gradients
    (_, out), g = jax.jit(jax.value_and_grad(functools.partial(loss, cfg), has_aux=True))(p)
    return np.asarray(out), jax.tree_util.tree_leaves_with_path(g)

  ref, g_ref = run(cfg)
  for variant in variants:
    out, g = run(cfg.replace(**SCAN_VARIANTS[variant]))
    np.testing.assert_allclose(out, ref, atol=1e-5, err_msg=variant)
    worst = 0.0
    for (path, a), (_, b) in zip(g, g_ref):
      a, b = np.asarray(a), np.asarray(b)
      scale, err = float(np.abs(b).max()), float(np.abs(a - b).max())
      assert scale > 0, f"{variant}: zero gradient for {jax.tree_util.keystr(path)}"
      assert err <= GRAD_RTOL * scale, (
          f"{variant} {jax.tree_util.keystr(path)}: max |dg| {err:.3g} > {GRAD_RTOL} x max |g| {scale:.3g}")
      worst = max(worst, err / scale)
    print(f"{name} {variant}: max |dlogit| {np.abs(out - ref).max():.3g}, "
          f"worst per-leaf relative grad error {worst:.3g}")


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


# name -> (max, mean) bounds on |bf16 - fp32| logits: about 3x the measured max 0.26 / 0.55 and
# mean 0.032 / 0.080 (logits of std ~5, max ~20, 2x12 tokens).
BF16_BOUNDS = {"tiny": (0.8, 0.1), "tiny_mla": (1.6, 0.25)}


@pytest.mark.parametrize("name", ["tiny", "tiny_mla"])
def test_bf16_compute_close_to_fp32(name):
  # The lower bound on the mean is the other side: fp32 compute (bf16 silently ignored) gives ~1e-6.
  cfg = presets.model_config(name)
  p = order10_params(cfg)
  tok = _tokens(cfg)
  ref = np.asarray(transformer.logits(cfg, p, tok))
  out = transformer.logits(cfg.replace(compute_dtype="bfloat16"), p, tok)
  assert out.dtype == jnp.float32
  err = np.abs(np.asarray(out) - ref)
  print(f"{name}: logits std {ref.std():.2f} max {np.abs(ref).max():.1f}; bf16 error max {err.max():.3g} "
        f"mean {err.mean():.3g}")
  assert ref.std() > 4 and np.abs(ref).max() > 15  # order-10 logits
  max_bound, mean_bound = BF16_BOUNDS[name]
  assert err.max() < max_bound and err.mean() < mean_bound
  assert err.mean() > 0.01


def _dot_dtypes(fn, *args) -> list[tuple[str, ...]]:
  """Operand dtypes of every dot_general in fn's jaxpr (scan bodies and custom VJPs included)."""
  from jax.extend.core import jaxprs_in_params
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
      for sub in jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


@pytest.mark.parametrize("name", ["tiny", "tiny_mla"])
def test_bf16_compute_runs_every_matmul_in_bf16(name):
  """compute_dtype=bfloat16 must really compute in bf16, with every term of the fp32 model: the
  forward and backward hold the same matmuls as in fp32, none with two fp32 operands. (The
  numerical side, an error above fp32 round-off and below a lost term, is
  test_bf16_compute_close_to_fp32.)"""
  cfg = presets.model_config(name)
  p = order10_params(cfg)
  tok = _tokens(cfg)

  def loss(cfg, p):
    return jnp.mean(transformer.forward(cfg, p, tok)[0] ** 2)

  f32 = _dot_dtypes(jax.value_and_grad(functools.partial(loss, cfg)), p)
  b16 = _dot_dtypes(jax.value_and_grad(functools.partial(loss, cfg.replace(compute_dtype="bfloat16"))), p)
  assert f32 and all(d == ("float32", "float32") for d in f32)
  assert len(b16) == len(f32), f"bf16 has {len(b16)} matmuls, fp32 {len(f32)}: a term differs"
  # the backward of an fp32-accumulated product (scores) takes an fp32 cotangent against a bf16
  # operand; no matmul may be fp32 on both sides
  fp32 = [d for d in b16 if "bfloat16" not in d]
  assert not fp32, f"{len(fp32)} of {len(b16)} matmuls run in fp32 under compute_dtype=bfloat16"


@pytest.mark.parametrize("tie", [True, False])
def test_bf16_lm_head_backward_runs_bf16_gemms(tie):
  """With bf16 compute the LM head's backward GEMMs take bf16 operands (they ran in fp32 and took
  14% of a Qwen step on the GPU), and its gradients stay within bf16 rounding of the fp32 ones."""
  cfg = presets.model_config("tiny").replace(tie_embeddings=tie, compute_dtype="bfloat16")
  params = params_lib.init_params(cfg, jax.random.key(2))
  rng = np.random.default_rng(4)
  h = jnp.asarray(rng.normal(size=(2, 32, cfg.hidden_size)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, cfg.vocab_size, (2, 32)), jnp.int32)
  mask = jnp.ones((2, 32), jnp.float32)

  def loss(params, h, dtype):
    return losses.masked_cross_entropy(transformer.lm_head(cfg, params, h.astype(dtype)), targets, mask)[0]

  grad = jax.grad(loss, argnums=(0, 1))
  dots = _dot_dtypes(functools.partial(grad, dtype=jnp.bfloat16), params, h)
  assert dots == [("bfloat16", "bfloat16")] * 3, dots  # logits, dh, dW
  g16, g32 = grad(params, h, jnp.bfloat16), grad(params, h, jnp.float32)
  for a, r in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
    scale = float(jnp.max(jnp.abs(r)))
    if scale:
      np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(r), atol=3e-2 * scale)


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
  with pytest.raises(ValueError, match="ragged_max_segments=0"):
    presets.model_config("tiny", ragged_max_segments=0)


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
