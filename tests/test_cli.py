"""The command line: --help explains, convert round-trips, generate answers with the real model."""
import json
import os

import jax
import numpy as np
import pytest

from foresight_jax import cli
from foresight_jax.models import params as params_lib, presets, transformer
from foresight_jax.models.checkpoint import load_pretrained, save_pretrained

MODEL_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "model.py")


@pytest.mark.parametrize("command", [[], ["convert"], ["generate"], ["info"], ["demo"]])
def test_help_explains(command, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(command + ["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  assert "usage: foresight-jax" in out and len(out.splitlines()) > 5


def test_convert_round_trips_an_hf_checkpoint(tmp_path, capsys):
  cfg = presets.model_config("tiny_mla")
  p = params_lib.init_params(cfg, jax.random.key(0))
  save_pretrained(cfg, p, tmp_path / "src")
  assert cli.main(["convert", str(tmp_path / "src"), str(tmp_path / "dst"), "--no-tokenizer"]) == 0
  report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert report["family"] == "youtu"
  cfg2, p2 = load_pretrained(tmp_path / "dst")
  tok = np.arange(10, dtype=np.int32)[None]
  np.testing.assert_allclose(transformer.logits(cfg2, p2, tok), transformer.logits(cfg, p, tok), atol=1e-6)


def test_info_reports_youtu_size(capsys):
  assert cli.main(["info", "--preset", "youtu_llm_2b"]) == 0
  info = json.loads(capsys.readouterr().out)
  assert info["params"] == 1_961_560_064


def test_generate_with_smollm2_answers_paris(capsys):
  assert cli.main(["generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "16"]) == 0
  out = capsys.readouterr().out
  # the whole greedy answer, through our chat template (the GGUF's own), sampler and EOS stop
  assert out.startswith("### What is the capital of France?\nThe capital of France is Paris.\n[stop: "), out


def test_info_from_config_file_with_overrides(capsys):
  assert cli.main(["info", "--config", MODEL_CONFIG + ":smollm2_135m", "--set", "model.num_layers=15"]) == 0
  info = json.loads(capsys.readouterr().out)
  full = presets.model_config("smollm2_135m")
  from foresight_jax.models import config as config_lib
  per_layer = (config_lib.param_count(full, include_embeddings=False) - full.hidden_size) // full.num_layers
  assert info["params"] == config_lib.param_count(full) - 15 * per_layer


@pytest.mark.parametrize("override,error", [("model.n_layers=3", KeyError), ("model.num_layers=abc", TypeError),
                                            ("nokey", ValueError)])
def test_config_override_errors_name_the_key(override, error):
  from foresight_jax import configs
  with pytest.raises(error, match=override.split("=")[0].split(".")[-1]):
    configs.load(MODEL_CONFIG + ":tiny", [override])
