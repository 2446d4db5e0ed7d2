"""Decoder-only transformer families (Llama, Qwen2/2.5, Qwen3, Youtu MLA) as pure functions."""
from foresight_jax.models.config import ModelConfig, param_count, train_flops_per_token
from foresight_jax.models.params import abstract_params, init_params, param_shardings, param_specs
from foresight_jax.models.presets import get as get_preset, model_config
from foresight_jax.models.transformer import forward, hidden_states, init_cache, lm_head, logits
