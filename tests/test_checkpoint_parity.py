"""HF checkpoint import/export parity: tiny random transformers models (torch fp32) vs our logits."""
import json
import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from foresight_jax import sharding  # noqa: E402
from foresight_jax.models import presets, transformer  # noqa: E402
from foresight_jax.models.checkpoint import (hf_config_to_model_config, load_pretrained,  # noqa: E402
                                             model_config_to_hf_config, save_pretrained)

TOL = 1e-4
V = 256
COMMON = dict(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2, bos_token_id=1,
              eos_token_id=2, max_position_embeddings=256)


def _hf_configs():
  from transformers import LlamaConfig, Qwen2Config, Qwen3Config
  from transformers.models.youtu import YoutuConfig
  mla = dict(num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=16, qk_nope_head_dim=16,
             qk_rope_head_dim=8, v_head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 1e4})
  return {
      "llama_gqa_tied": LlamaConfig(**COMMON, num_attention_heads=4, num_key_value_heads=2,
                                    tie_word_embeddings=True, rms_norm_eps=1e-5),
      # original_max_position_embeddings small so all three llama3 frequency bands occur at head_dim 16
      "llama3_rope": LlamaConfig(**COMMON, num_attention_heads=4, num_key_value_heads=1, head_dim=32,
                                 rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 16}),
      "qwen2_bias": Qwen2Config(**COMMON, num_attention_heads=4, num_key_value_heads=2,
                                rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
      "qwen3_qknorm": Qwen3Config(**COMMON, num_attention_heads=4, num_key_value_heads=2, head_dim=24),
      "youtu_qlora": YoutuConfig(**COMMON, q_lora_rank=32, **mla),
      "youtu_no_qlora": YoutuConfig(**COMMON, q_lora_rank=None, tie_word_embeddings=False, **mla),
  }


FAMILIES = list(_hf_configs())


def _randomize(model):
  """Perturb every tensor (HF inits norms to 1 and biases to 0, which would hide layout bugs)."""
  g = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=g)
      if p.ndim == 1:
        p.copy_((1.0 + 0.2 * noise) if "norm" in name else 0.2 * noise)
      else:
        p.copy_(noise / (p.shape[1] ** 0.5 if "embed" not in name else 1.0))


def _torch_logits(model, tokens):
  with torch.no_grad():
    return model(torch.as_tensor(tokens)).logits.float().numpy()


def _ours(cfg, params, tokens):
  return np.asarray(transformer.logits(cfg, params, tokens))


@pytest.fixture(scope="module")
def tokens():
  return np.random.RandomState(0).randint(0, V, size=(2, 40)).astype(np.int32)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory, tokens):
  """family -> (checkpoint dir, torch reference logits); models built and saved once."""
  from transformers import AutoModelForCausalLM
  out = {}
  for name, hf_cfg in _hf_configs().items():
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="eager").float().eval()
    _randomize(model)
    d = str(tmp_path_factory.mktemp(name))
    model.save_pretrained(d)
    out[name] = (d, _torch_logits(model, tokens), model)
  return out


@pytest.mark.parametrize("family", FAMILIES)
def test_load_matches_torch(hf_models, tokens, family):
  d, ref, _ = hf_models[family]
  cfg, params = load_pretrained(d)
  assert cfg.family == family.split("_")[0].replace("llama3", "llama")
  assert cfg.param_dtype == "float32"
  diff = np.abs(_ours(cfg, params, tokens) - ref).max()
  assert diff <= TOL, f"{family}: max |dlogit| {diff}"


def test_llama3_scaling_and_tie_read(hf_models):
  cfg, _ = load_pretrained(hf_models["llama3_rope"][0])
  assert cfg.rope_llama3_scaling == (8.0, 1.0, 4.0, 16) and cfg.rope_theta == 5e5 and not cfg.tie_embeddings
  cfg, params = load_pretrained(hf_models["llama_gqa_tied"][0])
  assert cfg.tie_embeddings and "lm_head" not in params and cfg.num_kv_heads == 2
  assert cfg.eos_token_ids == (2,) and cfg.bos_token_id == 1


