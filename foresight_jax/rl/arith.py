"""Single-turn GRPO on the peer's arithmetic task (../shared/peers/tunix_grpo_bench.py), as ONE
jitted step with the state donated:

    fresh key (split from state.rng) -> G samples per prompt (sampling.prefill + decode, T = 0.9,
    stop at EOS) -> reward in-graph (1 iff the completion's text contains the digits of a+b)
    -> group advantages -> log-probs under the current params and the frozen reference
    -> clipped-ratio loss + beta * k3 KL -> grads -> AdamW (train.step.apply_update)

    cfg = arith_task.model_config(); sp = arith_task.build_tokenizer("/tmp/peers")
    tx, schedule = optimizer()                        # optax.adamw(1e-4), as the peer (flattened)
    state = init_state(cfg, tx, seed=0)               # rl.step.RLState, ref = a separate copy
    step = make_step(cfg, ArithConfig(), tx, schedule)
    table = arith_task.DigitTable.build(sp)
    state, metrics = step(state, arith_task.encode_batch(sp, batch), table)

The work is the peer's, kept identical so the two step times compare: the same tiny Qwen3 (2
layers, hidden 64, MLP 256, 4 query / 2 KV heads of 16, vocab 512, untied head, q/k RMSNorm,
eps 1e-6, rope theta 1e4), the same 512-piece sentencepiece BPE (same corpus, same trainer
settings: rl/arith_task.py holds the peer's task, reimplemented identically and checked
against it in tests/test_rl_arith.py), the same prompts (`make_batches`), BOS + prompt
left-padded to 32, G samples per prompt of up to 64 tokens, temperature 0.9, top_p 1, beta 0.04,
eps 0.2, `optax.adamw(1e-4)` with no clipping.

Differences from the peer, on purpose or by construction (none changes the amount of work):
* a fresh rollout key every step (Tunix reuses one fixed key, so its samples repeat for the same
  prompt);
* the reward is computed in the graph on token ids (`contains_gold`, `DigitTable`): the per-id
  text of every piece as digit classes, concatenated per completion; it equals the peer's Python
  `str(a+b) in sp.decode(completion)` (tested against that oracle);
* group advantages use grpo.group_advantages (population std, eps 1e-4; Tunix: ddof=1, eps 1e-6)
  and the loss aggregation is `ArithConfig.aggregation` (default token_mean; Tunix's default is
  sequence-mean-token-mean, available here as "sequence_mean").

Row layout: row r = prompt r // G, sample r % G, as the sampler holds it: the LEFT-padded prompt
(P columns), then the completion (T columns, its EOS included, as Tunix's completion mask includes
it, pads after), with rl/layout.py's KIND_* per token and the sampler's RoPE positions (0 at the
row's first real token), so the update's forward is the rollout's computation, and every row's
completion sits in the same T columns: the LM head and log-softmax run on those only.

Speed choices (none changes the numbers beyond float rounding; measured in BUILD_NOTES /
benchmarks/rl_step.py): the loss/grad pass runs over `update_chunks` row chunks (CPU scratch
memory small enough to be reused instead of page-faulted in every step), AdamW runs on the
params raveled into one vector (`optax.flatten`), the two layers are unrolled (`scan_layers=False`,
faster to compile), and the state is donated.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from foresight_jax import sampling
from foresight_jax.models import params as params_lib
from foresight_jax.models import transformer
from foresight_jax.models.config import ModelConfig
from foresight_jax.rl import grpo
from foresight_jax.rl.arith_task import (BETA, EOS_ID, EPSILON, LEARNING_RATE, PAD_ID, TEMPERATURE, ArithBatch,
                                         DigitTable, contains_gold)
from foresight_jax.rl.layout import KIND_GEN, KIND_PAD, KIND_PROMPT
from foresight_jax.rl.step import RLState
from foresight_jax.train import step as step_lib

# ------------------------------------------------------------------------------ the step
@dataclasses.dataclass(frozen=True)
class ArithConfig:
  group_size: int = 4
  max_new_tokens: int = 64
  temperature: float = TEMPERATURE
  clip_eps: float = EPSILON
  beta: float = BETA
  aggregation: str = "token_mean"
  eos_id: int = EOS_ID
  pad_id: int = PAD_ID
  update_chunks: int = 4  # row chunks of the loss/grad pass (see `loss_and_grads`); 1 = one pass

  @property
  def grpo(self) -> grpo.GRPOConfig:
    return grpo.GRPOConfig(clip_eps=self.clip_eps, beta=self.beta, aggregation=self.aggregation)


@flax.struct.dataclass
class ArithRollout:
  """Rows r = prompt r // G, sample r % G, as the sampler holds them: the LEFT-padded prompt
  (P columns), then the completion (T columns, EOS included, pads after)."""
  tokens: Any       # [B, P + T]
  kind: Any         # [B, P + T] KIND_* (rl/layout.py): PAD, PROMPT, GEN
  positions: Any    # [B, P + T] RoPE positions, 0 at each row's first prompt token (the sampler's)
  lengths: Any      # [B] completion tokens, EOS included
  stop_reason: Any  # [B]
  logprobs: Any     # [B, T] the sampler's raw-model log p of each completion token (0 after lengths)
  gen_width: int = flax.struct.field(pytree_node=False, default=0)  # T

  @property
  def prompt_width(self) -> int:  # P
    return self.tokens.shape[1] - self.gen_width

  @property
  def completion(self) -> jax.Array:  # [B, T]
    return self.tokens[:, self.prompt_width:]


def optimizer(learning_rate: float = LEARNING_RATE, flat: bool = True
              ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The peer's `optax.adamw(lr)` (b1 .9, b2 .999, eps 1e-8, wd 1e-4 on every leaf), no clipping.

  `flat`: run it on all params raveled into one vector (`optax.flatten`). AdamW is elementwise,
  so the update is the same numbers; the program has one set of optimizer kernels instead of one
  per leaf (13 here), which cuts compile time (the first step's cost) and per-step dispatches."""
  tx = optax.adamw(learning_rate)
  return (optax.flatten(tx) if flat else tx), optax.constant_schedule(learning_rate)


