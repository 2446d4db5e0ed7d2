"""Stage configs and their validation: everything here fails (or plans) before any compute.

In-process, on the suite's 8 forced CPU devices. `_no_compute` replaces the data builder and the
trainer with functions that fail the test, so an error raised with it in place was raised
before any data generation, tokenizer training, weight loading or step.
"""
from __future__ import annotations

import json
import os
import types

import jax
import numpy as np
import pytest

from foresight_jax import cli, configs
from foresight_jax.models.config import param_count
from foresight_jax.train import cli_train, loop, losses, stages, stages_config, stages_data
from foresight_jax.train.stages_config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WM = os.path.join(ROOT, "configs", "wm_amt.py")
SFT = os.path.join(ROOT, "configs", "fe_sft.py")


@pytest.fixture
def no_compute(monkeypatch):
  def boom(*a, **k):
    raise AssertionError("reached compute")
  monkeypatch.setattr(stages_data, "load_trajectories", boom)
  monkeypatch.setattr(loop, "train", boom)


def _cfg(spec=WM + ":tiny", *overrides, workdir=None):
  cfg = configs.load(spec, overrides)
  cfg.workdir = str(workdir or "/nonexistent/never-written")
  return cfg


def _main(capsys, *argv) -> tuple[int, str, str]:
  rc = cli_train.main(list(argv))
  out, err = capsys.readouterr()
  return rc, out, err


@pytest.mark.parametrize("spec", ["wm_amt", "fe_sft"])
@pytest.mark.parametrize("size", ["tiny", "smollm2_135m", "youtu_llm_2b"])
def test_configs_load(spec, size):
  cfg = configs.load(os.path.join(ROOT, "configs", f"{spec}.py:{size}"))
  stages_config.check_keys(cfg)
  assert cfg.stage == spec and cfg.model.preset == size
  assert cfg.data.mode == ("mid_training" if spec == "wm_amt" else "sft")
  assert cfg.data.chat_format == (spec == "fe_sft")
  if spec == "fe_sft":
    assert cfg.model.init_from == f"runs/wm_amt_{size}/hf"  # starts from the WM-AMT export
  elif size == "tiny":
    assert cfg.model.init_from == "" and cfg.data.tokenizer == "train_sentencepiece"
  elif size == "smollm2_135m":
    assert cfg.model.init_from == "@smollm2_135m_gguf"
  with pytest.raises(ValueError, match="unknown size"):
    configs.load(os.path.join(ROOT, "configs", f"{spec}.py:huge"))


def test_cli_overrides():
  cfg, dry, _ = cli_train.parse(["--config", WM + ":tiny", "--config.data.variant=state",
                                 "--config.optim.learning_rate=1e-4", "--config.mesh.fsdp=2",
                                 "--config.model.config.num_layers=3", "--dry_run"])
  assert (cfg.data.variant, cfg.optim.learning_rate, cfg.mesh.fsdp, cfg.model.config.num_layers) == \
      ("state", 1e-4, 2, 3)
  assert dry
  tcfg = stages.train_config(cfg)
  assert tcfg.mesh == (-1, 2, 1) and tcfg.optim.learning_rate == 1e-4 and tcfg.optim.total_steps == cfg.train.steps


def test_help(capsys):
  rc, out, _ = _main(capsys, "--help")
  assert rc == 0 and "--config configs/wm_amt.py" in out and "--config.KEY" in out and "--dry_run" in out
  assert cli.main(["train", "--help"]) == 0
  assert "FE-SFT" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    cli.main(["--help"])
  assert "train" in capsys.readouterr().out


@pytest.mark.parametrize("flag,key", [("--config.data.foo=1", "data.foo"), ("--config.bogus.x=1", "bogus.x"),
                                      ("--config.train.stepz=3", "train.stepz")])
def test_unknown_override_names_key(capsys, no_compute, flag, key):
  rc, _, err = _main(capsys, "--config", WM + ":tiny", flag)
  assert rc == 2 and f"'{key}' does not exist" in err