def test_sharded_index_checkpoint(hf_models, tokens, tmp_path):
  _, ref, model = hf_models["qwen2_bias"]
  model.save_pretrained(tmp_path, max_shard_size="40KB")
  assert (tmp_path / "model.safetensors.index.json").exists()
  assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
  cfg, params = load_pretrained(tmp_path)
  assert np.abs(_ours(cfg, params, tokens) - ref).max() <= TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_export_roundtrip_through_transformers(hf_models, tokens, tmp_path, family):
  from transformers import AutoModelForCausalLM
  d, ref, _ = hf_models[family]
  cfg, params = load_pretrained(d)
  save_pretrained(cfg, params, tmp_path)
  hf_cfg = json.loads((tmp_path / "config.json").read_text())
  assert hf_cfg["architectures"] == json.loads(open(os.path.join(d, "config.json")).read())["architectures"]
  back = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").float().eval()
  # the exported tensors are the source's, bit for bit, so transformers computes the same logits
  src = hf_models[family][2].state_dict()
  for name, t in back.state_dict().items():
    assert torch.equal(t, src[name]), f"{family}: exported {name} differs from the source checkpoint"
  np.testing.assert_array_equal(_torch_logits(back, tokens), ref, err_msg=f"{family}: exported logits")
  cfg2, params2 = load_pretrained(tmp_path)  # and our own re-import is exact
  assert cfg2 == cfg
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("family", ["llama_gqa_tied", "qwen3_qknorm", "youtu_qlora"])
def test_load_onto_8_device_mesh(hf_models, tokens, family):
  assert jax.device_count() >= 8
  d, ref, _ = hf_models[family]
  cfg, params = load_pretrained(d)
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  cfg_m, params_m = load_pretrained(d, mesh=mesh)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(params_m)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))
  mlp = params_m["layers"]["mlp"]["gate"]
  assert mlp.sharding.mesh.shape == mesh.shape and len(mlp.addressable_shards) == 8
  assert mlp.addressable_shards[0].data.shape == (cfg.num_layers, cfg.hidden_size // 2, cfg.intermediate_size // 2)
  with jax.set_mesh(mesh):
    sharded = _ours(cfg_m, params_m, tokens)
  assert np.abs(sharded - _ours(cfg, params, tokens)).max() <= 5e-5  # reduction order differs
  assert np.abs(sharded - ref).max() <= TOL


def test_bfloat16_load_and_export(hf_models, tokens, tmp_path):
  """bf16 import, compute and export, on logits of order 10 (the llama3_rope model with its final
  norm x5: std 5.2, max 23; the shared models' logits reach only ~4.7).

  Measured against the fp32 torch logits: ours in bf16 (bf16 weights and compute) max 0.20, mean
  0.033; the exported BF16 safetensors run by torch in fp32 (bf16 weight rounding only) max 0.14,
  mean 0.020; ours against that (bf16 compute alone, same weights) max 0.16, mean
  0.027. Bounds ~3x; the lower bounds fail if the export or the compute is silently fp32."""
  import copy
  from transformers import AutoModelForCausalLM
  model = copy.deepcopy(hf_models["llama3_rope"][2])
  with torch.no_grad():
    model.model.norm.weight.mul_(5.0)
  model.save_pretrained(tmp_path / "src")
  ref = _torch_logits(model, tokens)
  assert ref.std() > 4 and np.abs(ref).max() > 15
  cfg, params = load_pretrained(tmp_path / "src", dtype="bfloat16")
  assert cfg.param_dtype == cfg.compute_dtype == "bfloat16"
  assert all(x.dtype == jax.numpy.bfloat16 for x in jax.tree.leaves(params))
  ours = _ours(cfg, params, tokens)
  save_pretrained(cfg, params, tmp_path / "out")  # BF16 safetensors
  back = AutoModelForCausalLM.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
  assert {p.dtype for p in back.parameters()} == {torch.bfloat16}
  np.testing.assert_array_equal(back.model.embed_tokens.weight.detach().float().numpy(),
                                np.asarray(params["embed"], np.float32))  # the exported bits are ours
  back32 = _torch_logits(back.float(), tokens)  # the same bf16 weights, computed in fp32
  err, err_back, err_compute = np.abs(ours - ref), np.abs(back32 - ref), np.abs(ours - back32)
  print(f"bf16 (max |logit| {np.abs(ref).max():.1f}): ours vs fp32 max {err.max():.3g} mean {err.mean():.3g}; "
        f"exported weights max {err_back.max():.3g} mean {err_back.mean():.3g}; bf16 compute alone "
        f"max {err_compute.max():.3g} mean {err_compute.mean():.3g}")
  assert err.max() < 0.6 and err.mean() < 0.1
  assert err_back.max() < 0.4 and 0.002 < err_back.mean() < 0.06  # an fp32 export would give ~1e-5
  assert err_compute.max() < 0.6 and 0.005 < err_compute.mean() < 0.1  # fp32 compute would give ~1e-5
  cfg2, params2 = load_pretrained(tmp_path / "out", dtype="bfloat16")
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_config_mapping_legacy_fields_and_presets():
  legacy = dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=100, hidden_size=64,
                intermediate_size=96, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
                rope_theta=5e5, eos_token_id=[7, 9], bos_token_id=None,
                rope_scaling={"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192})
  cfg = hf_config_to_model_config(legacy)
  assert cfg.rope_theta == 5e5 and cfg.rope_llama3_scaling == (32.0, 1.0, 4.0, 8192)
  assert cfg.eos_token_ids == (7, 9) and cfg.bos_token_id is None and cfg.head_dim == 8
  assert not cfg.tie_embeddings
  # no num_key_value_heads (LLaMA-1-era configs): multi-head attention, as transformers reads it
  mha = {k: v for k, v in legacy.items() if k != "num_key_value_heads"}
  tc = transformers.AutoConfig.for_model("llama", **{k: v for k, v in mha.items() if k != "model_type"})
  assert hf_config_to_model_config(mha).num_kv_heads == tc.num_key_value_heads == 8
  qwen3 = presets.model_config("qwen2_5_1_5b", family="qwen3", attention_bias=False, qk_norm=True)
  for c in [presets.model_config(n) for n in ("llama3_2_3b", "smollm2_135m", "qwen2_5_7b", "youtu_llm_2b",
                                              "tiny", "tiny_mla")] + [
                qwen3, presets.model_config("tiny", initializer_range=0.08)]:
    hf = model_config_to_hf_config(c)
    assert hf_config_to_model_config(hf) == c
    # transformers itself accepts every field
    tc = transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)
    assert hf_config_to_model_config(tc) == c


@pytest.mark.parametrize("family", ["llama3_rope", "youtu_no_qlora"])
def test_small_read_chunks_give_identical_params(hf_models, monkeypatch, family):
  """Big tensors are read in row chunks; force many tiny chunks (also across a mesh) and compare."""
  from foresight_jax.models.checkpoint import layout
  d = hf_models[family][0]
  _, params = load_pretrained(d)
  monkeypatch.setattr(layout, "_CHUNK_ELEMS", 50)
  for mesh in (None, sharding.make_mesh(data=2, fsdp=2, tensor=2)):
    _, chunked = load_pretrained(d, mesh=mesh)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(chunked)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


def test_read_block_equals_the_same_slice_of_the_whole_tensor_on_any_axis():
  """A shard's block is read as one contiguous HF range where the layout allows (whole inner axes),
  and otherwise as the whole axis, sliced after reshaping; either way it equals the same slice of
  the whole tensor in our layout, an inner axis of a split HF axis (head_dim) included."""
  from foresight_jax.models.checkpoint import layout
  tm = layout.TensorMap("w", ((3, 4), (5,)), (1, 0))  # HF [heads 3 x head_dim 4, in 5] -> ours [5, 3, 4]
  whole = np.arange(60, dtype=np.float32).reshape(12, 5)
  reads = []

  class Source:
    def read(self, name, ranges):
      reads.append(ranges)
      return whole[tuple(slice(a, b) for a, b in ranges)]

  ours = whole.reshape(3, 4, 5).transpose(2, 0, 1)
  for index in [(slice(0, 5), slice(1, 3), slice(0, 4)),   # heads 1-2: HF rows 4..12 only
                (slice(2, 4), slice(0, 3), slice(1, 3)),   # part of head_dim: every row, sliced after
                (slice(0, 5), slice(2, 3), slice(3, 4))]:
    np.testing.assert_array_equal(layout.read_block(Source(), tm, "w", index), ours[index], err_msg=str(index))
  assert reads[0] == ((4, 12), (0, 5)) and reads[1] == ((0, 12), (2, 4))