def init_state(cfg: ModelConfig, tx: optax.GradientTransformation, seed: int = 0) -> RLState:
  """Random params, AdamW state, the frozen reference as a separate copy (the state is donated
  each step, so the two must not share buffers), the rollout key stream from `seed`. One jitted
  call (eager per-leaf ops would each compile a small program)."""
  @jax.jit
  def build(key):
    init_key, rng = jax.random.split(key)
    params = params_lib.init_params(cfg, init_key)
    return RLState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                   rng=jax.random.key_data(rng), skipped=jnp.zeros((), jnp.int32), ref_params=None)

  state = build(jax.random.key(seed))
  # copied outside the jit: inside, XLA may return one buffer for both equal outputs
  return state.replace(ref_params=jax.jit(lambda p: jax.tree.map(jnp.copy, p))(state.params))


def rollout(cfg: ModelConfig, acfg: ArithConfig, params, batch: ArithBatch, key: jax.Array) -> ArithRollout:
  """G samples of every prompt (row r = prompt r // G): prefill + while_loop decode."""
  g, t = acfg.group_size, acfg.max_new_tokens
  prompts = jnp.repeat(jnp.asarray(batch.prompts, jnp.int32), g, axis=0)
  plen = jnp.repeat(jnp.asarray(batch.prompt_len, jnp.int32), g, axis=0)
  b, p = prompts.shape
  sp = sampling.SamplingParams(temperature=acfg.temperature, top_p=1.0)
  stop = sampling.StopSpec.make(b, eos_ids=(acfg.eos_id,))
  params = jax.lax.stop_gradient(params)
  st = sampling.prefill(cfg, params, prompts, plen, key, sp, stop, max_new_tokens=t, pad_id=acfg.pad_id)
  out = sampling.decode(cfg, params, st, sp, stop).output()
  s = jnp.arange(p + t, dtype=jnp.int32)[None]
  start = (p - plen)[:, None]  # each row's first real column
  kind = jnp.where(s < start, KIND_PAD, jnp.where(s < p, KIND_PROMPT, jnp.where(
      s < p + out.lengths[:, None], KIND_GEN, KIND_PAD))).astype(jnp.int32)
  return ArithRollout(tokens=jnp.concatenate([prompts, out.tokens], axis=1), kind=kind,
                      positions=jnp.maximum(s - start, 0), lengths=out.lengths, stop_reason=out.stop_reason,
                      logprobs=out.logprobs, gen_width=t)


