"""The jitted train and eval steps: pure functions (state, batch) -> (state, metrics).

    train_step = make_train_step(cfg, tx, schedule, mesh, shardings, grad_accum_steps=2)
    state, metrics = train_step(state, shard_batch(batch, mesh))

* Explicit in/out shardings over the (data, fsdp, tensor) mesh; the state argument is donated so
  params and optimizer state are updated in place (no second copy of the state in memory).
* bf16 compute and rematerialisation come from the ModelConfig (`compute_dtype`, `remat_policy`),
  which the model functions read; params and gradients stay in `param_dtype` (fp32 masters).
  With `cast_params`, the fp32 masters are cast to the compute dtype once per step and forward and
  backward run on that copy (bf16 weight reads, bf16 weight gradients, upcast for the optimizer):
  4-6% faster and 8-10 GiB lighter at Qwen2.5-1.5B / Youtu-2B shapes on an H100 (BUILD_NOTES).
* Gradient accumulation: a `lax.scan` over k micro-batches, weighted by loss-token counts (see
  `optim.py` for why this and not `optax.MultiSteps`).
* Non-finite guard, in-graph: when the loss or the gradient norm is not finite, params and
  optimizer state are kept as they were (a select, no host round trip), `skipped` goes up by one
  and `metrics["nonfinite"]` is 1. `step` and `rng` advance regardless: `step` counts batches
  consumed, so checkpoints and the data iterator stay aligned.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from foresight_jax.models.config import ModelConfig
from foresight_jax.train import losses
from foresight_jax.train.state import TrainState

BATCH_AXES = ("data", "fsdp")  # mesh axes the batch dimension is split over (logical "batch")
HOST_KEYS = ("source_ids",)  # batch fields kept on the host: provenance for error messages


def batch_sharding(mesh) -> NamedSharding:
  """Rows split over data x fsdp, everything else replicated; a prefix for every batch leaf."""
  return NamedSharding(mesh, P(BATCH_AXES))


def split_host_fields(batch: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(numeric arrays for the device, host-only fields such as `source_ids`)."""
  dev, host = {}, {}
  for k, v in batch.items():
    a = v if isinstance(v, (np.ndarray, jax.Array)) else None
    if k in HOST_KEYS or a is None or a.dtype.kind in "OUS":
      host[k] = v
    else:
      dev[k] = a
  return dev, host


def check_batch(batch: dict[str, Any], mesh, grad_accum_steps: int = 1) -> None:
  rows = {k: v.shape[0] for k, v in batch.items()}
  if len(set(rows.values())) != 1:
    raise ValueError(f"batch fields disagree on the batch size: {rows}")
  # multi-host: each process passes its own rows, and the global batch is what gets split
  b = next(iter(rows.values())) * jax.process_count()
  split = math.prod(mesh.shape[a] for a in BATCH_AXES) * grad_accum_steps
  if b % split:
    raise ValueError(f"batch size {b} is not divisible by data x fsdp x grad_accum_steps = {split} "
                     f"(mesh {dict(mesh.shape)}, grad_accum_steps={grad_accum_steps}, "
                     f"processes={jax.process_count()})")


def shard_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """Host arrays -> global arrays on the batch sharding. Multi-host: each process passes its own
  rows (see `sharding.host_local_batch_slice`)."""
  sh = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sh)
  return {k: jax.make_array_from_process_local_data(sh, v) for k, v in batch.items()}


def _takes_rng(loss_fn: Callable) -> bool:
  try:
    return "rng" in inspect.signature(loss_fn).parameters
  except (TypeError, ValueError):
    return False


def _token_weight(batch, aux) -> jax.Array:
  # the count of loss tokens, read from the mask itself so an all-masked micro-batch weighs 0
  # (masked_cross_entropy clamps its own count at 1)
  if "loss_mask" in batch:
    return batch["loss_mask"].astype(jnp.float32).sum()
  return jnp.asarray(aux.get("tokens", 1.0), jnp.float32)


