"""The fused FC-RL step (design.md §5): ONE jitted function, state donated,

    fresh key -> rollout (sample, device search, extend, ...) -> rewards -> group advantages
    -> log-probs under the current params and the frozen reference -> clipped-ratio loss + k3 KL
    -> grads -> clip + AdamW (train/step.apply_update, shared with the LM stages)

    step = make_fc_rl_step(cfg, tx, schedule, mesh, shardings, env_arrays, RLConfig(...))
    state, metrics = step(state, batch)       # batch: prompts, prompt_len, groups, golds, is_math

Sharding: the rows (P prompts x G samples) are split over the mesh's batch axes for both the
rollout and the update (one layout: the rollout's rows are the update's rows, so nothing moves
between the two); params follow the logical-axis rules, the index and the per-vocab tables are
replicated. The host-tool path (host_tools.rollout_host) produces the same `Rollout` and enters
`update_from_rollout`, the same code as the fused step after its rollout.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from foresight_jax.models.config import ModelConfig, train_flops_per_token
from foresight_jax.rl import grpo, rewards as rw
from foresight_jax.rl.layout import KIND_GEN, KIND_PAD
from foresight_jax.rl.rollout import Rollout, RolloutConfig, rollout
from foresight_jax.train import step as step_lib


@flax.struct.dataclass
class RLState:
  """TrainState's fields plus the frozen reference params (checkpointed together)."""
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  skipped: jax.Array
  ref_params: Any

  def to_dict(self) -> dict[str, Any]:
    return {"step": self.step, "params": self.params, "opt_state": self.opt_state, "rng": self.rng,
            "skipped": self.skipped, "ref_params": self.ref_params}

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "RLState":
    return cls(**{k: d[k] for k in ("step", "params", "opt_state", "rng", "skipped", "ref_params")})


@dataclasses.dataclass(frozen=True)
class RLConfig:
  group_size: int = 4
  rollout: RolloutConfig = RolloutConfig()
  grpo: grpo.GRPOConfig = grpo.GRPOConfig()
  variant: str = "full"                      # the block grammar the format reward checks
  weights: tuple = (("outcome", 1.0), ("format", 0.2), ("grounding", 0.2), ("calibration", 0.2))
  spec: rw.RewardSpec = rw.RewardSpec()
  ece_bins: int = 10

  @property
  def weight_dict(self) -> dict[str, float]:
    return dict(self.weights)


REWARD_ORDER = tuple(rw.REWARDS)  # the entries of `weight_vector`


def weight_vector(rlcfg: RLConfig) -> jax.Array:
  """The reward weights as an array the step reads at run time (`EnvArrays.weights`): runs that
  differ only in their weights (FC-RL and the outcome-only GRPO baseline) then lower to one
  program, which the persistent compilation cache compiles once for both."""
  w = {"outcome": 1.0, **rlcfg.weight_dict}
  return jnp.asarray([w.get(k, 0.0) for k in REWARD_ORDER], jnp.float32)


@flax.struct.dataclass
class EnvArrays:
  """What every step reads and never changes (replicated): the search index, the tool ids, the
  per-vocab reward tables and (optional) the reward weights (`weight_vector`; None: the config's,
  as constants of the program)."""
  index: Any
  tools: Any
  tables: Any
  weights: Any = None


def _masked_mean(x, m):
  m = m.astype(jnp.float32)
  return (x * m).sum() / jnp.maximum(m.sum(), 1.0)


def _calibration_figures(success, valid, y, bins: int) -> dict[str, jax.Array]:
  """Brier and ECE (equal-width bins) of every valid success estimate against its episode's
  outcome, in-graph (the evaluation code's definitions, data/calibration.py)."""
  s = success
  yy = jnp.broadcast_to(y[:, None], s.shape)
  m = valid.astype(jnp.float32)
  n = jnp.maximum(m.sum(), 1.0)
  brier = (m * (s - yy) ** 2).sum() / n
  b = jnp.minimum((s * bins).astype(jnp.int32), bins - 1)
  onehot = jax.nn.one_hot(b, bins) * m[..., None]
  gap = jnp.abs((onehot * s[..., None]).sum((0, 1)) - (onehot * yy[..., None]).sum((0, 1)))
  return {"brier": brier, "ece": gap.sum() / n, "estimates": m.sum()}


def rl_model_flops(cfg: ModelConfig, ro: Rollout, with_reference: bool) -> jax.Array:
  """Model FLOPs of one RL step, for its MFU: the useful (non-pad) tokens of the rollout, each
  through one forward while sampling (the LM head only where a token was sampled), the policy's
  forward + backward in the update, and the reference's forward when the KL term is on.
  Padding, the tool and the rewards do no model work and count nothing."""
  s = ro.tokens.shape[1]
  train = train_flops_per_token(cfg, s)  # 6 x matmul params + causal attention, fwd + bwd
  head = 2.0 * cfg.vocab_size * cfg.hidden_size
  forward_no_head = train / 3.0 - head
  n_tok = (ro.kind != KIND_PAD).sum().astype(jnp.float32)
  n_gen = (ro.kind == KIND_GEN).sum().astype(jnp.float32)
  rollout_flops = n_tok * forward_no_head + n_gen * head
  return rollout_flops + n_tok * train * (1.0 + (1.0 / 3.0 if with_reference else 0.0))


