"""The training loop: resume, step, log, checkpoint, survive preemption, export.

    result = train(model_cfg, TrainConfig(steps=1000, optim=OptimConfig(...)), data_iter, workdir)

Per step: next batch (host) -> sharded device arrays -> jitted, donated train step. Metrics of step
s are fetched after step s+1 is dispatched (one step of lag), so the device never idles while the
host logs. Everything needed to continue - params, optimizer state, RNG, step, and the data
iterator's position - is checkpointed together every `checkpoint_every` steps; a restart with the
same command resumes from the latest complete checkpoint and replays the exact same batches, so
per-step losses match an uninterrupted run bit for bit (on a deterministic backend such as CPU).

Stops: `steps` reached (final checkpoint + HF safetensors export), SIGTERM (checkpoint at the
current step, return status "preempted": the CLI exits 0), `max_nonfinite_in_row` non-finite
steps in a row (NonFiniteError naming the steps and their batches' source records), or the data
running out (status "data_exhausted", checkpointed).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import numpy as np
from tqdm import tqdm

from foresight_jax import sharding as sharding_lib
from foresight_jax.models.config import ModelConfig, train_flops_per_token
from foresight_jax.train import losses, metrics as metrics_lib, optim
from foresight_jax.train import state as state_lib, step as step_lib
from foresight_jax.train.checkpoint import Checkpointer

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
  """Too many consecutive non-finite steps; the message names the steps and their source records."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  steps: int
  optim: optim.OptimConfig = optim.OptimConfig()
  seed: int = 0
  mesh: tuple[int, int, int] = (-1, 1, 1)  # (data, fsdp, tensor); one entry may be -1
  checkpoint_every: int = 100
  max_to_keep: int = 3
  async_checkpoint: bool = True
  max_nonfinite_in_row: int = 5
  peak_flops_per_device: float | None = None  # None: vendor table (GPU/TPU) or measured (CPU)
  compute_dtype: str | None = None  # overrides the model config's (e.g. "bfloat16")
  remat_policy: str | None = None  # overrides the model config's
  cast_params: bool = False  # forward/backward on a compute-dtype copy of the fp32 masters (step.py)
  eval_every: int = 0  # 0: no eval
  eval_batches: int = 4
  export_hf: bool = True  # write <workdir>/hf (config.json + model.safetensors) when done
  progress: bool = True  # tqdm bar with ETA on stderr
  tensorboard: bool = True

  @classmethod
  def from_dict(cls, d: Mapping[str, Any] | Any) -> "TrainConfig":
    d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"unknown train config keys {unknown}; known: {sorted(names)}")
    if "optim" in d and not isinstance(d["optim"], optim.OptimConfig):
      d["optim"] = optim.OptimConfig.from_dict(d["optim"])
    if "mesh" in d:
      d["mesh"] = tuple(d["mesh"])
    return cls(**d)


@dataclasses.dataclass
class TrainResult:
  status: str  # completed | preempted | data_exhausted
  step: int
  state: Any
  export_dir: str | None = None


def build_mesh(shape: tuple[int, int, int]):
  """A (data, fsdp, tensor) mesh over the first prod(shape) devices (all of them with a -1)."""
  if -1 in shape:
    return sharding_lib.make_mesh(*shape)
  return sharding_lib.make_mesh(*shape, devices=jax.devices()[:math.prod(shape)])