def cast_floats(params, dtype):
  """The floating-point leaves of `params` in `dtype` (integer leaves as they are)."""
  return jax.tree.map(lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, params)


def loss_and_grads(cfg: ModelConfig, loss_fn: Callable, params, batch, rng, grad_accum_steps: int,
                   mesh=None, cast_params: bool = False) -> tuple[jax.Array, dict, Any]:
  """(loss, aux, grads) of the token-mean loss over the whole batch, over k micro-batches.
  Gradients come back in the params' dtype; `cast_params`: differentiate a compute-dtype copy."""
  extra = {"rng": rng} if _takes_rng(loss_fn) else {}
  if cast_params:
    masters = params
    loss, aux, grads = loss_and_grads(cfg, loss_fn, cast_floats(params, cfg.compute_dtype), batch, rng,
                                      grad_accum_steps, mesh)
    return loss, aux, jax.tree.map(lambda g, p: g.astype(p.dtype), grads, masters)

  def one(p, mb, **kw):
    return jax.value_and_grad(lambda p_: loss_fn(cfg, p_, mb, **kw), has_aux=True)(p)

  if grad_accum_steps == 1:
    (loss, aux), grads = one(params, batch, **extra)
    return loss, aux, grads

  k = grad_accum_steps

  def micro(x):
    # [B, ...] -> [k, B/k, ...] with micro-batch j = rows j::k: every device keeps its own rows
    # (a contiguous block of B/ndev rows holds B/(ndev k) rows of each micro-batch), so no data
    # moves between devices; the constraint keeps XLA from re-laying the rows out
    x = x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1)
    if mesh is not None:
      x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(None, BATCH_AXES)))
    return x

  micro_batches = jax.tree.map(micro, batch)
  rngs = jax.random.split(rng, k)
  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)

  def body(carry, xs):
    g_sum, loss_sum, w_sum, aux_sum = carry
    mb, r = xs
    (loss, aux), g = one(params, mb, **({"rng": r} if extra else {}))
    w = _token_weight(mb, aux)
    # loss_i * w_i is the micro-batch's summed token loss, so sum_i / sum_w is the big-batch mean
    g_sum = jax.tree.map(lambda a, b: a + b.astype(jnp.float32) * w, g_sum, g)
    aux_sum = {n: aux_sum[n] + jnp.asarray(v, jnp.float32) * w for n, v in aux.items()
               if n in aux_sum}
    return (g_sum, loss_sum + loss.astype(jnp.float32) * w, w_sum + w, aux_sum), None

  aux_shape = jax.eval_shape(lambda: one(params, jax.tree.map(lambda x: x[0], micro_batches), **extra))[0][1]
  aux0 = {n: jnp.zeros((), jnp.float32) for n, v in aux_shape.items() if v.shape == () and n != "tokens"}
  (g_sum, loss_sum, w_sum, aux_sum), _ = jax.lax.scan(
      body, (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), aux0), (micro_batches, rngs))
  denom = jnp.maximum(w_sum, 1.0)
  grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), g_sum, params)
  aux = {n: v / denom for n, v in aux_sum.items()}
  aux.update(loss=loss_sum / denom, tokens=w_sum)
  return loss_sum / denom, aux, grads


