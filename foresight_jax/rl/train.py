"""The FC-RL stage: a config (configs/fc_rl.py) -> tasks, tools, model -> `train.loop.run`.

    foresight-jax train --config configs/fc_rl.py:tiny --config.model.init_from=runs/fe_sft_tiny/hf

Same machinery as the LM stages: config checks that name the key, the mesh, resume from
`<workdir>/checkpoints` (params, optimizer, the frozen reference, the RNG and the prompt
schedule's position, so a SIGKILLed run resumes bitwise), SIGTERM save, metrics JSONL +
TensorBoard, an HF export of the trained policy in `<workdir>/hf`.

Tasks are synthetic search tasks over `rl.n_worlds` worlds (seeds rl.task_seed * 1000 + w);
each step draws `rl.prompts_per_step` of them (a seeded permutation per epoch) and samples
`rl.group_size` episodes of each. `rl.tool=device` runs the whole step in one jit (search in
the graph); `rl.tool=host` runs jitted segments with Python tools between them (the world's own
search, or a Search-R1 server at `rl.search_url`) and the same jitted update.
"""
from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from foresight_jax.data.generate import GenConfig, generate, make_worlds
from foresight_jax.data.world import WorldConfig
from foresight_jax.rl import grpo, host_tools, step as rl_step
from foresight_jax.rl.rollout import Rollout, RolloutConfig
from foresight_jax.rl.tasks import TaskEnv, observation_affixes
from foresight_jax.rl.vocab_tables import VocabTables
from foresight_jax.train import loop, optim, stages, stages_config, state as state_lib, step as step_lib
from foresight_jax.train.stages_config import ConfigError

log = logging.getLogger(__name__)


class PromptSchedule:
  """Which tasks each step trains on: a seeded permutation per epoch, `prompts_per_step` at a
  time, each repeated `group_size` times. Its state is the step count (exact resume)."""

  def __init__(self, env: TaskEnv, prompts_per_step: int, group_size: int, seed: int):
    self.env, self.p, self.g, self.seed = env, prompts_per_step, group_size, seed
    self.k = 0

  def indices(self, k: int) -> np.ndarray:
    n = len(self.env.tasks)
    per_epoch = n // self.p
    epoch, j = divmod(k, per_epoch)
    perm = np.random.default_rng([self.seed, epoch]).permutation(n)
    return perm[j * self.p:(j + 1) * self.p]

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = self.env.batch(self.indices(self.k), self.g)
    batch = {k: np.array_split(v, jax.process_count())[jax.process_index()] for k, v in batch.items()}  # our rows
    self.k += 1
    return batch

  def get_state(self) -> dict:
    return {"k": self.k}

  def set_state(self, s: dict) -> None:
    self.k = int(s["k"])


def task_gen_config(r) -> GenConfig:
  """The RL tasks' generator: search only, rl.hops-hop questions over rl.n_worlds worlds whose search
  returns rl.search_k docs."""
  return GenConfig(seed=r.task_seed, n_worlds=r.n_worlds, math_fraction=0.0, hops=tuple(r.hops),
                   world=WorldConfig(search_k=r.search_k))


def rl_config(cfg) -> rl_step.RLConfig:
  r = cfg.rl
  weights = (("outcome", 1.0),) if r.reward == "outcome" else (
      ("outcome", 1.0), ("format", r.w_format), ("grounding", r.w_grounding), ("calibration", r.w_calibration))
  return rl_step.RLConfig(
      group_size=r.group_size,
      rollout=RolloutConfig(max_turns=r.max_turns, max_turn_tokens=r.max_turn_tokens, temperature=r.temperature,
                            top_p=r.top_p, top_k=r.top_k),
      grpo=grpo.GRPOConfig(clip_eps=r.clip_eps, beta=r.beta, aggregation=r.aggregation),
      variant=cfg.data.variant, weights=weights,
      spec=rl_step.rw.RewardSpec(max_turns=r.max_turns, max_obs_tokens=512))


def _tokenizer(cfg, init_path: str, workdir: str, worlds, tasks):
  from foresight_jax.train import stages_data
  saved = os.path.join(workdir, "tokenizer")
  if os.path.isdir(saved):
    from foresight_jax.tokenizer import Tokenizer
    return Tokenizer.load(saved)
  if init_path:  # the checkpoint's own tokenizer (a data.tokenizer=train_sentencepiece default is moot)
    from foresight_jax.tokenizer import Tokenizer
    tok = Tokenizer.load(cfg.data.tokenizer if cfg.data.tokenizer not in ("", stages_config.TRAIN_SENTENCEPIECE)
                         else init_path)
    return stages_data.add_foresight_tokens(tok) if cfg.model.add_foresight_tokens else tok
  # random init (a smoke run or a resume check): a tokenizer trained on the tasks' own text
  trajs = list(generate(task_gen_config(cfg.rl), min(len(tasks), 256), worlds=worlds))
  chat_cfg = stages_config.base("fe_sft")
  chat_cfg.data.chat_format, chat_cfg.data.variant = True, cfg.data.variant
  texts = stages_data.rendered_texts(trajs, chat_cfg) + [d for w in worlds for _, d in w.docs]
  from foresight_jax.tokenizer import train_sentencepiece
  return train_sentencepiece(texts, None, cfg.data.vocab_size)


