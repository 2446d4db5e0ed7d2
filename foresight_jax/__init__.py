"""foresight_jax: train LLM agents to forecast before they act, on JAX/Flax."""
from foresight_jax.models import ModelConfig, init_params, logits, model_config

__version__ = "0.1.0"