def update_from_rollout(cfg: ModelConfig, tx: optax.GradientTransformation, schedule: optax.Schedule,
                        rlcfg: RLConfig, state: RLState, ro: Rollout, batch: Mapping[str, jax.Array],
                        tables, rng: jax.Array, failed: jax.Array | None = None,
                        weights: jax.Array | None = None) -> tuple[RLState, dict]:
  """Rewards -> advantages -> loss -> update, for a rollout from either tool path. `weights`
  (`weight_vector`) replaces the config's reward weights with run-time values."""
  w = rlcfg.weight_dict if weights is None else {k: weights[i] for i, k in enumerate(REWARD_ORDER)}
  r, comps, details = rw.compute_rewards(ro.tokens, ro.kind, ro.turn, rw.Golds(batch["gold_chars"],
                                         batch["gold_len"]), batch["is_math"], tables, w,
                                         rlcfg.variant, rlcfg.spec)
  if failed is not None:  # a failed tool call: that sample earns nothing, the run goes on
    r = jnp.where(failed, 0.0, r)
  adv = grpo.group_advantages(r, rlcfg.group_size, rlcfg.grpo.adv_eps)
  ref_logp = None
  if rlcfg.grpo.beta:
    ref_logp, _ = grpo.token_logprobs(cfg, jax.lax.stop_gradient(state.ref_params), ro.tokens, ro.kind)

  def loss_fn(params):
    logp, ent = grpo.token_logprobs(cfg, params, ro.tokens, ro.kind)
    # one update per rollout: the "old" policy is the current one, so the ratio is 1 in value
    return grpo.policy_loss(logp, jax.lax.stop_gradient(logp), ref_logp, adv, ro.kind, rlcfg.grpo,
                            jax.lax.stop_gradient(ent))

  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state, upd = step_lib.apply_update(tx, schedule, state, grads, loss, rng)
  gen = ro.kind == KIND_GEN
  t_valid = jnp.arange(details["format_ok"].shape[1])[None] < details["n_turns"][:, None]
  metrics = {**{f"reward_{k}": v.mean() for k, v in comps.items()}, "reward": r.mean(),
             "format_turn": _masked_mean(details["format_ok"].astype(jnp.float32), t_valid),
             "grounding": _masked_mean(details["grounding"], details["grounding_valid"]),
             **_calibration_figures(details["success"], details["success_valid"], comps["outcome"], rlcfg.ece_bins),
             "response_tokens": gen.sum(axis=1).astype(jnp.float32).mean(),
             "turns": ro.n_turns.astype(jnp.float32).mean(), "answered": ro.answered.astype(jnp.float32).mean(),
             "searches": ro.searches.astype(jnp.float32).mean(), "invalid_turns": ro.invalid.astype(jnp.float32).mean(),
             "adv_abs": jnp.abs(adv).mean(), "tokens_processed": gen.sum().astype(jnp.float32),
             "model_flops": rl_model_flops(cfg, ro, bool(rlcfg.grpo.beta)), **aux, **upd}
  if failed is not None:
    metrics["tool_failures"] = failed.astype(jnp.float32).sum()
  return new_state, metrics


def fc_rl_step(cfg: ModelConfig, tx: optax.GradientTransformation, schedule: optax.Schedule, rlcfg: RLConfig,
               state: RLState, batch: Mapping[str, jax.Array], env: EnvArrays) -> tuple[RLState, dict]:
  """The whole step, device tool path (un-jitted; `make_fc_rl_step` jits it)."""
  rng, k_roll, k_upd = jax.random.split(jax.random.wrap_key_data(state.rng), 3)  # a fresh key every step
  ro = rollout(cfg, jax.lax.stop_gradient(state.params), batch["prompts"], batch["prompt_len"], k_roll,
               env.index, env.tools, batch["groups"], rlcfg.rollout)
  del k_upd  # reserved: the update itself draws no randomness today
  return update_from_rollout(cfg, tx, schedule, rlcfg, state, ro, batch, env.tables, rng, weights=env.weights)


def batch_sharding(mesh) -> NamedSharding:
  return step_lib.batch_sharding(mesh)


def make_fc_rl_step(cfg: ModelConfig, tx, schedule, mesh, shardings: RLState, env: EnvArrays,
                    rlcfg: RLConfig, *, donate: bool = True) -> Callable:
  """Jitted `(state, host batch) -> (state, metrics)`: state donated, rows on the batch axes, env
  replicated (an argument, not a constant: the index is not baked into the program)."""
  repl = NamedSharding(mesh, P())
  env_sh = jax.tree.map(lambda _: repl, env)
  fn = jax.jit(functools.partial(fc_rl_step, cfg, tx, schedule, rlcfg),
               in_shardings=(shardings, batch_sharding(mesh), env_sh), out_shardings=(shardings, repl),
               donate_argnums=(0,) if donate else ())
  env = jax.device_put(env, env_sh)

  def run(state: RLState, batch: Mapping[str, Any]) -> tuple[RLState, dict]:
    with jax.set_mesh(mesh):
      return fn(state, step_lib.shard_batch(dict(batch), mesh), env)

  run.jitted = fn
  run.env = env
  return run


__all__ = ["EnvArrays", "REWARD_ORDER", "RLConfig", "RLState", "fc_rl_step", "make_fc_rl_step",
           "rl_model_flops", "update_from_rollout", "weight_vector"]
