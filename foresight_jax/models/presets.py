"""ml-collections presets: one constructor per model size (figures from the public HF configs).

`get(name)` returns a `ConfigDict` a user can edit (e.g. from `--config.model.config.scan_layers=False`);
`model_config(name_or_dict)` turns it into the hashable `ModelConfig` the model functions take.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

from foresight_jax.models.config import ModelConfig


# Optional fields whose None means "decide per backend" or "absent": a typed placeholder keeps them
# overridable from the command line (`--config.model.config.scan_layers=false`), which a bare None
# is not in ml_collections
_OPTIONAL_TYPES = {"bool | None": bool, "int | None": int}


def _cd(**kw) -> ml_collections.ConfigDict:
  base = ModelConfig(**{k: kw[k] for k in ("family", "vocab_size", "hidden_size", "intermediate_size",
                                            "num_layers", "num_heads", "num_kv_heads", "head_dim")})
  d = base.to_dict()
  d.update(kw)
  for f in dataclasses.fields(ModelConfig):
    if d[f.name] is None and f.type in _OPTIONAL_TYPES:
      d[f.name] = ml_collections.config_dict.placeholder(_OPTIONAL_TYPES[f.type])
  return ml_collections.ConfigDict(d)


def tiny() -> ml_collections.ConfigDict:
  """A 2-layer Llama-shaped model for tests and the CPU demo."""
  return _cd(family="llama", vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2,
             num_heads=4, num_kv_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=10000.0,
             max_position_embeddings=2048, bos_token_id=1, eos_token_ids=(2,))


def tiny_mla() -> ml_collections.ConfigDict:
  """A 2-layer Youtu-shaped (MLA) model for tests."""
  return _cd(family="youtu", vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2,
             num_heads=4, num_kv_heads=4, head_dim=8, q_lora_rank=32, kv_lora_rank=16,
             qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, rope_interleave=True,
             tie_embeddings=True, rope_theta=1.6e6, max_position_embeddings=2048, bos_token_id=1,
             eos_token_ids=(2,))


def smollm2_135m() -> ml_collections.ConfigDict:
  return _cd(family="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
             num_heads=9, num_kv_heads=3, head_dim=64, rms_norm_eps=1e-5, rope_theta=100000.0,
             tie_embeddings=True, max_position_embeddings=8192, bos_token_id=1, eos_token_ids=(2,))


def youtu_llm_2b() -> ml_collections.ConfigDict:
  return _cd(family="youtu", vocab_size=128256, hidden_size=2048, intermediate_size=6144, num_layers=32,
             num_heads=16, num_kv_heads=16, head_dim=64, q_lora_rank=1536, kv_lora_rank=512,
             qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, rope_interleave=True,
             rope_theta=1.6e6, rms_norm_eps=1e-6, tie_embeddings=True, max_position_embeddings=131072,
             bos_token_id=128000, eos_token_ids=(128001,))


def qwen2_5_1_5b() -> ml_collections.ConfigDict:
  return _cd(family="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_layers=28,
             num_heads=12, num_kv_heads=2, head_dim=128, attention_bias=True, rope_theta=1e6,
             rms_norm_eps=1e-6, tie_embeddings=True, max_position_embeddings=32768,
             bos_token_id=151643, eos_token_ids=(151645, 151643))


def qwen2_5_7b() -> ml_collections.ConfigDict:
  return _cd(family="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28,
             num_heads=28, num_kv_heads=4, head_dim=128, attention_bias=True, rope_theta=1e6,
             rms_norm_eps=1e-6, tie_embeddings=False, max_position_embeddings=32768,
             bos_token_id=151643, eos_token_ids=(151645, 151643))


def llama3_2_3b() -> ml_collections.ConfigDict:
  return _cd(family="llama", vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_layers=28,
             num_heads=24, num_kv_heads=8, head_dim=128, rope_theta=500000.0, rms_norm_eps=1e-5,
             rope_llama3_scaling=(32.0, 1.0, 4.0, 8192), tie_embeddings=True,
             max_position_embeddings=131072, bos_token_id=128000, eos_token_ids=(128001, 128008, 128009))


PRESETS: dict[str, Callable[[], ml_collections.ConfigDict]] = {
    "tiny": tiny,
    "tiny_mla": tiny_mla,
    "smollm2_135m": smollm2_135m,
    "youtu_llm_2b": youtu_llm_2b,
    "qwen2_5_1_5b": qwen2_5_1_5b,
    "qwen2_5_7b": qwen2_5_7b,
    "llama3_2_3b": llama3_2_3b,
}


def get(name: str) -> ml_collections.ConfigDict:
  if name not in PRESETS:
    raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
  return PRESETS[name]()


def model_config(preset_or_dict, **overrides) -> ModelConfig:
  d = get(preset_or_dict) if isinstance(preset_or_dict, str) else preset_or_dict
  d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
  d.update(overrides)
  return ModelConfig.from_dict(d)