def rewards(acfg: ArithConfig, table: DigitTable, ro: ArithRollout, batch: ArithBatch) -> jax.Array:
  """[B] the peer's reward: the completion before its EOS contains the digits of a + b."""
  g = acfg.group_size
  comp = ro.completion
  valid = (jnp.arange(comp.shape[1])[None] < ro.lengths[:, None]) & (comp != acfg.eos_id)
  gold = jnp.repeat(jnp.asarray(batch.gold, jnp.int32), g, axis=0)
  gold_len = jnp.repeat(jnp.asarray(batch.gold_len, jnp.int32), g, axis=0)
  return contains_gold(table, comp, valid, gold, gold_len)


def completion_tokens(acfg: ArithConfig, ro: ArithRollout) -> jax.Array:
  """Generated tokens with EOS excluded (what the peer counts: Tunix's tokens before EOS)."""
  return (ro.lengths - (ro.stop_reason == sampling.STOP_EOS)).sum()


def completion_logprobs(cfg: ModelConfig, params, ro: ArithRollout) -> jax.Array:
  """[B, T] log p(completion token t | prompt, tokens < t) under `params` (raw model, fp32).

  grpo.token_logprobs's quantity on the completion columns only: one forward over the rows, the
  LM head and the log-softmax only at the T positions that predict a completion token (the prompt
  positions' logits are never needed: nothing there is trained)."""
  seg = (ro.kind != KIND_PAD).astype(jnp.int32)
  h, _ = transformer.hidden_states(cfg, params, ro.tokens, ro.positions, seg)
  p = ro.prompt_width
  logits = transformer.lm_head(cfg, params, h[:, p - 1:-1])
  gold = jnp.take_along_axis(logits, ro.tokens[:, p:, None], axis=-1)[..., 0]
  return gold - jax.nn.logsumexp(logits, axis=-1)


def _chunk(x, k: int):
  """[B, ...] -> [k, B/k, ...], chunk j = rows j::k (with rows split over devices, every device
  keeps its own rows in every chunk, as train/step.py's micro-batches)."""
  return x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1)


def _agg_weight(aggregation: str, gen: jax.Array) -> jax.Array:
  """What one chunk's aggregate counts for: its trained tokens (token_mean) or its rows with any
  (sequence_mean). A chunk's loss times its weight, summed and divided by the total weight, is the
  whole batch's aggregate."""
  if aggregation == "token_mean":
    return gen.sum().astype(jnp.float32)
  if aggregation == "sequence_mean":
    return (gen.sum(axis=1) > 0).sum().astype(jnp.float32)
  raise ValueError(f"no chunked form for aggregation {aggregation!r}")


def loss_and_grads(cfg: ModelConfig, acfg: ArithConfig, params, ref_params, ro: ArithRollout,
                   adv: jax.Array) -> tuple[jax.Array, dict, Any]:
  """The GRPO loss of the whole batch and its gradient, over `acfg.update_chunks` row chunks.

  Each chunk runs the reference pass and the policy forward + backward on its rows only: the same
  arithmetic as one pass over all rows (the loss is a weighted sum of the chunks'), but the
  program's scratch memory shrinks by the chunk count. On the CPU that is the difference between
  reusing the scratch buffer every step and the allocator mapping (and the kernel zeroing, page
  by page) a fresh one: glibc maps every block over 32 MiB anew. The whole step's scratch at
  B=32, P=32, T=64 is 86 MiB in one pass (about 21k page faults, some 30 ms of system time a
  step on the 2-core host) against 21 MiB chunked by 4 (no faults)."""
  gcfg = acfg.grpo
  kind = ro.kind[:, ro.prompt_width:]  # GEN where a completion token was sampled, else PAD
  total = jnp.maximum(_agg_weight(gcfg.aggregation, kind == KIND_GEN), 1.0)

  def chunk(xs):
    r, a = xs
    k = r.kind[:, r.prompt_width:]
    w = _agg_weight(gcfg.aggregation, k == KIND_GEN) / total
    ref_logp = completion_logprobs(cfg, jax.lax.stop_gradient(ref_params), r) if gcfg.beta else None

    def loss_fn(p):
      logp = completion_logprobs(cfg, p, r)
      # one update per rollout: the "old" policy is the current one (ratio 1 in value)
      loss, aux = grpo.policy_loss(logp, jax.lax.stop_gradient(logp), ref_logp, a, k, gcfg)
      return loss * w, aux

    (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    n_tok = aux["trained_tokens"]
    return g, loss, {"kl": aux["kl"] * n_tok, "clip_fraction": aux["clip_fraction"] * n_tok, "trained_tokens": n_tok}

  n = acfg.update_chunks
  if n == 1:
    grads, loss, aux = chunk((ro, adv))
  else:
    if adv.shape[0] % n:
      raise ValueError(f"{adv.shape[0]} rows do not split into update_chunks={n}")
    xs = (jax.tree.map(functools.partial(_chunk, k=n), ro), _chunk(adv, n))

    def body(carry, x):
      g, l, a = chunk(x)
      return jax.tree.map(jnp.add, carry, (g, l, a)), None

    zeros = (jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32),
             {k: jnp.zeros((), jnp.float32) for k in ("kl", "clip_fraction", "trained_tokens")})
    (grads, loss, aux), _ = jax.lax.scan(body, zeros, xs)
  n_tok = jnp.maximum(aux["trained_tokens"], 1.0)
  aux = {"kl": aux["kl"] / n_tok, "clip_fraction": aux["clip_fraction"] / n_tok,
         "trained_tokens": aux["trained_tokens"], "pg_loss": loss}
  return loss, aux, grads