def _host_tool(cfg, env: TaskEnv, worlds, tok):
  """(task, name, query ids) -> observation ids, from the world's search or a Search-R1 server."""
  from foresight_jax.data.world import format_docs
  k = env.index.topk
  if cfg.rl.search_url:
    from foresight_jax.retrieval.server import HttpRetriever
    remote = HttpRetriever(cfg.rl.search_url, timeout=cfg.rl.tool_timeout_s)
    search = lambda task, q: remote.search(q, k)  # noqa: E731
  else:
    by_seed = {w.seed: w for w in worlds}
    search = lambda task, q: by_seed[env.tasks[task].meta["world_seed"]].search(q, k)  # noqa: E731

  def tool(task: int, name: str, arg) -> list[int]:
    if name != "search":
      raise ValueError(f"no host tool {name!r}")
    return tok.encode(format_docs(search(task, tok.decode(arg).strip())))
  return tool


def run(cfg, dry_run: bool = False) -> dict[str, Any]:
  stages_config.check(cfg)
  stages.init_distributed(cfg)
  r = cfg.rl
  workdir = os.path.abspath(cfg.workdir)
  init_path = stages_config.resolve_init_from(cfg.model.init_from) if cfg.model.init_from else ""
  mesh_shape = stages.check_mesh(cfg)
  rows = r.prompts_per_step * r.group_size
  if rows % (mesh_shape[0] * mesh_shape[1]):
    raise ConfigError(f"rl.prompts_per_step x rl.group_size = {rows} rows are not divisible by mesh.data x "
                      f"mesh.fsdp = {mesh_shape[0] * mesh_shape[1]}")
  if not init_path:
    if cfg.data.tokenizer != stages_config.TRAIN_SENTENCEPIECE:
      raise ConfigError("model.init_from is empty: start from an FE-SFT export (an HF dir), or set "
                        f"data.tokenizer={stages_config.TRAIN_SENTENCEPIECE!r} for a random-init smoke run")
    log.warning("model.init_from is empty: FC-RL starts from a RANDOM model (a smoke / resume check, "
                "not a training run); pass the FE-SFT export as --config.model.init_from")
  gcfg = task_gen_config(r)
  worlds = make_worlds(gcfg)
  tasks = [t.task for t in generate(gcfg, r.tasks, worlds=worlds)]
  tok = _tokenizer(cfg, init_path, workdir, worlds, tasks)
  mcfg = stages.model_config(cfg, init_path, tok, tok.vocab_size)
  env = TaskEnv.build(tasks, tok, worlds=worlds, chat=True, variant=cfg.data.variant,
                      max_prompt_tokens=r.max_prompt_tokens, max_passage_tokens=r.max_passage_tokens)
  rlcfg = rl_config(cfg)
  summary = {"stage": "fc_rl", "workdir": workdir, "init_from": init_path or None, "vocab_size": mcfg.vocab_size,
             "tasks": len(tasks), "worlds": len(worlds), "rows_per_step": rows, "reward": r.reward,
             "weights": dict(rlcfg.weights), "tool": r.tool, "index": {"docs": env.index.num_docs,
             "layout": env.index.layout, "bytes": int(env.index.index_bytes())}, "mesh": mesh_shape}
  if dry_run:
    return {"dry_run": True, **summary}
  lead = jax.process_index() == 0
  if lead:
    os.makedirs(workdir, exist_ok=True)
    if not os.path.isdir(os.path.join(workdir, "tokenizer")):
      tmp = os.path.join(workdir, f"tokenizer.tmp-{os.getpid()}")
      tok.save(tmp)
      os.replace(tmp, os.path.join(workdir, "tokenizer"))
    with open(os.path.join(workdir, "stage_config.json"), "w") as fh:
      fh.write(cfg.to_json(indent=2, sort_keys=True))
    print(json.dumps(summary), flush=True)

  tcfg = stages.train_config(cfg)
  over = {k: v for k, v in (("compute_dtype", tcfg.compute_dtype), ("remat_policy", tcfg.remat_policy)) if v}
  run_cfg = mcfg.replace(**over) if over else mcfg
  mesh = loop.build_mesh(tcfg.mesh)
  tx, schedule = optim.make_optimizer(tcfg.optim)
  abstract_ts, sh_ts = state_lib.abstract_train_state(run_cfg, tx, mesh)
  abstract = rl_step.RLState(**{k: getattr(abstract_ts, k) for k in ("step", "params", "opt_state", "rng", "skipped")},
                             ref_params=abstract_ts.params)
  shardings = rl_step.RLState(**{k: getattr(sh_ts, k) for k in ("step", "params", "opt_state", "rng", "skipped")},
                              ref_params=sh_ts.params)

  def init():
    params = None
    if init_path:
      from foresight_jax.models.checkpoint import load_pretrained
      loaded_cfg, params = load_pretrained(init_path, dtype=cfg.model.param_dtype, mesh=mesh)
      params = stages.resize_vocab(params, loaded_cfg, mcfg, mesh, tok)
    ts = state_lib.init_train_state(run_cfg, tx, mesh, seed=tcfg.seed, params=params)
    # the reference is a frozen copy (its own buffers: the policy's are donated every step)
    ref = jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=sh_ts.params)(ts.params)
    return rl_step.RLState(step=ts.step, params=ts.params, opt_state=ts.opt_state, rng=ts.rng,
                           skipped=ts.skipped, ref_params=ref)

  env_arrays = rl_step.EnvArrays(index=env.index, tools=env.tools, tables=VocabTables.build(tok),
                                 weights=rl_step.weight_vector(rlcfg))
  if r.tool == "device":
    step_fn = rl_step.make_fc_rl_step(run_cfg, tx, schedule, mesh, shardings, env_arrays, rlcfg)
  else:
    step_fn = make_host_step(run_cfg, tx, schedule, mesh, shardings, env, env_arrays, rlcfg, tok,
                             _host_tool(cfg, env, worlds, tok), r.tool_timeout_s)

  def export(state):
    params = state.params
    if jax.process_count() > 1:
      # params sharded over other hosts' devices: every process joins the gather (a collective)
      from jax.experimental import multihost_utils
      params = multihost_utils.process_allgather(params, tiled=True)
    if not lead:
      return None
    from foresight_jax.models.checkpoint import save_pretrained
    out = os.path.join(workdir, "hf")
    save_pretrained(mcfg, params, out)
    tok.save(out)
    return out

  program = loop.Program(abstract=abstract, init=init, step=step_fn, tokens=lambda b: 0,
                         export=export if tcfg.export_hf else None, meta={"model": mcfg.to_dict()})
  data = PromptSchedule(env, r.prompts_per_step, r.group_size, cfg.data.seed)
  result = loop.run(program, tcfg, data, workdir, mesh)
  out = {"stage": "fc_rl", "status": result.status, "step": result.step, "workdir": workdir,
         "export_dir": result.export_dir}
  if lead:
    print(json.dumps(out), flush=True)
  return out


