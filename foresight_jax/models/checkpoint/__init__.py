"""Checkpoint import/export: HF safetensors dirs (llama, qwen2, qwen3, youtu) and GGUF files.

    cfg, params = load_pretrained("path/to/hf_dir", mesh=mesh)          # or a .gguf file
    save_pretrained(cfg, params, "out_dir")  # transformers.AutoModelForCausalLM loads out_dir

Loading validates every tensor name and shape from the file headers before allocating anything,
then streams each tensor straight onto its device shards; bad input raises `CheckpointError`.
"""
from __future__ import annotations

import os

from foresight_jax.models.checkpoint.hf import (hf_config_to_model_config, load_hf, model_config_to_hf_config,
                                                save_pretrained)
from foresight_jax.models.checkpoint.layout import CheckpointError

__all__ = ["load_pretrained", "save_pretrained", "CheckpointError", "hf_config_to_model_config",
           "model_config_to_hf_config"]


def load_pretrained(path, dtype=None, mesh=None, compute_dtype=None):
  """(ModelConfig, params) from an HF checkpoint dir or a `.gguf` file.

  dtype: param dtype (default float32; e.g. "bfloat16"). compute_dtype: defaults to dtype.
  mesh: a `sharding.make_mesh` mesh; params land sharded per the logical-axis rules. Without
  one they go to the first device.
  """
  path = os.fspath(path)
  if os.path.isfile(path) and path.endswith(".gguf"):
    from foresight_jax.models.checkpoint.gguf_io import load_gguf
    return load_gguf(path, dtype=dtype, mesh=mesh, compute_dtype=compute_dtype)
  if os.path.isfile(path) and path.endswith(".safetensors"):
    path = os.path.dirname(path) or "."
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: not a checkpoint directory or .gguf file")
  return load_hf(path, dtype=dtype, mesh=mesh, compute_dtype=compute_dtype)
