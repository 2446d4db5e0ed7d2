"""The training stages (WM-AMT, FE-SFT): a stage config -> data, model, `loop.train`.

    cfg = configs.load("configs/wm_amt.py:tiny", ["data.seq_len=128"])
    summary = run(cfg)                 # or run(cfg, dry_run=True): validate and plan only

`plan(cfg)` checks everything that can be checked before any compute, and each failure names
the config key (and the path) at fault: unknown keys and bad values (stages_config.py), files
that are missing or empty, a mesh that does not divide the devices, a batch the mesh cannot
split or the device memory cannot hold (an estimate of params + Adam state + gradients +
activations per device against `memory_stats()["bytes_limit"]`, or host memory on CPU), and a
checkpoint in the workdir from another model shape (the Checkpointer's metadata check, run here
so it fails before data generation, tokenizer training or weight loading). `run` then builds the
data and the initial weights and calls `loop.train`, which resumes from `<workdir>/checkpoints`.

Multi-host: `init_distributed` runs first (before anything touches a JAX backend); every process
runs the same `run(cfg)`; the global batch is `data.batch_size` (stages_data.py explains how
hosts split it); only process 0 writes metrics, the tokenizer and the HF export.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax
import ml_collections

from foresight_jax.models import kernels
from foresight_jax.models.config import ModelConfig, param_count
from foresight_jax.train import losses, loop, optim, stages_config, stages_data
from foresight_jax.train.stages_config import ConfigError

HEADROOM = 0.9  # XLA needs workspace beyond what the estimate counts


# ------------------------------------------------------------------------------ distributed
def init_distributed(cfg) -> bool:
  """jax.distributed.initialize per `distributed.*`; True when this is a multi-process run."""
  dc = cfg.distributed
  env = os.environ
  slurm = "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1
  want = dc.mode == "on" or (dc.mode == "auto" and bool(dc.coordinator_address or slurm
                                                          or env.get("JAX_COORDINATOR_ADDRESS")))
  if not want or jax.distributed.is_initialized():
    return jax.distributed.is_initialized()
  kw: dict[str, Any] = {}
  if dc.coordinator_address:
    kw["coordinator_address"] = dc.coordinator_address
  if dc.num_processes > 0:
    kw["num_processes"] = dc.num_processes
  if dc.process_id >= 0:
    kw["process_id"] = dc.process_id
  if dc.local_device_ids == "all":
    # one process per node under SLURM: jax would otherwise give it only GPU SLURM_LOCALID
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
      n = len([v for v in visible.split(",") if v.strip()])
    else:
      import glob
      n = len(glob.glob("/dev/nvidia[0-9]*")) or 1
    kw["local_device_ids"] = list(range(n))
  elif dc.local_device_ids:
    kw["local_device_ids"] = [int(x) for x in dc.local_device_ids.split(",")]
  jax.distributed.initialize(**kw)
  return True


# ------------------------------------------------------------------------------ configs
def train_config(cfg) -> loop.TrainConfig:
  t, o = cfg.train, cfg.optim
  ocfg = optim.OptimConfig(learning_rate=o.learning_rate, warmup_steps=o.warmup_steps, total_steps=t.steps,
                           end_lr_ratio=o.end_lr_ratio, b1=o.b1, b2=o.b2, eps=o.eps,
                           weight_decay=o.weight_decay, clip_norm=o.clip_norm or None,
                           grad_accum_steps=t.grad_accum)
  return loop.TrainConfig(
      steps=t.steps, optim=ocfg, seed=t.seed, mesh=(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor),
      checkpoint_every=t.checkpoint_every, max_to_keep=t.keep, async_checkpoint=t.async_checkpoint,
      max_nonfinite_in_row=t.max_nonfinite_in_row, peak_flops_per_device=t.peak_flops or None,
      compute_dtype=t.compute_dtype or None, remat_policy=t.remat or None, cast_params=t.cast_params,
      eval_every=t.eval_every,
      eval_batches=t.eval_batches, export_hf=t.export_hf, progress=t.progress, tensorboard=t.tensorboard)


def _round_up(n: int, m: int) -> int:
  return -(-n // max(m, 1)) * max(m, 1)


def checkpoint_model_config(path: str, param_dtype: str) -> ModelConfig:
  """The architecture of an HF dir / .gguf from its metadata alone (no tensor is read)."""
  if path.endswith(".gguf"):
    from foresight_jax.models.checkpoint.gguf_io import GGUFSource
    return GGUFSource(path).config(param_dtype, param_dtype)
  from foresight_jax.models.checkpoint.hf import hf_config_to_model_config, read_config
  d = path if os.path.isdir(path) else os.path.dirname(path)
  return hf_config_to_model_config(read_config(d), where=os.path.join(d, "config.json"),
                                   param_dtype=param_dtype, compute_dtype=param_dtype)


def model_config(cfg, init_path: str, tok, tok_vocab: int) -> ModelConfig:
  """The model trained: the checkpoint's (or the preset's) architecture with a vocabulary large
  enough for the tokenizer (padded to model.pad_vocab_multiple when it has to grow)."""
  from foresight_jax.models import presets
  m = cfg.model
  if init_path:
    mcfg = checkpoint_model_config(init_path, m.param_dtype)
  else:
    mcfg = presets.model_config(m.config, param_dtype=m.param_dtype)
    if tok is not None:  # a from-scratch model speaks its tokenizer's specials
      mcfg = mcfg.replace(bos_token_id=tok.bos_id, eos_token_ids=tuple(tok.eos_ids))
  if tok_vocab > mcfg.vocab_size:
    mcfg = mcfg.replace(vocab_size=_round_up(tok_vocab, m.pad_vocab_multiple))
  return mcfg


# ------------------------------------------------------------------------------ checks
def check_mesh(cfg) -> tuple[int, int, int]:
  sizes = [cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor]
  n = jax.device_count()
  names = "mesh.data x mesh.fsdp x mesh.tensor"
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ConfigError(f"{names} = {sizes}: sizes must be >= 1, at most one of them -1")
  known = math.prod(s for s in sizes if s != -1)
  if n % known:
    raise ConfigError(f"{names} = {sizes} does not divide the {n} devices ({jax.process_count()} "
                      f"process(es) x {jax.local_device_count()} local)")
  if -1 in sizes:
    sizes[sizes.index(-1)] = n // known
  elif known != n and jax.process_count() > 1:
    raise ConfigError(f"{names} = {sizes} uses {known} of {n} devices; a multi-process mesh must "
                      f"use all of them (set one axis to -1)")
  return tuple(sizes)


def check_batch(cfg, mesh: tuple[int, int, int]) -> None:
  b, k, p = cfg.data.batch_size, cfg.train.grad_accum, jax.process_count()
  split = mesh[0] * mesh[1] * k
  if b % split:
    raise ConfigError(f"data.batch_size={b} is not divisible by mesh.data x mesh.fsdp x train.grad_accum "
                      f"= {mesh[0]} x {mesh[1]} x {k} = {split}")
  if b % p:
    raise ConfigError(f"data.batch_size={b} is not divisible by the {p} processes")


def estimate_memory(mcfg: ModelConfig, cfg, mesh: tuple[int, int, int]) -> dict[str, float]:
  """Bytes per device, roughly: params, Adam mu/nu, gradients (+ the accumulation buffer),
  activations kept for the backward pass (per layer: residual, norms, q/k/v/o, MLP, and, on the
  XLA attention path, the fp32 scores + probabilities, which materialise [rows, heads, T, T]; the
  fused kernels keep [rows, heads, T] softmax statistics), and the fp32 logits with their softmax
  gradient, at most one loss chunk of them (`losses.LOGITS_CHUNK_BYTES`)."""
  data, fsdp, tensor = mesh
  n = param_count(mcfg)
  pb = jax.numpy.dtype(mcfg.param_dtype).itemsize
  cb = jax.numpy.dtype(cfg.train.compute_dtype or mcfg.compute_dtype).itemsize
  shard = fsdp * tensor
  rows = cfg.data.batch_size / (data * fsdp) / cfg.train.grad_accum
  T = cfg.data.seq_len
  tokens = rows * T
  D, F, L, H = mcfg.hidden_size, mcfg.intermediate_size, mcfg.num_layers, mcfg.num_heads
  qkv = H * (mcfg.qk_head_dim + (mcfg.v_head_dim or mcfg.head_dim)) + 2 * mcfg.num_kv_heads * mcfg.head_dim
  fused = kernels.resolve(mcfg.attention_impl, cfg.train.compute_dtype or mcfg.compute_dtype) != "xla"
  scores = 4 * H / tensor if fused else 4 * 2 * H / tensor * T
  layer = cb * (6 * D + (3 * F + 2 * qkv) / tensor) + scores  # per token
  remat = cfg.train.remat or mcfg.remat_policy
  if remat == "full":  # only layer inputs are kept; one layer is rebuilt at a time
    acts = tokens * (L * cb * D + layer)
  elif remat in ("dots", "dots_no_batch"):  # matmul outputs kept, elementwise work recomputed
    acts = tokens * (L * layer * 0.6 + layer)
  else:
    acts = tokens * L * layer
  out = {"params": n * pb / shard, "optimizer": 2 * n * pb / shard,
         "gradients": n * pb / shard * (2 if cfg.train.grad_accum > 1 else 1),
         "activations": acts, "logits": 3 * min(tokens * mcfg.vocab_size / tensor * 4, losses.LOGITS_CHUNK_BYTES)}
  out["total"] = sum(out.values())
  out["rows_per_device"], out["seq_len"] = rows, T
  return out


def memory_limit(cfg, mesh_devices: int | None = None) -> tuple[float, str]:
  """(bytes one device may use, where the figure comes from); `mesh_devices`: devices the run's mesh
  spans (a one-device run on a host with 8 forced CPU devices may use the host's whole memory)."""
  if cfg.train.memory_limit_gb > 0:
    return cfg.train.memory_limit_gb * 2**30, "train.memory_limit_gb"
  dev = jax.local_devices()[0]
  try:
    stats = dev.memory_stats() or {}
  except Exception:  # noqa: BLE001 - some backends do not implement it
    stats = {}
  if stats.get("bytes_limit"):
    return float(stats["bytes_limit"]), f"{dev.device_kind} memory_stats()['bytes_limit']"
  # CPU: forced host devices share the host's memory, split over those the mesh uses here
  host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  used = min(jax.local_device_count(), max(1, (mesh_devices or jax.device_count()) // jax.process_count()))
  return host / used, f"host memory / {used} local devices in the mesh"


def check_memory(est: dict[str, float], cfg, mesh=None) -> tuple[float, str]:
  limit, source = memory_limit(cfg, math.prod(mesh) if mesh is not None else None)
  if est["total"] > HEADROOM * limit:
    gib = lambda x: f"{x / 2**30:.2f}"  # noqa: E731
    parts = ", ".join(f"{k} {gib(est[k])}" for k in ("params", "optimizer", "gradients", "activations", "logits"))
    raise ConfigError(
        f"data.batch_size={cfg.data.batch_size} (x data.seq_len={cfg.data.seq_len}) does not fit: estimated "
        f"{gib(est['total'])} GiB per device ({parts}; {est['rows_per_device']:g} rows per device per "
        f"micro-batch) exceeds {HEADROOM:.0%} of {gib(limit)} GiB ({source}). Lower data.batch_size or "
        f"data.seq_len, raise train.grad_accum, set train.remat=full, or shard more (mesh.fsdp)")
  return limit, source


def check_checkpoint(mcfg: ModelConfig, tcfg: loop.TrainConfig, workdir: str) -> int | None:
  """Latest step of `<workdir>/checkpoints` if it fits `mcfg`, else CheckpointMismatchError naming
  the tensor. Metadata only: abstract shapes (jax.eval_shape) against the checkpoint's."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory) or not any(n.isdigit() for n in os.listdir(directory)):
    return None
  from foresight_jax.train import state as state_lib
  from foresight_jax.train.checkpoint import Checkpointer
  tx, _ = optim.make_optimizer(tcfg.optim)
  abstract, _ = state_lib.abstract_train_state(mcfg, tx, loop.build_mesh(tcfg.mesh))
  ckpt = Checkpointer(directory, tcfg.max_to_keep, async_save=False)
  try:
    step = ckpt.latest_step()
    if step is not None:
      ckpt.check_compatible(step, abstract, mcfg.to_dict())
    return step
  finally:
    ckpt.close()


# ------------------------------------------------------------------------------ plan + run
@dataclasses.dataclass
class Plan:
  cfg: Any
  workdir: str
  init_path: str
  model_cfg: ModelConfig
  train_cfg: loop.TrainConfig
  mesh: tuple[int, int, int]
  tokenizer: Any  # None until trained (train_sentencepiece on a fresh run)
  memory: dict[str, float]
  memory_limit: tuple[float, str]
  resume_step: int | None

  def summary(self) -> dict[str, Any]:
    return {"stage": self.cfg.stage, "workdir": self.workdir, "init_from": self.init_path or None,
            "params": param_count(self.model_cfg), "vocab_size": self.model_cfg.vocab_size,
            "mesh": dict(zip(("data", "fsdp", "tensor"), self.mesh)), "processes": jax.process_count(),
            "devices": jax.device_count(), "global_batch": self.cfg.data.batch_size,
            "seq_len": self.cfg.data.seq_len, "resume_step": self.resume_step,
            "memory_gib_per_device": round(self.memory["total"] / 2**30, 3),
            "memory_limit_gib": round(self.memory_limit[0] / 2**30, 2)}


def plan(cfg: ml_collections.ConfigDict) -> Plan:
  """Every check that needs no compute, in order (see module doc)."""
  stages_config.check(cfg)
  init_distributed(cfg)
  workdir = os.path.abspath(cfg.workdir)
  init_path = stages_config.resolve_init_from(cfg.model.init_from) if cfg.model.init_from else ""
  mesh = check_mesh(cfg)
  check_batch(cfg, mesh)
  tok = stages_data.make_tokenizer(cfg, None, init_path, workdir)
  mcfg = model_config(cfg, init_path, tok, tok.vocab_size if tok is not None else cfg.data.vocab_size)
  est = estimate_memory(mcfg, cfg, mesh)
  limit = check_memory(est, cfg, mesh)
  tcfg = train_config(cfg)
  step = check_checkpoint(mcfg, tcfg, workdir)
  if jax.process_count() > 1:
    # every process has read the workdir (tokenizer, checkpoints) before process 0 writes to it
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("foresight_jax.stages.plan")
  return Plan(cfg, workdir, init_path, mcfg, tcfg, mesh, tok, est, limit, step)


def resize_vocab(params: dict, old: ModelConfig, new: ModelConfig, mesh, tok=None) -> dict:
  """Grow the embedding (and an untied head) to `new.vocab_size`.

  A new row (a foresight tag) starts at the mean embedding of its name's pieces under the old
  vocabulary ("</search>" -> the pieces of "/search"), so every tag is told apart from the first
  step, a closing tag from its opening one by the "/" piece. Rows that all started at one mean
  embedding were indistinguishable, as inputs and (tied) as outputs: SmolLM2-135M after 150 WM-AMT
  and 80 FE-SFT steps at lr 1e-4 still wrote `<rollout>` where `<search>` belonged (BUILD_NOTES).
  Without a tokenizer, or for a name with no old pieces, a row starts at the mean of all rows.
  """
  grow = new.vocab_size - old.vocab_size
  if grow <= 0:
    return params
  from foresight_jax.models import params as params_lib
  sh = params_lib.param_shardings(new, mesh)
  jnp = jax.numpy
  pieces = []  # per new id: the old ids of its name (empty: start at the mean of all rows)
  for j in range(old.vocab_size, new.vocab_size):
    name = ((tok.id_to_token(j) or "") if tok is not None else "").strip("<>")
    pieces.append([i for i in tok.encode(name) if i < old.vocab_size] if name else [])

  def pad(x, axis):
    rows = jnp.moveaxis(x, axis, 0).astype(jnp.float32)  # [old vocab, D]
    new_rows = jnp.stack([rows[jnp.asarray(ids)].mean(0) if ids else rows.mean(0) for ids in pieces])
    return jnp.concatenate([x, jnp.moveaxis(new_rows, 0, axis).astype(x.dtype)], axis=axis)

  out = dict(params)
  out["embed"] = jax.jit(lambda x: pad(x, 0), out_shardings=sh["embed"])(params["embed"])
  if "lm_head" in params:
    out["lm_head"] = jax.jit(lambda x: pad(x, 1), out_shardings=sh["lm_head"])(params["lm_head"])
  return out


def run(cfg: ml_collections.ConfigDict, dry_run: bool = False) -> dict[str, Any]:
  if cfg.get("stage") == "fc_rl":  # the RL stage plugs its own program into the same loop
    from foresight_jax.rl import train as rl_train
    return rl_train.run(cfg, dry_run)
  p = plan(cfg)
  lead = jax.process_index() == 0
  if dry_run:
    return {"dry_run": True, **p.summary()}
  load = stages_data.load_documents if cfg.stage == "pretrain" else stages_data.load_trajectories
  train_trajs, held, data_summary = load(cfg)
  tok = p.tokenizer or stages_data.make_tokenizer(cfg, train_trajs, p.init_path, p.workdir)
  mcfg = model_config(cfg, p.init_path, tok, tok.vocab_size)
  if mcfg.vocab_size != p.model_cfg.vocab_size:  # cannot happen unless a tokenizer misreports its size
    raise ConfigError(f"data.vocab_size={cfg.data.vocab_size}: the trained tokenizer has {tok.vocab_size} ids")
  stages_data.check_trainable(train_trajs, tok, cfg)
  if lead:
    os.makedirs(p.workdir, exist_ok=True)
    saved = os.path.join(p.workdir, "tokenizer")
    if not os.path.isdir(saved):  # written whole, then renamed: a kill never leaves half of it
      tmp = f"{saved}.tmp-{os.getpid()}"
      tok.save(tmp)
      os.replace(tmp, saved)
    with open(os.path.join(p.workdir, "stage_config.json"), "w") as fh:
      fh.write(cfg.to_json(indent=2, sort_keys=True))
    print(json.dumps({**p.summary(), "data": data_summary}), flush=True)
  init_params = None
  if p.init_path and p.resume_step is None:  # a resumed run takes its params from the checkpoint
    from foresight_jax.models.checkpoint import load_pretrained
    loaded_cfg, init_params = load_pretrained(p.init_path, dtype=cfg.model.param_dtype,
                                              mesh=loop.build_mesh(p.train_cfg.mesh))
    init_params = resize_vocab(init_params, loaded_cfg, mcfg, loop.build_mesh(p.train_cfg.mesh), tok)
  data = stages_data.make_iterator(train_trajs, tok, cfg)
  eval_fn = (lambda: stages_data.make_iterator(held, tok, cfg, eval_=True)) if cfg.train.eval_every else None
  result = loop.train(mcfg, p.train_cfg, data, p.workdir, init_params=init_params, eval_iter_fn=eval_fn)
  if result.export_dir and lead:
    tok.save(result.export_dir)  # FE-SFT (or anyone) loads weights and tokenizer from one dir
  out = {"stage": cfg.stage, "status": result.status, "step": result.step, "workdir": p.workdir,
         "export_dir": result.export_dir}
  if lead:
    print(json.dumps(out), flush=True)
  return out