def update(cfg: ModelConfig, acfg: ArithConfig, tx, schedule, state: RLState, ro: ArithRollout,
           batch: ArithBatch, table: DigitTable, rng: jax.Array) -> tuple[RLState, dict]:
  """Rewards -> advantages -> loss -> grads -> AdamW, for one rollout."""
  r = rewards(acfg, table, ro, batch)
  adv = grpo.group_advantages(r, acfg.group_size)
  loss, aux, grads = loss_and_grads(cfg, acfg, state.params, state.ref_params, ro, adv)
  new_state, upd = step_lib.apply_update(tx, schedule, state, grads, loss, rng)
  metrics = {"reward": r.mean(), "rewards": r, "completion_tokens": completion_tokens(acfg, ro),
             "eos_fraction": (ro.stop_reason == sampling.STOP_EOS).astype(jnp.float32).mean(),
             "adv_abs": jnp.abs(adv).mean(), **aux, **upd}
  return new_state, metrics


def arith_step(cfg: ModelConfig, acfg: ArithConfig, tx, schedule, state: RLState, batch: ArithBatch,
               table: DigitTable) -> tuple[RLState, dict]:
  """The whole step (un-jitted; `make_step` jits it)."""
  rng, k_roll = jax.random.split(jax.random.wrap_key_data(state.rng))  # a fresh key every step
  ro = rollout(cfg, acfg, state.params, batch, k_roll)
  new_state, metrics = update(cfg, acfg, tx, schedule, state, ro, batch, table, rng)
  metrics["completion"] = ro.completion
  return new_state, metrics


def make_step(cfg: ModelConfig, acfg: ArithConfig, tx, schedule, mesh=None, *, donate: bool = True):
  """Jitted `(state, batch, table) -> (state, metrics)` with the state donated. With a mesh, it
  runs under it (the model's logical constraints put the rows on the batch axes)."""
  fn = jax.jit(functools.partial(arith_step, cfg, acfg, tx, schedule), donate_argnums=(0,) if donate else ())
  if mesh is None:
    return fn

  def run(state, batch, table):
    with jax.set_mesh(mesh):
      return fn(state, batch, table)

  run.jitted = fn
  return run


def make_split_step(cfg: ModelConfig, acfg: ArithConfig, tx, schedule):
  """The same step as two jitted halves, for profiling: `roll(state) -> (rng, rollout)` (the
  sampling) and `upd(state, rollout, batch, table, rng) -> (state, metrics)` (rewards, both
  log-prob passes, grads and AdamW; state donated)."""
  @jax.jit
  def roll(params, rng_data, batch):
    rng, k_roll = jax.random.split(jax.random.wrap_key_data(rng_data))
    return jax.random.key_data(rng), rollout(cfg, acfg, params, batch, k_roll)

  @functools.partial(jax.jit, donate_argnums=(0,))
  def upd(state, ro, batch, table, rng_data):
    return update(cfg, acfg, tx, schedule, state, ro, batch, table, jax.random.wrap_key_data(rng_data))

  return roll, upd


__all__ = [
  "ArithConfig",
  "ArithRollout",
  "init_state",
  "make_split_step",
  "make_step",
  "optimizer",
  "rewards",
  "rollout",
  "update",
]
