"""foresight_jax: train LLM agents to forecast before they act, on JAX/Flax.

Public API (kept stable):
    load_pretrained(path, dtype=...) -> (config, params)   HF checkpoint dir or .gguf file
    save_pretrained(config, params, out_dir)                safetensors + config.json
    logits(config, params, tokens) -> [batch, seq, vocab]   fp32, for int32 tokens [batch, seq]
    Tokenizer.load(path)                                    .model / tokenizer.json / dir / .gguf

The names are imported on first use (PEP 562), so `foresight_jax.hostenv` can decide to re-execute
the process before jax is imported.
"""
import importlib

__version__ = "0.1.0"

_HOME = {"ModelConfig": "foresight_jax.models", "init_params": "foresight_jax.models",
         "logits": "foresight_jax.models", "model_config": "foresight_jax.models",
         "CheckpointError": "foresight_jax.models.checkpoint", "load_pretrained": "foresight_jax.models.checkpoint",
         "save_pretrained": "foresight_jax.models.checkpoint", "Tokenizer": "foresight_jax.tokenizer"}

__all__ = sorted(_HOME)


def __getattr__(name):
  if name in _HOME:
    return getattr(importlib.import_module(_HOME[name]), name)
  raise AttributeError(f"module 'foresight_jax' has no attribute {name!r}")
