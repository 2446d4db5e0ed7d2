"""foresight_jax: train LLM agents to forecast before they act, on JAX/Flax.

Public API (kept stable):
    load_pretrained(path, dtype=...) -> (config, params)   HF checkpoint dir or .gguf file
    save_pretrained(config, params, out_dir)                safetensors + config.json
    logits(config, params, tokens) -> [batch, seq, vocab]   fp32, for int32 tokens [batch, seq]
    Tokenizer.load(path)                                    .model / tokenizer.json / dir / .gguf
"""
from foresight_jax.models import ModelConfig, init_params, logits, model_config
from foresight_jax.models.checkpoint import CheckpointError, load_pretrained, save_pretrained
from foresight_jax.tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ModelConfig", "Tokenizer", "init_params", "load_pretrained", "logits",
           "model_config", "save_pretrained"]
