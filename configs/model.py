"""Model + mesh configuration (ml-collections), e.g. `foresight-jax info --config configs/model.py:youtu_llm_2b`.

Override any field from the command line: `--set model.num_layers=4 --set mesh.tensor=2`.
"""
import ml_collections

from foresight_jax.models import presets


def get_config(preset: str = "tiny") -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict()
  cfg.preset = preset
  cfg.model = presets.get(preset)
  # (data, fsdp, tensor) sizes; -1 takes the devices left over
  cfg.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  return cfg