def apply_update(tx: optax.GradientTransformation, schedule: optax.Schedule, state, grads, loss: jax.Array,
                 rng: jax.Array):
  """The update every stage shares (LM steps and the FC-RL step): clip + optimizer, the in-graph
  non-finite guard, step/rng/skipped bookkeeping. `state` is any state dataclass with step,
  params, opt_state, rng and skipped (TrainState, rl's RLState); other fields pass through.
  Returns (new state, {loss, grad_norm, learning_rate, nonfinite, skipped})."""
  grad_norm = optax.tree.norm(grads)  # the same expression as the optimizer's clip norm: XLA may merge them
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

  def update(params, opt_state):
    updates, new_opt = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_opt

  if jax.default_backend() == "cpu":
    # a branch: XLA:CPU does not fuse a select with a scalar predicate into the update's loops, so
    # selecting new or old state cost a pass over every leaf (`benchmarks/optim_update.py`)
    new_params, new_opt = jax.lax.cond(finite, update, lambda p, o: (p, o), state.params, state.opt_state)
  else:
    # on accelerators the elementwise select fuses into the update's kernels (no extra pass over
    # the state) and a branch would wait on the predicate between kernel launches
    new_params, new_opt = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                       update(state.params, state.opt_state), (state.params, state.opt_state))
  skipped = state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32)
  new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt,
                            rng=jax.random.key_data(rng), skipped=skipped)
  metrics = dict(
      loss=jnp.asarray(loss, jnp.float32), grad_norm=grad_norm.astype(jnp.float32),
      # optax counts applied updates only, so the LR of this update is schedule(step - skipped)
      learning_rate=jnp.asarray(schedule(state.step - state.skipped), jnp.float32),
      nonfinite=jnp.logical_not(finite).astype(jnp.int32), skipped=skipped)
  return new_state, metrics


def train_step(cfg: ModelConfig, tx: optax.GradientTransformation, schedule: optax.Schedule,
               state: TrainState, batch: dict, *, loss_fn: Callable = losses.causal_lm_loss,
               grad_accum_steps: int = 1, mesh=None, cast_params: bool = False) -> tuple[TrainState, dict]:
  """One update (un-jitted; `make_train_step` wraps it). Returns (new state, scalar metrics)."""
  rng, step_rng = jax.random.split(jax.random.wrap_key_data(state.rng))
  loss, aux, grads = loss_and_grads(cfg, loss_fn, state.params, batch, step_rng, grad_accum_steps, mesh,
                                    cast_params)
  new_state, upd = apply_update(tx, schedule, state, grads, loss, rng)
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in aux.items() if jnp.ndim(v) == 0}
  metrics.update(upd)
  return new_state, metrics


def make_train_step(cfg: ModelConfig, tx: optax.GradientTransformation, schedule: optax.Schedule, mesh,
                    shardings: TrainState, *, loss_fn: Callable = losses.causal_lm_loss,
                    grad_accum_steps: int = 1, donate: bool = True, cast_params: bool = False) -> Callable:
  """Jitted `(state, batch) -> (state, metrics)` with explicit shardings; `state` is donated.

  Runs under `jax.set_mesh(mesh)` so the model's logical `constrain` hints see the mesh.
  """
  repl = NamedSharding(mesh, P())
  fn = jax.jit(
      lambda s, b: train_step(cfg, tx, schedule, s, b, loss_fn=loss_fn, grad_accum_steps=grad_accum_steps,
                              mesh=mesh, cast_params=cast_params),
      in_shardings=(shardings, batch_sharding(mesh)), out_shardings=(shardings, repl),
      donate_argnums=(0,) if donate else ())

  def run(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    with jax.set_mesh(mesh):
      return fn(state, batch)

  run.jitted = fn
  return run


def eval_step(cfg: ModelConfig, params, batch: dict, *, loss_fn: Callable = losses.causal_lm_loss) -> dict:
  kw = {"rng": jax.random.key(0)} if _takes_rng(loss_fn) else {}
  loss, aux = loss_fn(cfg, params, batch, **kw)
  return {"loss": jnp.asarray(loss, jnp.float32),
          "tokens": jnp.asarray(aux.get("tokens", _token_weight(batch, aux)), jnp.float32)}


def make_eval_step(cfg: ModelConfig, mesh, param_shardings, *,
                   loss_fn: Callable = losses.causal_lm_loss) -> Callable:
  """Jitted `(params, batch) -> {loss, tokens}` (forward only; params are not donated)."""
  fn = jax.jit(lambda p, b: eval_step(cfg, p, b, loss_fn=loss_fn),
               in_shardings=(param_shardings, batch_sharding(mesh)), out_shardings=NamedSharding(mesh, P()))

  def run(params, batch):
    with jax.set_mesh(mesh):
      return fn(params, batch)

  return run
