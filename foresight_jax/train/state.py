"""TrainState: the whole mutable training state as one explicit pytree, and its sharded creation.

    tx, schedule = optim.make_optimizer(ocfg)
    abstract, shardings = abstract_train_state(cfg, tx, mesh)   # shapes + shardings, no memory
    state = init_train_state(cfg, tx, mesh, seed=0)                 # materialised once, on its shards

Creation goes abstract shapes (jax.eval_shape) -> shardings (logical-axis rules for params, the
same shardings for params-shaped optimizer leaves, replicated scalars) -> one jit whose
out_shardings are those shardings, so every shard is generated in place and nothing is built twice
or gathered on one device. The same (abstract, shardings) pair is the restore target of
`train/checkpoint.py`, so a resumed run never materialises a random init at all.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from foresight_jax.models import params as params_lib
from foresight_jax.models.config import ModelConfig
from foresight_jax.train import optim


@flax.struct.dataclass
class TrainState:
  """step: batches consumed (= updates attempted); skipped: updates dropped by the non-finite
  guard; rng: the key's raw data (`jax.random.key_data`, uint32), split once per step. Stored raw
  so checkpoints hold plain arrays; code wraps it back with `jax.random.wrap_key_data`."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  skipped: jax.Array

  def to_dict(self) -> dict[str, Any]:
    """A plain dict (what is checkpointed): stable key paths for metadata checks and restores."""
    return {"step": self.step, "params": self.params, "opt_state": self.opt_state, "rng": self.rng,
            "skipped": self.skipped}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "TrainState":
    return cls(step=d["step"], params=d["params"], opt_state=d["opt_state"], rng=d["rng"],
               skipped=d["skipped"])


def _build(cfg: ModelConfig, tx: optax.GradientTransformation, seed_key: jax.Array, params=None) -> TrainState:
  """seed_key: a typed key (`jax.random.key(seed)`)."""
  init_key, state_key = jax.random.split(seed_key)
  if params is None:
    # no mesh here: the enclosing jit's out_shardings place every tensor
    params = params_lib.init_params(cfg, init_key)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=jax.random.key_data(state_key), skipped=jnp.zeros((), jnp.int32))


def state_shardings(cfg: ModelConfig, abstract: TrainState, mesh) -> TrainState:
  """Shardings for every leaf of a TrainState shaped like `abstract`."""
  param_sh = params_lib.param_shardings(cfg, mesh)
  repl = NamedSharding(mesh, P())
  opt_sh = optim.shardings_like_params(abstract.opt_state, jax.tree.structure(abstract.params), param_sh,
                                       lambda _: repl)
  return TrainState(step=repl, params=param_sh, opt_state=opt_sh, rng=repl, skipped=repl)


def abstract_train_state(cfg: ModelConfig, tx: optax.GradientTransformation, mesh) -> tuple[TrainState, TrainState]:
  """(ShapeDtypeStructs carrying their shardings, shardings): no device memory is touched."""
  abstract = jax.eval_shape(lambda k: _build(cfg, tx, k), jax.random.key(0))
  sh = state_shardings(cfg, abstract, mesh)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, sh)
  return abstract, sh


def init_train_state(cfg: ModelConfig, tx: optax.GradientTransformation, mesh, seed: int = 0,
                     params=None) -> TrainState:
  """A fresh state on `mesh`. With `params` (e.g. from `load_pretrained`), only the optimizer
  state is new; params are resharded if needed, never copied to the host."""
  _, sh = abstract_train_state(cfg, tx, mesh)
  key = jax.random.key(seed)
  if params is None:
    return jax.jit(lambda k: _build(cfg, tx, k), out_shardings=sh)(key)
  params = jax.device_put(params, sh.params)  # a no-op where they already sit on these shards
  return jax.jit(lambda k, p: _build(cfg, tx, k, p), out_shardings=sh)(key, params)


def num_params(state: TrainState) -> int:
  return sum(x.size for x in jax.tree.leaves(state.params))