class _Preemption:
  """SIGTERM -> a flag the loop polls between steps (a handler must not checkpoint by itself:
  it can fire mid-dispatch, with the state donated)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def install(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    self.requested = True

  def uninstall(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _fmt_sources(ids, limit: int = 8) -> str:
  if ids is None:
    return "(no source_ids in the batch)"
  ids = [str(x) for x in np.asarray(ids).reshape(-1).tolist()]
  more = f" ... (+{len(ids) - limit} more)" if len(ids) > limit else ""
  return ", ".join(ids[:limit]) + more


def _evaluate(eval_fn, params, it, n: int, mesh) -> float:
  tot = w = 0.0
  for _, batch in zip(range(n), it):
    dev, _ = step_lib.split_host_fields(batch)
    m = jax.device_get(eval_fn(params, step_lib.shard_batch(dev, mesh)))
    tot += float(m["loss"]) * float(m["tokens"])
    w += float(m["tokens"])
  return tot / max(w, 1.0)


@dataclasses.dataclass
class Program:
  """What a stage plugs into `run`: the state it trains and its jitted step.

  abstract: the state's abstract pytree (ShapeDtypeStructs with shardings; a class with
    to_dict/from_dict, e.g. TrainState) - the restore target, so a resumed run never initialises;
  init(): a fresh state (called only when there is nothing to resume);
  step(state, host_batch) -> (state, device metrics): shards the batch and runs the jitted step;
  tokens(host_batch) -> tokens processed (tokens/s); a "tokens_processed" metric overrides it;
  flops_per_token() -> model FLOPs per processed token, for MFU (None, or returning None: no MFU);
    a "model_flops" metric (the step's FLOPs, e.g. the RL step's rollout + update) overrides it;
  export(state) -> a directory, run once when training completes (None: no export);
  eval(state) -> {name: value} at `eval_every` (None: no eval)."""
  abstract: Any
  init: Callable[[], Any]
  step: Callable[[Any, dict], tuple[Any, dict]]
  tokens: Callable[[dict], int]
  flops_per_token: Callable[[], float | None] | None = None
  export: Callable[[Any], str | None] | None = None
  eval: Callable[[Any], dict] | None = None
  meta: dict | None = None  # checkpoint meta (e.g. the model config, for mismatch messages)


def train(model_cfg: ModelConfig, tcfg: TrainConfig, data_iter: Iterator[dict], workdir: str, *,
          init_params=None, loss_fn: Callable = losses.causal_lm_loss,
          eval_iter_fn: Callable[[], Iterator[dict]] | None = None, handle_sigterm: bool = True,
          on_step_end: Callable[[dict], None] | None = None) -> TrainResult:
  """Train a causal LM to `tcfg.steps`, resuming from `<workdir>/checkpoints` when it holds one.

  init_params: starting params (e.g. `load_pretrained`) for a fresh run; ignored on resume.
  data_iter: yields dicts of numpy [B, ...] arrays; `get_state()/set_state()` make resume exact.
  on_step_end: called with each step's logged metrics record once they are on the host (the
    moment step s is known to be finished): for hooks such as custom logging or benchmarks.
  """
  over = {k: v for k, v in (("compute_dtype", tcfg.compute_dtype), ("remat_policy", tcfg.remat_policy)) if v}
  cfg = model_cfg.replace(**over) if over else model_cfg
  mesh = build_mesh(tcfg.mesh)
  tx, schedule = optim.make_optimizer(tcfg.optim)
  abstract, shardings = state_lib.abstract_train_state(cfg, tx, mesh)
  train_step = step_lib.make_train_step(cfg, tx, schedule, mesh, shardings, loss_fn=loss_fn,
                                        grad_accum_steps=tcfg.optim.grad_accum_steps,
                                        cast_params=tcfg.cast_params)
  eval_fn = step_lib.make_eval_step(cfg, mesh, shardings.params, loss_fn=loss_fn) if eval_iter_fn else None
  checked = []

  def step(state, batch):
    dev, _ = step_lib.split_host_fields(batch)
    if not checked:
      step_lib.check_batch(dev, mesh, tcfg.optim.grad_accum_steps)
      checked.append(train_flops_per_token(cfg, dev["inputs"].shape[1]))
    return train_step(state, step_lib.shard_batch(dev, mesh))

  def export(state):
    from foresight_jax.models.checkpoint import save_pretrained
    params = state.params
    if jax.process_count() > 1:
      # params sharded over other hosts' devices (fsdp/tensor across hosts) cannot be fetched by
      # process 0 alone: every process joins the gather (a collective), then only process 0 writes
      from jax.experimental import multihost_utils
      params = multihost_utils.process_allgather(params, tiled=True)
    if jax.process_index() != 0:
      return None
    out = os.path.join(os.path.abspath(workdir), "hf")
    save_pretrained(model_cfg, params, out)
    return out

  program = Program(
      abstract=abstract, init=lambda: state_lib.init_train_state(cfg, tx, mesh, seed=tcfg.seed, params=init_params),
      step=step, tokens=lambda b: int(np.asarray(b["inputs"]).size) * jax.process_count(),
      # known once the first batch has been seen (it depends on the sequence length)
      flops_per_token=lambda: checked[0] if checked else None, export=export if tcfg.export_hf else None,
      eval=(lambda st: {"eval_loss": _evaluate(eval_fn, st.params, eval_iter_fn(), tcfg.eval_batches, mesh)})
      if eval_fn is not None else None, meta={"model": model_cfg.to_dict()})
  return run(program, tcfg, data_iter, workdir, mesh, handle_sigterm=handle_sigterm, on_step_end=on_step_end)


def run(program: Program, tcfg: TrainConfig, data_iter: Iterator[dict], workdir: str, mesh, *,
        handle_sigterm: bool = True, on_step_end: Callable[[dict], None] | None = None) -> TrainResult:
  """The loop every stage shares: resume, step, log, checkpoint, survive preemption, export."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), tcfg.max_to_keep, tcfg.async_checkpoint)
  meta = program.meta or {}

  # resume before anything is initialised: a shape mismatch fails here, before any compute
  restored = ckpt.restore_latest(program.abstract, meta.get("model"))
  if restored is not None:
    state, data_state, _ = restored
    if data_state is not None and hasattr(data_iter, "set_state"):
      data_iter.set_state(data_state)
    elif not hasattr(data_iter, "set_state"):
      log.warning("data iterator has no set_state(): resuming at step %d with the stream restarted",
                  int(state.step))
    print(f"resumed from checkpoint step {int(state.step)} in {ckpt.directory}", flush=True)
  else:
    state = program.init()
  step = start = int(state.step)
  last_saved = start if restored is not None else None

  writer = metrics_lib.MetricsWriter(workdir, start, tensorboard=tcfg.tensorboard)
  peak = metrics_lib.peak_flops_total(mesh.size, tcfg.peak_flops_per_device)
  preempt = _Preemption().install() if handle_sigterm else _Preemption()
  bar = tqdm(total=tcfg.steps, initial=start, desc="train", unit="step", disable=not tcfg.progress,
             dynamic_ncols=True)
  streak: list[tuple[int, Any, float, float]] = []
  pending = None
  t_prev = time.perf_counter()
  eval_spans: list[tuple[float, float]] = []  # (start, seconds) of evals, kept out of step times
  status = "completed"

  def data_state():
    return data_iter.get_state() if hasattr(data_iter, "get_state") else None

  def save(s: int):
    nonlocal last_saved
    if last_saved != s:
      ckpt.save(s, state, data_state(), meta, force=True)
      last_saved = s

  def finish(p) -> None:
    """Fetch step p's metrics (blocks until it is done), log them, apply the non-finite rule."""
    nonlocal t_prev
    s, dev_metrics, sources, n_tokens, extra, t_returned, ran_in_call = p
    m = jax.device_get(dev_metrics)
    # when the call itself ran the step (an XLA:GPU while loop syncs its predicate with the host),
    # the step ended when the call returned; otherwise when its metrics arrived (also when the last
    # step was only seen finished after this call returned: the two cannot be told apart then)
    done = t_returned if ran_in_call and t_returned > t_prev else time.perf_counter()
    dt = done - t_prev - sum(d for t0, d in eval_spans if t_prev <= t0 < done)
    t_prev = done
    eval_spans[:] = [e for e in eval_spans if e[0] >= done]
    n_tokens = float(m.pop("tokens_processed", n_tokens))
    tps = n_tokens / dt
    fpt = program.flops_per_token() if program.flops_per_token is not None else None
    # a step whose work is not tokens x a constant (the RL step: rollout + update) reports its FLOPs
    flops = m.pop("model_flops", None)
    mfu = float(flops) / dt / peak if flops is not None else (tps * fpt / peak if fpt else None)
    rec = {"step": s, **{k: v for k, v in m.items() if k != "learning_rate"}, "lr": m["learning_rate"],
           "tokens_per_s": tps, **({"mfu": mfu} if mfu is not None else {}), "step_time_s": dt, **extra}
    rec = writer.write(rec)
    if on_step_end is not None:
      on_step_end(rec)
    bar.update(s - bar.n)
    bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}", tok_s=f"{tps:,.0f}")
    if rec["nonfinite"]:
      streak.append((s, sources, rec["loss"], rec["grad_norm"]))
      log.warning("step %d: non-finite loss/grads (loss=%s grad_norm=%s), update skipped; batch sources: %s",
                  s, rec["loss"], rec["grad_norm"], _fmt_sources(sources))
      if len(streak) >= tcfg.max_nonfinite_in_row:
        detail = "; ".join(f"step {a}: loss={c} grad_norm={d}, sources: {_fmt_sources(b)}" for a, b, c, d in streak)
        raise NonFiniteError(f"{len(streak)} non-finite steps in a row, the last at step {s} "
                             f"(updates were skipped; state unchanged since step {streak[0][0] - 1}). "
                             f"{detail}")
    else:
      streak.clear()

  try:
    while step < tcfg.steps:
      if preempt.requested:
        status = "preempted"
        break
      try:
        batch = next(data_iter)
      except StopIteration:
        status = "data_exhausted"
        break
      n_tokens = program.tokens(batch)
      state, dev_metrics = program.step(state, batch)
      t_returned = time.perf_counter()
      ran_in_call = all(x.is_ready() for x in jax.tree.leaves(dev_metrics) if isinstance(x, jax.Array))
      step += 1
      if pending is not None:
        finish(pending)
      extra = {}
      if program.eval is not None and tcfg.eval_every and step % tcfg.eval_every == 0:
        t_eval = time.perf_counter()
        extra.update(program.eval(state))
        eval_spans.append((t_eval, time.perf_counter() - t_eval))  # kept out of the step's tokens/s
      pending = (step, dev_metrics, batch.get("source_ids"), n_tokens, extra, t_returned, ran_in_call)
      if step % tcfg.checkpoint_every == 0:
        save(step)
    if pending is not None:
      finish(pending)
      pending = None
    save(step)  # final / preemption / end-of-data checkpoint (no-op when this step is saved)
    ckpt.wait()
  finally:
    preempt.uninstall()
    bar.close()
    writer.close()
    ckpt.close()

  export_dir = None
  if status == "preempted":
    print(f"SIGTERM: saved checkpoint at step {step} in {ckpt.directory}; exiting cleanly", flush=True)
  elif status == "data_exhausted":
    print(f"data exhausted at step {step}; checkpoint saved", flush=True)
  if status == "completed" and program.export is not None:
    export_dir = program.export(state)
  return TrainResult(status=status, step=step, state=state, export_dir=export_dir)
