"""Bad checkpoints raise one CheckpointError naming the file and tensor, before any param exists."""
import json
import os
import shutil

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from foresight_jax.models import init_params, presets
from foresight_jax.models.checkpoint import CheckpointError, load_pretrained, save_pretrained

gguf = pytest.importorskip("gguf")
from test_checkpoint_gguf import hf_tensors, tiny_cfg, write_gguf  # noqa: E402


def _no_alloc(*a, **k):
  raise AssertionError("params were allocated before the checkpoint was validated")


def expect_error(monkeypatch, path, *fragments):
  """load_pretrained(path) raises CheckpointError mentioning every fragment, allocating nothing."""
  with monkeypatch.context() as m:
    m.setattr(jax, "make_array_from_callback", _no_alloc)
    with pytest.raises(CheckpointError) as e:
      load_pretrained(path)
  msg = str(e.value)
  for f in fragments:
    assert str(f) in msg, f"{f!r} not in {msg!r}"
  return msg


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
  cfg = presets.model_config("tiny")
  d = tmp_path_factory.mktemp("good")
  save_pretrained(cfg, init_params(cfg, jax.random.PRNGKey(0)), str(d))
  return d


@pytest.fixture
def ckpt(good_dir, tmp_path):
  d = tmp_path / "ckpt"
  shutil.copytree(good_dir, d)
  return d


def _edit_tensors(d, fn):
  f = str(d / "model.safetensors")
  t = load_file(f)
  fn(t)
  save_file(t, f, metadata={"format": "pt"})
  return f


def _edit_config(d, **kw):
  c = json.loads((d / "config.json").read_text())
  c.update(kw)
  (d / "config.json").write_text(json.dumps(c))


def test_good_checkpoint_loads(ckpt):
  cfg, params = load_pretrained(ckpt)
  assert cfg.family == "llama" and params["embed"].shape == (cfg.vocab_size, cfg.hidden_size)


