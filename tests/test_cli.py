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


@pytest.fixture
def tiny_model_dir(tmp_path):
  """A random tiny model saved with a sentencepiece tokenizer of its own."""
  from foresight_jax.tokenizer import train_sentencepiece
  texts = [f"question {i}: what is {i} plus {i + 1}? the answer is {2 * i + 1}." for i in range(200)]
  tok = train_sentencepiece(texts, model_prefix=None, vocab_size=320)
  cfg = presets.model_config("tiny", vocab_size=512)
  save_pretrained(cfg, params_lib.init_params(cfg, jax.random.key(1)), tmp_path / "m")
  tok.save(str(tmp_path / "m"))
  return str(tmp_path / "m"), tok


def test_convert_writes_the_tokenizer_and_the_dtype(tiny_model_dir, tmp_path, capsys):
  src, tok = tiny_model_dir
  assert cli.main(["convert", src, str(tmp_path / "out"), "--dtype", "bfloat16"]) == 0
  from foresight_jax.tokenizer import Tokenizer
  again = Tokenizer.load(str(tmp_path / "out"))
  assert again.encode("what is 3 plus 4?") == tok.encode("what is 3 plus 4?")
  with open(tmp_path / "out" / "model.safetensors", "rb") as f:  # the stored dtype, from the file's header
    header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
  assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16"}


def test_generate_passes_every_option_to_the_sampler(tiny_model_dir, capsys, monkeypatch):
  import types

  from foresight_jax import sampling
  path, tok = tiny_model_dir
  seen = {}

  def fake_generate(cfg, params, tok_, prompts, **kw):
    seen.update(cfg=cfg, prompts=prompts, **kw)
    return types.SimpleNamespace(texts=[" 7"], stop_reasons=["stop"], token_ids=[[5, 6]])

  monkeypatch.setattr(sampling, "generate", fake_generate)
  assert cli.main(["generate", "--model", path, "--prompt", "what is 3 plus 4?", "--system", "answer briefly",
                   "--stop", "</answer>", "--compute-dtype", "bfloat16", "--max-new-tokens", "7", "--temperature",
                   "0.5", "--top-p", "0.9", "--top-k", "5", "--seed", "3", "--mesh", "data=-1"]) == 0
  prompt = tok.decode(seen["prompts"][0])
  assert "answer briefly" in prompt and "what is 3 plus 4?" in prompt
  assert seen["cfg"].compute_dtype == "bfloat16" and seen["stop"] == ["</answer>"]
  assert (seen["max_new_tokens"], seen["temperature"], seen["top_p"], seen["top_k"], seen["key"]) == (7, 0.5, 0.9, 5, 3)
  assert capsys.readouterr().out == "### what is 3 plus 4?\n7\n[stop: stop]\n\n"
  with pytest.raises(SystemExit, match="--mesh: unknown axis 'rows'"):
    cli.main(["generate", "--model", path, "--prompt", "x", "--mesh", "rows=2"])


def test_info_counts_and_flops_at_the_given_length(capsys):
  from foresight_jax.models import config as config_lib
  assert cli.main(["info", "--preset", "tiny", "--seq", "128"]) == 0
  info = json.loads(capsys.readouterr().out)
  cfg = presets.model_config("tiny")
  assert info["params_without_embeddings"] == config_lib.param_count(cfg, include_embeddings=False) < info["params"]
  assert info["train_flops_per_token"] == config_lib.train_flops_per_token(cfg, 128) and info["seq"] == 128


def test_demo_flags_reach_the_run(tmp_path, monkeypatch):
  from foresight_jax import demo
  seen = []
  monkeypatch.setattr(demo, "run", lambda out, size, **kw: seen.append((out, size, kw)))
  assert cli.main(["demo", "--out", str(tmp_path), "--size", "smollm2_135m", "--skip-smollm2", "--no-rl"]) == 0
  assert cli.main(["demo", "--out", str(tmp_path)]) == 0
  assert seen == [(str(tmp_path), "smollm2_135m", {"smollm2": False, "rl": False}),
                  (str(tmp_path), "cpu", {"smollm2": True, "rl": True})]


def test_config_files_sizes_and_override_messages(tmp_path):
  from foresight_jax import configs
  assert configs.load(MODEL_CONFIG + ":smollm2_135m").preset == "smollm2_135m"  # the size after ':' is used
  with pytest.raises(FileNotFoundError, match="config file .*nope.py' does not exist"):
    configs.load(str(tmp_path / "nope.py"))
  (tmp_path / "empty.py").write_text("X = 1\n")
  with pytest.raises(ValueError, match="defines no get_config"):
    configs.load(str(tmp_path / "empty.py"))
  with pytest.raises(KeyError, match="config has no key 'modl'"):
    configs.load(MODEL_CONFIG + ":tiny", ["modl.num_layers=3"])
  with pytest.raises(TypeError, match="override 'model.num_layers=abc'"):
    configs.load(MODEL_CONFIG + ":tiny", ["model.num_layers=abc"])
