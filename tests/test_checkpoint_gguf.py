"""GGUF import on tiny synthetic files written the way llama.cpp's converter writes them.

The writer uses gguf-py's own HF->GGUF tensor-name map and llama.cpp's q/k rope row permutation,
so a GGUF import that matches the safetensors import of the same weights proves our name table and
the un-permutation. (The real SmolLM2 GGUF is checked against transformers in test_smollm2_gguf.py.)
"""
import json

import jax
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from foresight_jax.models import params as params_lib, presets, transformer  # noqa: E402
from foresight_jax.models.checkpoint import load_pretrained, model_config_to_hf_config  # noqa: E402
from foresight_jax.models.checkpoint import layout  # noqa: E402

ARCH = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3}


def llama_cpp_permute(w, n_head, n_head_kv=None):
  """llama.cpp convert_hf_to_gguf.py LlamaModel.permute."""
  if n_head_kv is not None and n_head != n_head_kv:
    n_head = n_head_kv
  return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny_cfg(family="llama", **kw):
  base = dict(family=family, vocab_size=96, num_heads=4, num_kv_heads=2, tie_embeddings=False)
  if family == "qwen2":
    base.update(attention_bias=True)
  if family == "qwen3":
    base.update(qk_norm=True, head_dim=24)
  base.update(kw)
  return presets.model_config("tiny", **base)


def hf_tensors(cfg, seed=0):
  """HF-named, HF-layout numpy tensors of random params (norms and biases perturbed too)."""
  p = params_lib.init_params(cfg, jax.random.PRNGKey(seed))
  rng = np.random.RandomState(seed)
  out = {}
  for name, _, get in layout.iter_hf_tensors(cfg, p):
    a = np.asarray(get(), np.float32)
    if a.ndim == 1:
      a = a + 0.2 * rng.standard_normal(a.shape).astype(np.float32)
    out[name] = a
  return out


def write_gguf(path, cfg, tensors, arch=None, qtype=None, drop=(), extra=None, rope_scaling=None):
  """A llama.cpp-style GGUF of `tensors` (HF names/layouts); 2-D weights quantized to `qtype`."""
  arch = arch or cfg.family
  names = gguf.get_tensor_name_map(ARCH.get(arch, gguf.MODEL_ARCH.LLAMA), cfg.num_layers)
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(cfg.num_layers)
  w.add_context_length(cfg.max_position_embeddings)
  w.add_embedding_length(cfg.hidden_size)
  w.add_feed_forward_length(cfg.intermediate_size)
  w.add_head_count(cfg.num_heads)
  w.add_head_count_kv(cfg.num_kv_heads)
  w.add_key_length(cfg.head_dim)
  w.add_value_length(cfg.head_dim)
  w.add_rope_freq_base(cfg.rope_theta)
  w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
  w.add_token_list([f"t{i}" for i in range(cfg.vocab_size)])
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  if rope_scaling:
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
  for hf_name, a in tensors.items():
    gname = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    assert gname is not None, hf_name
    if gname in drop:
      continue
    if arch == "llama" and gname.endswith(("attn_q.weight", "attn_k.weight")):
      a = llama_cpp_permute(a, cfg.num_heads, cfg.num_kv_heads if "attn_k" in gname else None)
    if qtype is not None and a.ndim == 2:
      w.add_tensor(gname, gguf.quants.quantize(a, qtype), raw_dtype=qtype)
    else:
      w.add_tensor(gname, np.ascontiguousarray(a))
  for gname, a in (extra or {}).items():
    w.add_tensor(gname, a)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return str(path)


def write_safetensors_dir(d, cfg, tensors):
  """The same weights as an HF checkpoint dir."""
  from safetensors.numpy import save_file
  d.mkdir()
  save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
  (d / "config.json").write_text(json.dumps(model_config_to_hf_config(cfg)))
  return str(d)


TOKENS = np.random.RandomState(1).randint(0, 96, size=(2, 24)).astype(np.int32)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_f32_gguf_matches_safetensors(tmp_path, family):
  cfg = tiny_cfg(family, tie_embeddings=family == "qwen2")
  t = hf_tensors(cfg)
  g = write_gguf(tmp_path / "m.gguf", cfg, t)
  cfg_g, p_g = load_pretrained(g)
  cfg_s, p_s = load_pretrained(write_safetensors_dir(tmp_path / "st", cfg, t))
  assert cfg_g.replace(max_position_embeddings=0, bos_token_id=0, eos_token_ids=()) == \
      cfg_s.replace(max_position_embeddings=0, bos_token_id=0, eos_token_ids=())
  assert cfg_g.tie_embeddings == (family == "qwen2")
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(p_s), jax.tree.leaves(p_g)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


def test_q8_0_gguf_close_to_f32(tmp_path):
  cfg = tiny_cfg("llama", hidden_size=64, intermediate_size=128)
  t = hf_tensors(cfg)
  cfg32, p32 = load_pretrained(write_gguf(tmp_path / "f32.gguf", cfg, t))
  cfgq, pq = load_pretrained(write_gguf(tmp_path / "q8.gguf", cfg, t, qtype=gguf.GGMLQuantizationType.Q8_0))
  q = np.asarray(pq["layers"]["attn"]["q"])
  assert 0 < np.abs(q - np.asarray(p32["layers"]["attn"]["q"])).max() < 0.01 * np.abs(q).max()
  a, b = (np.asarray(transformer.logits(c, p, TOKENS)) for c, p in ((cfg32, p32), (cfgq, pq)))
  assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_gguf_onto_mesh(tmp_path):
  from foresight_jax import sharding
  cfg = tiny_cfg("llama")
  g = write_gguf(tmp_path / "m.gguf", cfg, hf_tensors(cfg))
  _, p = load_pretrained(g)
  _, pm = load_pretrained(g, mesh=sharding.make_mesh(data=2, fsdp=2, tensor=2))
  for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(pm)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gguf_small_read_chunks(tmp_path, monkeypatch):
  cfg = tiny_cfg("llama")
  g = write_gguf(tmp_path / "m.gguf", cfg, hf_tensors(cfg), qtype=gguf.GGMLQuantizationType.Q8_0)
  _, p = load_pretrained(g)
  monkeypatch.setattr(layout, "_CHUNK_ELEMS", 64)
  _, pc = load_pretrained(g)
  for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(pc)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