def test_cli_errors_and_exit_codes(capsys, no_compute, monkeypatch):
  rc, _, err = _main(capsys, "--config.train.steps=3")  # overrides without a file
  assert rc == 2 and "--config is required" in err
  rc, _, err = _main(capsys, "--config", WM + ":tiny", "--noconfig.train.progresz")  # a boolean's --no form
  assert rc == 2 and "'train.progresz' does not exist" in err
  # a run that stops on non-finite steps exits 3 (bad input and config errors exit 2)
  def stops(cfg, dry_run):
    raise loop.NonFiniteError("5 in a row")
  monkeypatch.setattr(stages, "run", stops)
  rc, _, err = _main(capsys, "--config", WM + ":tiny")
  assert rc == 3 and "error: 5 in a row" in err


def test_log_level_reaches_python_logging(capsys, monkeypatch):
  import logging
  # pytest's log capture has configured the root logger already, which basicConfig would leave alone
  monkeypatch.setattr(logging.root, "handlers", [])
  monkeypatch.setattr(logging.root, "level", logging.WARNING)
  monkeypatch.setattr(stages, "run", lambda cfg, dry_run: {})
  rc, _, err = _main(capsys, "--config", WM + ":tiny", "--log_level=DEBUG")
  assert rc == 0 and logging.root.level == logging.DEBUG, err


def test_bad_override_value_and_missing_file(capsys, no_compute):
  rc, _, err = _main(capsys, "--config", WM + ":tiny", "--config.data.seq_len=long")
  assert rc == 2 and "config.data.seq_len" in err
  rc, _, err = _main(capsys, "--config", "configs/nope.py:tiny")
  assert rc == 2 and "configs/nope.py" in err
  rc, _, err = _main(capsys, "--config", WM + ":huge")
  assert rc == 2 and "unknown size 'huge'" in err


def test_unknown_key_in_config_file(tmp_path, no_compute):
  f = tmp_path / "custom.py"
  f.write_text(f"import importlib.util\nspec = importlib.util.spec_from_file_location('w', {WM!r})\n"
               "w = importlib.util.module_from_spec(spec); spec.loader.exec_module(w)\n"
               "def get_config(arg='tiny'):\n  c = w.get_config(arg)\n  c.data.sequence_len = 64\n  return c\n")
  with pytest.raises(ConfigError, match=r"'data\.sequence_len' does not exist.*seq_len"):
    stages.run(_cfg(str(f)))


@pytest.mark.parametrize("override,match", [
    ("data.variant='partial'", r"data\.variant: 'partial'"),
    ("data.mode='pretrain'", r"data\.mode"),
    ("train.remat='some'", r"train\.remat"),
    ("train.eval_every=5", r"train\.eval_every: needs held-out data"),
    ("data.synthetic=0", r"data\.paths: is empty and data\.synthetic is 0"),
    ("data.tokenizer=''", r"model\.init_from: is empty"),
])
def test_bad_values_name_key(no_compute, override, match):
  with pytest.raises(ConfigError, match=match):
    stages.run(_cfg(WM + ":tiny", override))


@pytest.mark.parametrize("stage,override,match", [
    ("wm_amt", "data.forecast_noise=-0.1", r"data\.forecast_noise: must be in \[0, 1\]"),
    ("wm_amt", "data.slip_rate=1.5", r"data\.slip_rate: must be in \[0, 1\]"),
    ("wm_amt", "data.eval_fraction=1.0", r"data\.eval_fraction: must be in \[0, 1\)"),
    ("wm_amt", "data.seq_len=1", r"data\.seq_len: must be >= 2"),
    ("wm_amt", "data.vocab_size=299", r"data\.vocab_size: 299 is too small"),
    ("wm_amt", "data.tokenizer='/nonexistent/tok.model'", r"data\.tokenizer: '/nonexistent/tok\.model' does not exist"),
    ("wm_amt", "model.init_from='configs/wm_amt.py'", r"model\.init_from: .* neither an HF checkpoint directory"),
    ("fc_rl", "rl.group_size=1", r"rl\.group_size: must be >= 2"),
    ("fc_rl", "rl.tasks=3", r"rl\.tasks: 3 tasks cannot fill rl\.prompts_per_step=4"),
    ("fc_rl", "rl.hops=(1, 7)", r"rl\.hops: must be hop counts in 1\.\.6"),
    ("fc_rl", "rl.temperature=0.0", r"rl\.temperature: must be > 0"),
    ("fc_rl", "rl.search_url='http://127.0.0.1:8000/retrieve'", r"rl\.search_url: is only used with rl\.tool='host'"),
    ("fc_rl", "rl.aggregation='token_sum'", r"rl\.aggregation: 'token_sum' not in"),
])
def test_each_bad_value_is_refused_naming_its_key(stage, override, match, monkeypatch):
  """The config checks one value at a time, at its edge: the stage's own config passes, the same
  config with one value just outside its range fails, naming that key."""
  monkeypatch.chdir(ROOT)  # relative paths (the init_from case) are read from the repository root
  spec = os.path.join(ROOT, "configs", f"{stage}.py:tiny")
  stages_config.check(_cfg(spec))
  with pytest.raises(ConfigError, match=match):
    stages_config.check(_cfg(spec, override))