# ------------------------------------------------------------------------------------- safetensors
def test_missing_tensor(monkeypatch, ckpt):
  f = _edit_tensors(ckpt, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
  expect_error(monkeypatch, ckpt, "missing tensor", "model.layers.1.mlp.up_proj.weight", f)


def test_missing_lm_head_when_untied(monkeypatch, ckpt):
  _edit_tensors(ckpt, lambda t: t.pop("lm_head.weight"))
  expect_error(monkeypatch, ckpt, "missing tensor", "lm_head.weight")


def test_unexpected_tensor(monkeypatch, ckpt):
  f = _edit_tensors(ckpt, lambda t: t.update({"model.layers.0.self_attn.rogue.weight": np.zeros(3, np.float32)}))
  expect_error(monkeypatch, ckpt, "unexpected tensor", "model.layers.0.self_attn.rogue.weight", f)


def test_misshaped_tensor(monkeypatch, ckpt):
  f = _edit_tensors(ckpt, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": np.zeros((16, 64), np.float32)}))
  expect_error(monkeypatch, ckpt, "model.layers.0.self_attn.k_proj.weight", "(16, 64)", "(32, 64)", f)


def test_config_disagrees_with_tensors(monkeypatch, ckpt):
  _edit_config(ckpt, intermediate_size=96)
  expect_error(monkeypatch, ckpt, "model.layers.0.mlp.gate_proj.weight", "(128, 64)", "expected (96, 64)")


def test_unsupported_dtype(monkeypatch, ckpt):
  _edit_tensors(ckpt, lambda t: t.update({"model.norm.weight": np.ones(64, np.int32)}))
  expect_error(monkeypatch, ckpt, "model.norm.weight", "I32")


@pytest.mark.parametrize("model_type,arch", [("gpt2", ["GPT2LMHeadModel"]), ("mistral", None)])
def test_unknown_architecture(monkeypatch, ckpt, model_type, arch):
  _edit_config(ckpt, model_type=model_type, architectures=arch)
  expect_error(monkeypatch, ckpt, "config.json", "unknown architecture", model_type)


def test_unsupported_rope_and_features(monkeypatch, ckpt):
  _edit_config(ckpt, rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0})
  expect_error(monkeypatch, ckpt, "config.json", "yarn")
  _edit_config(ckpt, rope_parameters={"rope_type": "default", "rope_theta": 1e4}, attention_bias=True)
  expect_error(monkeypatch, ckpt, "config.json", "attention_bias")


def test_missing_and_corrupt_config(monkeypatch, ckpt):
  (ckpt / "config.json").write_text("{not json")
  expect_error(monkeypatch, ckpt, "config.json", "unreadable")
  os.remove(ckpt / "config.json")
  expect_error(monkeypatch, ckpt, "config.json", "not found")


def test_truncated_safetensors(monkeypatch, ckpt):
  f = ckpt / "model.safetensors"
  size = f.stat().st_size
  with open(f, "r+b") as fh:
    fh.truncate(size * 2 // 3)
  expect_error(monkeypatch, ckpt, "truncated", str(f), "tensor")
  with open(f, "r+b") as fh:
    fh.truncate(5)
  expect_error(monkeypatch, ckpt, "truncated", str(f))


def test_corrupt_safetensors_header(monkeypatch, ckpt):
  f = ckpt / "model.safetensors"
  with open(f, "r+b") as fh:
    fh.seek(8)
    fh.write(b"\x00garbage")
  expect_error(monkeypatch, ckpt, "corrupt", str(f))
  with open(f, "r+b") as fh:
    fh.seek(0)
    fh.write((1 << 40).to_bytes(8, "little"))
  expect_error(monkeypatch, ckpt, "corrupt", str(f))


def test_no_weights_file(monkeypatch, ckpt, tmp_path):
  os.remove(ckpt / "model.safetensors")
  expect_error(monkeypatch, ckpt, "no model.safetensors", str(ckpt))
  expect_error(monkeypatch, tmp_path / "nowhere", "nowhere")


def _shard(ckpt):
  """Split the single file into two shards plus an index."""
  t = load_file(str(ckpt / "model.safetensors"))
  os.remove(ckpt / "model.safetensors")
  names = sorted(t)
  halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
            "model-00002-of-00002.safetensors": names[len(names) // 2:]}
  weight_map = {}
  for fn, ns in halves.items():
    save_file({n: t[n] for n in ns}, str(ckpt / fn), metadata={"format": "pt"})
    weight_map.update({n: fn for n in ns})
  (ckpt / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
  return weight_map


def test_sharded_index_errors(monkeypatch, ckpt):
  wm = _shard(ckpt)
  load_pretrained(ckpt)  # the split itself is fine
  name = next(iter(wm))
  idx = json.loads((ckpt / "model.safetensors.index.json").read_text())
  idx["weight_map"][name] = "model-00002-of-00002.safetensors" if wm[name].startswith("model-00001") else \
      "model-00001-of-00002.safetensors"
  (ckpt / "model.safetensors.index.json").write_text(json.dumps(idx))
  expect_error(monkeypatch, ckpt, "index.json", name, "not stored there")
  os.remove(ckpt / "model-00002-of-00002.safetensors")
  expect_error(monkeypatch, ckpt, "model-00002-of-00002.safetensors", "missing")
  (ckpt / "model.safetensors.index.json").write_text("[]")
  expect_error(monkeypatch, ckpt, "index.json", "corrupt")


# -------------------------------------------------------------------------------------------- gguf
@pytest.fixture(scope="module")
def gguf_parts():
  cfg = tiny_cfg("llama")
  return cfg, hf_tensors(cfg)


def test_gguf_unsupported_architecture(monkeypatch, tmp_path, gguf_parts):
  p = write_gguf(tmp_path / "m.gguf", *gguf_parts, arch="gpt2")
  expect_error(monkeypatch, p, p, "unsupported GGUF architecture", "gpt2")


def test_gguf_unsupported_tensor_type(monkeypatch, tmp_path, gguf_parts):
  cfg, t = gguf_parts
  p = write_gguf(tmp_path / "m.gguf", cfg, t, drop=("blk.0.attn_v.weight",),
                 extra={"blk.0.attn_v.weight": np.zeros((32, 64), np.int8)})
  expect_error(monkeypatch, p, p, "blk.0.attn_v.weight", "unsupported GGUF type I8")


def test_gguf_missing_extra_misshaped(monkeypatch, tmp_path, gguf_parts):
  cfg, t = gguf_parts
  p = write_gguf(tmp_path / "a.gguf", cfg, t, drop=("blk.1.ffn_up.weight",))
  expect_error(monkeypatch, p, p, "missing tensor", "blk.1.ffn_up.weight")
  p = write_gguf(tmp_path / "b.gguf", cfg, t, extra={"blk.0.rogue.weight": np.zeros(4, np.float32)})
  expect_error(monkeypatch, p, p, "unexpected tensor", "blk.0.rogue.weight")
  p = write_gguf(tmp_path / "c.gguf", cfg, t, drop=("output_norm.weight",),
                 extra={"output_norm.weight": np.ones(65, np.float32)})
  expect_error(monkeypatch, p, p, "output_norm.weight", "(65,)")


def test_gguf_unsupported_rope_scaling(monkeypatch, tmp_path, gguf_parts):
  p = write_gguf(tmp_path / "m.gguf", *gguf_parts, rope_scaling=True)
  expect_error(monkeypatch, p, p, "rope scaling")


@pytest.mark.parametrize("frac", [0.9, 0.3, 0.001])
def test_gguf_truncated(monkeypatch, tmp_path, gguf_parts, frac):
  p = write_gguf(tmp_path / "m.gguf", *gguf_parts, qtype=gguf.GGMLQuantizationType.Q8_0)
  with open(p, "r+b") as fh:
    fh.truncate(int(os.path.getsize(p) * frac))
  msg = expect_error(monkeypatch, p, p)
  if frac > 0.1:  # the header survives: the message names the first tensor cut off
    assert "truncated" in msg and "tensor 'blk." in msg, msg


def test_gguf_garbage(monkeypatch, tmp_path):
  p = tmp_path / "bad.gguf"
  p.write_bytes(b"GGUF" + os.urandom(300))
  expect_error(monkeypatch, p, str(p), "GGUF")