def make_host_step(cfg, tx, schedule, mesh, shardings, env: TaskEnv, env_arrays, rlcfg, tok, tool, timeout_s):
  """`(state, batch) -> (state, metrics)` for rl.tool=host: the rollout alternates jitted
  segments with Python tool calls, then the fused step's own jitted update runs on it."""
  repl = NamedSharding(mesh, P())
  keys = jax.jit(lambda raw: jax.random.split(jax.random.wrap_key_data(raw), 3))
  update = jax.jit(functools.partial(rl_step.update_from_rollout, cfg, tx, schedule, rlcfg),
                   in_shardings=(shardings, step_lib.batch_sharding(mesh), step_lib.batch_sharding(mesh),
                                 repl, repl, step_lib.batch_sharding(mesh), repl),
                   out_shardings=(shardings, repl), donate_argnums=(0,))
  pre, suf = observation_affixes(tok, env.chat)
  affixes = (tok.encode(pre), tok.encode(suf))
  tags = host_tools.tool_tag_ids(tok, ("search",))
  tables, weights = jax.device_put((env_arrays.tables, env_arrays.weights), repl)

  def run(state, batch):
    with jax.set_mesh(mesh):
      rng, k_roll, _ = keys(state.rng)
      ro, failed = host_tools.rollout_host(
          cfg, jax.lax.stop_gradient(state.params), batch["prompts"], batch["prompt_len"], k_roll, tool,
          env.tools, tags, batch["task"], affixes, rlcfg.rollout, obs_width=env.index.max_obs_tokens,
          timeout_s=timeout_s, task_names=[t.id for t in env.tasks])
      dev = step_lib.shard_batch({k: v for k, v in batch.items()}, mesh)
      ro = step_lib.shard_batch(_rollout_arrays(ro), mesh)
      return update(state, Rollout(**ro), dev, tables, rng, jnp.asarray(failed), weights)
  return run


def _rollout_arrays(ro) -> dict[str, np.ndarray]:
  return {k: np.asarray(getattr(ro, k)) for k in ("tokens", "kind", "turn", "logprobs", "length", "n_turns",
                                                  "answered", "searches", "invalid")}


__all__ = ["PromptSchedule", "rl_config", "run"]