def test_data_paths_errors_name_path(tmp_path, no_compute):
  missing = tmp_path / "missing.jsonl"
  with pytest.raises(ConfigError, match=rf"data\.paths: '{missing}' does not exist"):
    stages.run(_cfg(WM + ":tiny", f"data.paths='{missing}'"))
  empty = tmp_path / "empty.jsonl"
  empty.write_text("")
  with pytest.raises(ConfigError, match=rf"data\.paths: '{empty}' is empty"):
    stages.run(_cfg(WM + ":tiny", f"data.paths='{empty}'"))
  with pytest.raises(ConfigError, match=r"data\.paths: pattern .*nothing-\*\.jsonl' matches no file"):
    stages.run(_cfg(WM + ":tiny", f"data.paths='{tmp_path}/nothing-*.jsonl'"))


def test_data_file_without_valid_records(tmp_path, monkeypatch):
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"task": 1}\nnot json\n')
  monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("reached the trainer"))
  with pytest.raises(ConfigError, match=rf"data\.paths: '{bad}' holds no valid trajectory \(2 lines read"):
    stages.run(_cfg(WM + ":tiny", f"data.paths='{bad}'", "data.synthetic=0", workdir=tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_init_from_missing_names_key(tmp_path, no_compute, monkeypatch):
  monkeypatch.chdir(tmp_path)  # fe_sft's default init_from is relative: runs/wm_amt_tiny/hf
  with pytest.raises(ConfigError, match=r"model\.init_from: 'runs/wm_amt_tiny/hf' does not exist \(run the WM-AMT"):
    stages.run(_cfg(SFT + ":tiny"))
  (tmp_path / "d").mkdir()
  with pytest.raises(ConfigError, match=r"model\.init_from: .*without config\.json"):
    stages.run(_cfg(SFT + ":tiny", f"model.init_from='{tmp_path / 'd'}'"))


def test_mesh_and_batch_errors(no_compute):
  assert jax.device_count() == 8
  with pytest.raises(ConfigError, match=r"mesh\.data x mesh\.fsdp x mesh\.tensor = \[3, 1, 1\] does not divide the 8"):
    stages.run(_cfg(WM + ":tiny", "mesh.data=3"))
  with pytest.raises(ConfigError, match=r"sizes must be >= 1, at most one of them -1"):
    stages.run(_cfg(WM + ":tiny", "mesh.fsdp=-1"))
  with pytest.raises(ConfigError, match=r"train\.cast_params.*needs a lower-precision train\.compute_dtype"):
    stages.run(_cfg(WM + ":tiny", "train.cast_params=True"))
  with pytest.raises(ConfigError, match=r"data\.batch_size=12 is not divisible by .* = 2 x 4 x 1 = 8"):
    stages.run(_cfg(WM + ":tiny", "data.batch_size=12", "mesh.data=2", "mesh.fsdp=4"))
  with pytest.raises(ConfigError, match=r"data\.batch_size=8 is not divisible by .*train\.grad_accum = 8 x 1 x 2"):
    stages.run(_cfg(WM + ":tiny", "train.grad_accum=2"))


def test_memory_check_names_batch(no_compute):
  with pytest.raises(ConfigError, match=r"data\.batch_size=8 .* does not fit: estimated .* GiB per device "
                                        r"\(params .*\) exceeds 90% of .*train\.memory_limit_gb"):
    stages.run(_cfg(WM + ":tiny", "train.memory_limit_gb=0.001"))
  # a batch that cannot fit in this host's memory fails on the default limit (host RAM on CPU)
  with pytest.raises(ConfigError, match=r"host memory / 8 local devices in the mesh"):
    stages.run(_cfg(WM + ":tiny", "data.batch_size=4096", "data.seq_len=8192"))
  # forced CPU devices share the host's memory: a one-device mesh may use all of it
  with pytest.raises(ConfigError, match=r"host memory / 1 local devices in the mesh"):
    stages.run(_cfg(WM + ":tiny", "data.batch_size=4096", "data.seq_len=8192", "mesh.data=1"))
  cfg = _cfg(WM + ":tiny")
  mcfg = stages.model_config(cfg, "", None, 512)
  base = stages.estimate_memory(mcfg, cfg, (8, 1, 1))
  cfg.train.remat = "full"
  assert stages.estimate_memory(mcfg, cfg, (8, 1, 1))["activations"] < base["activations"]
  cfg.train.remat, cfg.data.batch_size = "", 16
  assert stages.estimate_memory(mcfg, cfg, (8, 1, 1))["activations"] == pytest.approx(2 * base["activations"])
  # a fused attention kernel keeps no [rows, heads, T, T] scores: only the XLA path's estimate
  # grows with T^2 (the T^2 term alone made a Youtu-2B seq-4096 batch that fits on an H200 "not fit")
  cfg.data.batch_size, cfg.data.seq_len = 8, 2048
  xla = stages.estimate_memory(mcfg, cfg, (8, 1, 1))["activations"]
  fused = stages.estimate_memory(mcfg.replace(attention_impl="splash"), cfg, (8, 1, 1))["activations"]
  h, layers_, tokens = mcfg.num_heads, mcfg.num_layers, 2048  # one row per device
  assert xla - fused == pytest.approx(tokens * layers_ * (8 * h * 2048 - 4 * h))
  # the loss holds at most one chunk of fp32 logits (and their gradient), not all of them
  cfg.data.seq_len, mcfg_big = 1 << 16, mcfg.replace(vocab_size=1 << 17)
  assert stages.estimate_memory(mcfg_big, cfg, (8, 1, 1))["logits"] == 3 * losses.LOGITS_CHUNK_BYTES


def test_memory_estimate_by_hand():
  """Each part of the estimate from its formula: params sharded over fsdp x tensor, two Adam moments,
  gradients (twice with an accumulation buffer), rows per device per micro-batch."""
  cfg = _cfg(WM + ":tiny", "data.batch_size=16", "train.grad_accum=2")
  mcfg = stages.model_config(cfg, "", None, 512)
  n = param_count(mcfg)
  est = stages.estimate_memory(mcfg, cfg, (2, 2, 2))
  assert est["params"] == n * 4 / (2 * 2) and est["optimizer"] == 2 * est["params"]
  assert est["gradients"] == 2 * est["params"]  # the accumulation buffer beside the gradients
  assert est["rows_per_device"] == 16 / (2 * 2) / 2
  parts = ("params", "optimizer", "gradients", "activations", "logits")
  assert est["total"] == pytest.approx(sum(est[k] for k in parts))
  cfg.train.grad_accum = 1
  one = stages.estimate_memory(mcfg, cfg, (2, 2, 2))
  assert one["gradients"] == one["params"] and one["rows_per_device"] == 4
  assert one["activations"] == pytest.approx(2 * est["activations"])


def test_memory_check_keeps_headroom_for_xla():
  cfg = _cfg(WM + ":tiny", "train.memory_limit_gb=1")
  est = {"total": 0.89 * 2**30, "rows_per_device": 1, **dict.fromkeys(("params", "optimizer", "gradients", "activations", "logits"), 0)}
  assert stages.check_memory(est, cfg) == (2**30, "train.memory_limit_gb")
  with pytest.raises(ConfigError, match=r"estimated 0\.95 GiB per device .* exceeds 90% of 1\.00 GiB"):
    stages.check_memory({**est, "total": 0.95 * 2**30}, cfg)  # under the limit, but not under 90% of it


def test_multi_process_mesh_and_batch_checks(monkeypatch):
  # what a 3-process run sees (this test runs one process, so jax.process_count is stood in for)
  monkeypatch.setattr(stages.jax, "process_count", lambda: 3)
  with pytest.raises(ConfigError, match=r"uses 4 of 8 devices; a multi-process mesh must use all of them"):
    stages.check_mesh(_cfg(WM + ":tiny", "mesh.data=4"))
  with pytest.raises(ConfigError, match=r"data\.batch_size=8 is not divisible by the 3 processes"):
    stages.check_batch(_cfg(WM + ":tiny"), (1, 1, 1))


def test_model_config_takes_the_tokenizer_vocabulary_and_specials():
  cfg = _cfg(WM + ":tiny")
  m = cfg.model.pad_vocab_multiple
  assert m > 1 and stages.model_config(cfg, "", None, 512).vocab_size == 512
  assert stages.model_config(cfg, "", None, 300).vocab_size == 512  # never shrinks
  assert stages.model_config(cfg, "", None, 513).vocab_size == -(-513 // m) * m  # grows, padded up
  tok = types.SimpleNamespace(bos_id=7, eos_ids=[3, 9])  # a from-scratch model speaks its tokenizer's specials
  mc = stages.model_config(cfg, "", tok, 512)
  assert (mc.bos_token_id, mc.eos_token_ids) == (7, (3, 9))


def test_train_and_optim_keys_reach_the_loop():
  cfg = _cfg(WM + ":tiny", "train.steps=7", "train.grad_accum=2", "train.seed=5", "train.checkpoint_every=3",
             "train.keep=2", "train.max_nonfinite_in_row=4", "train.peak_flops=2e12", "train.remat=full",
             "train.eval_every=6", "train.eval_batches=1", "optim.learning_rate=0.002", "optim.warmup_steps=2",
             "optim.clip_norm=0", "optim.weight_decay=0.05", "optim.end_lr_ratio=0.2", "optim.b2=0.9")
  t = stages.train_config(cfg)
  assert (t.steps, t.seed, t.checkpoint_every, t.max_to_keep, t.max_nonfinite_in_row) == (7, 5, 3, 2, 4)
  assert (t.peak_flops_per_device, t.remat_policy, t.eval_every, t.eval_batches) == (2e12, "full", 6, 1)
  o = t.optim
  assert (o.learning_rate, o.warmup_steps, o.total_steps, o.grad_accum_steps) == (0.002, 2, 7, 2)
  assert (o.clip_norm, o.weight_decay, o.end_lr_ratio, o.b2) == (None, 0.05, 0.2, 0.9)  # clip 0 = off


def test_dry_run_plan(capsys, tmp_path, no_compute):
  # the optional model fields (None = per backend) stay overridable from the command line
  rc, out, err = _main(capsys, "--config", WM + ":tiny", f"--config.workdir={tmp_path / 'w'}", "--dry_run",
                       "--config.mesh.data=2", "--config.mesh.fsdp=-1", "--config.model.config.scan_layers=false",
                       "--config.model.config.decode_fusion=true")
  assert rc == 0, err
  plan = json.loads(out.strip().splitlines()[-1])
  assert plan["dry_run"] and plan["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1} and plan["params"] > 0
  assert plan["vocab_size"] == 512 and plan["memory_gib_per_device"] > 0 and plan["resume_step"] is None
  assert not (tmp_path / "w").exists()


def _spans(tok, ids, mask) -> list[str]:
  """The decoded runs of consecutive tokens where `mask` is set, in order."""
  edges = np.flatnonzero(np.diff(np.r_[0, np.asarray(mask, int), 0]))
  return [tok.decode(ids[a:b]) for a, b in zip(edges[::2], edges[1::2])]


def test_chat_masks_train_assistant_turns_only():
  from foresight_jax.data.foresight import ForesightConfig, build_dataset
  from foresight_jax.data.generate import GenConfig, generate
  from foresight_jax.tokenizer import train_sentencepiece
  trajs = build_dataset(list(generate(GenConfig(seed=3), 6)), ForesightConfig(n_branches=2))
  cfg = _cfg(SFT + ":tiny")
  tok = train_sentencepiece(stages_data.rendered_texts(trajs, cfg), None, 512)
  for t in trajs:
    ex = stages_data.tokenize_chat(t, tok, "sft")
    ids, mask = ex["tokens"], ex["loss_mask"].astype(bool)
    assert tok.decode(ids[1:]) == tok.apply_chat_template(
        stages_data.chat_messages(t, tok.chat_template, None), add_generation_prompt=False)
    # trained spans, in order, are exactly the assistant messages, each closed by <|end|>
    spans = _spans(tok, ids, mask)
    want = [m["content"] + "<|end|>" for m in stages_data.chat_messages(t, "plain", None) if m["role"] == "assistant"]
    assert spans == want
    assert all("<foresight>" in s for s in spans)  # a block at every decision point
    mid = stages_data.tokenize_chat(t, tok, "mid_training")["loss_mask"].astype(bool)
    assert mid.sum() > mask.sum()  # mid-training also trains the prompt, never observations
    msgs = stages_data.chat_messages(t, "plain", None)
    assert msgs[0]["content"] in _spans(tok, ids, mid & ~mask)[0]  # the task prompt is trained
    trained = "".join(_spans(tok, ids, mid))
    obs = [m["content"] for m in msgs if m["role"] == "tool"]
    # observations are read the way the agent and the RL tool wrap them, and never trained
    assert obs == [f"<information>{s.observation}</information>" for s in t.steps if s.observation is not None]
    assert obs and not any(o in trained for o in obs)


def test_chat_tokens_hold_one_bos_with_a_bos_writing_template(tmp_path):
  """A Llama-3-style tokenizer adds BOS to every text and its template writes <|begin_of_text|>:
  the FE-SFT rows start with exactly one BOS, untrained."""
  from test_tokenizer import LLAMA3_JINJA, _write_hf_dir
  from foresight_jax.data.foresight import ForesightConfig, build_dataset
  from foresight_jax.data.generate import GenConfig, generate
  from foresight_jax.tokenizer import Tokenizer
  special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
  d = _write_hf_dir(str(tmp_path / "llama3"), special, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                                         "add_bos_token": True}, LLAMA3_JINJA)
  tok = stages_data.add_foresight_tokens(Tokenizer.load(d))
  assert tok.default_add_bos and tok.chat_template_writes_bos()
  t = build_dataset(list(generate(GenConfig(seed=3), 1)), ForesightConfig(n_branches=2))[0]
  ex = stages_data.tokenize_chat(t, tok, "sft")
  ids = ex["tokens"].tolist()
  assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1 and ex["loss_mask"][0] == 0


def test_chat_prompt_variant_and_observation_role():
  """The prompt's instructions follow the trajectory's blocks when no variant is given (none /
  state / full), and Youtu's template, which has no tool role, reads observations as user turns."""
  import dataclasses
  from foresight_jax.data.foresight import ForesightConfig, build_dataset
  from foresight_jax.data.generate import GenConfig, generate
  from foresight_jax.data.render import render_prompt
  from foresight_jax.tokenizer.chat import render_chat
  t = build_dataset(list(generate(GenConfig(seed=3), 1)), ForesightConfig(n_branches=2))[0]
  bare = dataclasses.replace(t, steps=[dataclasses.replace(s, foresight=None) for s in t.steps])
  state = dataclasses.replace(t, steps=[dataclasses.replace(s, foresight=dataclasses.replace(s.foresight, success=None))
                                        if s.foresight else s for s in t.steps])
  for traj, variant in ((t, "full"), (state, "state"), (bare, "none")):
    first = stages_data.chat_messages(traj, "plain", None)[0]["content"]
    assert first == render_prompt(traj.task, variant).rstrip("\n"), variant
  assert render_prompt(t.task, "none") != render_prompt(t.task, "full") != render_prompt(t.task, "state")
  youtu = stages_data.chat_messages(t, "youtu", None)
  assert {m["role"] for m in youtu} == {"user", "assistant"}
  text = render_chat(youtu, "youtu", add_generation_prompt=False, default_system=None)
  assert all(f"<information>{s.observation}</information>" in text for s in t.steps if s.observation is not None)


def test_chat_segments_with_smollm2_own_template():
  """FE-SFT on SmolLM2 renders with the GGUF's own jinja template (foresight tags added as tokens):
  the prefix-by-prefix segmentation covers the whole rendering, and the trained spans are exactly
  the assistant messages, each closed by <|im_end|>."""
  from foresight_jax import assets
  from foresight_jax.data.foresight import ForesightConfig, build_dataset
  from foresight_jax.data.generate import GenConfig, generate
  from foresight_jax.tokenizer import SMOLLM2_SYSTEM, Tokenizer
  tok = stages_data.add_foresight_tokens(Tokenizer.load(assets.smollm2_gguf()))
  assert tok.uses_jinja and tok.chat_template == "chatml" and tok.is_single_token("<foresight>")
  for t in build_dataset(list(generate(GenConfig(seed=3), 4)), ForesightConfig(n_branches=2)):
    msgs = stages_data.chat_messages(t, tok.chat_template, None)
    text = tok.apply_chat_template(msgs, add_generation_prompt=False)
    assert text.startswith(f"<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n")  # the template's default
    ex = stages_data.tokenize_chat(t, tok, "sft")
    ids, mask = ex["tokens"], ex["loss_mask"].astype(bool)
    assert tok.decode(ids) == text  # no BOS: SmolLM2 adds none
    spans = _spans(tok, ids, mask)
    assert spans == [m["content"] + "<|im_end|>" for m in msgs if m["role"] == "assistant"]
    assert all("<foresight>" in s for s in spans)


def test_resize_vocab_mean_rows():
  from foresight_jax.models import params as params_lib, presets
  from foresight_jax.sharding import make_mesh
  old = presets.model_config("tiny", tie_embeddings=False)
  new = old.replace(vocab_size=576)
  p = params_lib.init_params(old, jax.random.key(0))
  out = stages.resize_vocab(p, old, new, make_mesh(-1, 1, 1))
  assert out["embed"].shape == (576, old.hidden_size) and out["lm_head"].shape == (old.hidden_size, 576)
  np.testing.assert_array_equal(np.asarray(out["embed"][:512]), np.asarray(p["embed"]))
  np.testing.assert_allclose(np.asarray(out["embed"][512:]), np.broadcast_to(np.asarray(p["embed"]).mean(0), (64, 64)),
                             atol=1e-8)
  np.testing.assert_allclose(np.asarray(out["lm_head"][:, 512:]),
                             np.broadcast_to(np.asarray(p["lm_head"]).mean(1, keepdims=True), (64, 64)), atol=1e-8)


def test_resize_vocab_rows_start_at_their_names_pieces():
  """New tag rows start at the mean embedding of their name's old pieces ("</search>" -> "/search"),
  so no two tags share a row; a name without old pieces falls back to the mean of all rows."""
  from foresight_jax.models import params as params_lib, presets
  from foresight_jax.sharding import make_mesh

  class Tok:  # the two methods resize_vocab reads; ids >= 512 are the added tags
    names = {512: "<search>", 513: "</search>", 514: "<zz>"}
    pieces = {"search": [7, 9], "/search": [3, 7, 9], "zz": [600]}

    def id_to_token(self, i):
      return self.names.get(i)

    def encode(self, text):
      return self.pieces[text]

  old = presets.model_config("tiny", tie_embeddings=False)
  new = old.replace(vocab_size=515)
  p = params_lib.init_params(old, jax.random.key(0))
  out = stages.resize_vocab(p, old, new, make_mesh(-1, 1, 1), Tok())
  e, h = np.asarray(p["embed"]), np.asarray(p["lm_head"])
  np.testing.assert_allclose(np.asarray(out["embed"][512]), e[[7, 9]].mean(0), atol=1e-6)
  np.testing.assert_allclose(np.asarray(out["embed"][513]), e[[3, 7, 9]].mean(0), atol=1e-6)
  np.testing.assert_allclose(np.asarray(out["embed"][514]), e.mean(0), atol=1e-6)  # 600 is not an old id
  np.testing.assert_allclose(np.asarray(out["lm_head"][:, 513]), h[:, [3, 7, 9]].mean(1), atol=1e-6)
  assert np.abs(np.asarray(out["embed"][512]) - np.asarray(out["embed"][513])).max() > 1e-3
