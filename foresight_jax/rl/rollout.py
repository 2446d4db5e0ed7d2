"""The multi-turn agent rollout as one pure function: sample a turn, run its tool, append the
observation to the live KV cache, sample the next turn, ... (design.md §5, step 2).

    out = rollout(cfg, params, prompts, prompt_len, key, index, tools, groups, RolloutConfig())

Inside one `lax.fori_loop` over `max_turns` (one compiled turn, not `max_turns` copies):
1. `decode` until a turn-ending token (`</search>`, `</calc>`, `</answer>` or an end-of-text id;
   the tags are single tokens) or the turn budget; rows that already answered idle;
2. the turn's ids are appended to the row's compacted trajectory (KIND_GEN);
3. a turn ending in `</search>` with a non-blank query (the ids after the turn's last `<search>`)
   is answered by the device search tool (BM25 over the policy's ids, top-k passages from the
   pre-tokenised table); `</answer>` ends the episode; anything else (no action, a cut-off
   turn, `<calc>`, which has no device tool) gets Search-R1's fixed invalid-action message, as the
   host agent (evals/agent.py) does; the observation is appended (KIND_OBS);
4. `extend` writes the turn's last token and the observation into the cache and samples the
   first token of the next turn (skipped after the last turn).
Every non-answer turn, the last one included, is followed by its observation (the grounding
reward compares each forecast with what followed).

The trajectory is written compacted (prompt first, no cache gaps) straight away: each row's
pieces go at its own offset with a per-row `dynamic_update_slice`, whole padded pieces, so the
next piece, written at offset + length, overwrites the previous piece's padding.
"""
from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from foresight_jax import sampling
from foresight_jax.models.config import ModelConfig
from foresight_jax.rl import device_search as ds
from foresight_jax.rl.layout import KIND_GEN, KIND_OBS, KIND_PAD, KIND_PROMPT
from foresight_jax.sharding import constrain


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  max_turns: int = 4
  max_turn_tokens: int = 256   # generated tokens per turn (Search-R1: 500 per response)
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0


@flax.struct.dataclass
class ToolTokens:
  """Host-built ids of one policy tokenizer that the in-graph tool loop needs (rl/tasks.py)."""
  stop_ids: jax.Array        # [n] ids that end a turn: the action closing tags and end-of-text ids
  blank: jax.Array           # [V] bool: ids whose text is whitespace only (a blank query is no query)
  invalid: jax.Array         # [Li] the invalid-action observation, wrapped like any observation
  search_open: int = flax.struct.field(pytree_node=False)
  search_close: int = flax.struct.field(pytree_node=False)
  answer_close: int = flax.struct.field(pytree_node=False)
  pad_id: int = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class Rollout:
  """Compacted trajectories (rl/layout.py) plus per-row episode facts."""
  tokens: jax.Array     # [B, S]
  kind: jax.Array       # [B, S]
  turn: jax.Array       # [B, S]
  logprobs: jax.Array   # [B, S] the sampler's raw-model log p of KIND_GEN tokens, 0 elsewhere
  length: jax.Array     # [B] tokens in the row
  n_turns: jax.Array    # [B] turns generated
  answered: jax.Array   # [B] bool: the episode ended with `</answer>`
  searches: jax.Array   # [B] device searches run
  invalid: jax.Array    # [B] turns answered with the invalid-action message


def buffer_length(prompt_width: int, rcfg: RolloutConfig, obs_width: int) -> int:
  """Tokens a compacted row may need: the prompt and max_turns (turn + observation)."""
  return prompt_width + rcfg.max_turns * (rcfg.max_turn_tokens + obs_width)


def cache_slots(prompt_width: int, rcfg: RolloutConfig, obs_width: int) -> int:
  """KV-cache slots: the prompt, then per turn its decode steps and one `extend` of obs + 1."""
  return prompt_width + rcfg.max_turns * (rcfg.max_turn_tokens + obs_width + 1)


def _put(buf: jax.Array, piece: jax.Array, offset: jax.Array) -> jax.Array:
  """Row b of `piece` written into row b of `buf` at offset[b] (whole rows, padding included)."""
  return jax.vmap(lambda r, p, o: jax.lax.dynamic_update_slice(r, p, (o,)))(buf, piece, offset)


def _pad_to(x: jax.Array, width: int, value) -> jax.Array:
  return jnp.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=value)


def turn_query(gen: jax.Array, glen: jax.Array, tools: ToolTokens) -> tuple[jax.Array, jax.Array]:
  """The query of each row's turn (gen [B, N], its first glen [B] ids): a [B, N] mask of the ids
  strictly between the turn's last `<search>` and its last id, and [B] whether one of them is
  not blank (a blank query is no query). host_tools._turn_action is the same rule on lists."""
  j = jnp.arange(gen.shape[1], dtype=jnp.int32)[None, :]
  inside = j < glen[:, None]
  open_pos = jnp.max(jnp.where(inside & (gen == tools.search_open), j, -1), axis=1)
  mask = (j > open_pos[:, None]) & (j < glen[:, None] - 1) & (open_pos[:, None] >= 0)
  return mask, jnp.any(mask & ~tools.blank[gen], axis=1)


def rollout(cfg: ModelConfig, params, prompts: jax.Array, prompt_len: jax.Array, key: jax.Array,
            index: ds.DeviceIndex, tools: ToolTokens, groups: jax.Array | None,
            rcfg: RolloutConfig = RolloutConfig()) -> Rollout:
  """Play every row for up to `rcfg.max_turns` turns with the device search tool. prompts
  [B, P] LEFT-padded (what `sampling.prefill` takes), prompt_len [B]; groups [B] picks each
  row's corpus in the index (None: the whole index)."""
  b, p = prompts.shape
  n = rcfg.max_turn_tokens
  obs_w = max(index.max_obs_tokens, tools.invalid.shape[0])
  s = buffer_length(p, rcfg, obs_w)
  width = s + max(n, obs_w)  # room for a whole padded piece at the last offset
  pad = tools.pad_id
  spec = sampling.StopSpec.make(b, eos_ids=tools.stop_ids, max_new_tokens_per_row=n)
  samp = sampling.SamplingParams.make(b, rcfg.temperature, rcfg.top_p, rcfg.top_k)
  key, k0 = jax.random.split(key)
  state = sampling.prefill(cfg, params, prompts, prompt_len, k0, samp, spec, max_new_tokens=n, pad_id=pad,
                           cache_len=cache_slots(p, rcfg, obs_w))

  # compacted prompt: row b's real tokens moved to [0, len_b)
  j = jnp.arange(p, dtype=jnp.int32)[None, :]
  src = jnp.clip(p - prompt_len[:, None] + j, 0, p - 1)
  real = j < prompt_len[:, None]
  row = lambda fill, dtype: jnp.full((b, width), fill, dtype)  # noqa: E731
  tok = row(pad, jnp.int32).at[:, :p].set(jnp.where(real, jnp.take_along_axis(prompts, src, 1), pad))
  kind = row(KIND_PAD, jnp.int32).at[:, :p].set(jnp.where(real, KIND_PROMPT, KIND_PAD))
  turn = row(-1, jnp.int32)
  logp = row(0.0, jnp.float32)
  invalid_obs = jnp.broadcast_to(_pad_to(tools.invalid[None], obs_w, pad), (b, obs_w))
  zeros = jnp.zeros((b,), jnp.int32)
  carry = (state, tok, kind, turn, logp, prompt_len.astype(jnp.int32), jnp.ones((b,), bool),
           jnp.zeros((b,), bool), zeros, zeros, zeros, key)

  def one_turn(t, carry):
    state, tok, kind, turn, logp, off, alive, answered, n_turns, searches, invalid, key = carry
    state = sampling.decode(cfg, params, state, samp, spec)
    glen = jnp.where(alive, state.lengths, 0)
    gen = jnp.where(jnp.arange(n)[None, :] < glen[:, None], state.tokens, pad)
    is_gen = jnp.arange(n)[None, :] < glen[:, None]
    tok = _put(tok, gen, off)
    kind = _put(kind, jnp.where(is_gen, KIND_GEN, KIND_PAD), off)
    turn = _put(turn, jnp.where(is_gen, t, -1), off)
    logp = _put(logp, jnp.where(is_gen, state.logprobs, 0.0), off)
    off = off + glen
    n_turns = n_turns + (glen > 0)

    last = jnp.take_along_axis(gen, jnp.maximum(glen - 1, 0)[:, None], 1)[:, 0]
    is_answer = alive & (glen > 0) & (last == tools.answer_close)
    qmask, has_query = turn_query(gen, glen, tools)
    is_search = alive & (glen > 0) & (last == tools.search_close) & has_query
    is_invalid = alive & (glen > 0) & ~is_answer & ~is_search
    found = ds.search_observation(index, gen, qmask, groups=groups)
    obs = jnp.where(is_search[:, None], _pad_to(found.obs, obs_w, pad), invalid_obs)
    obs_len = jnp.where(is_search, found.obs_len, jnp.where(is_invalid, tools.invalid.shape[0], 0))
    is_obs = jnp.arange(obs_w)[None, :] < obs_len[:, None]
    tok = _put(tok, jnp.where(is_obs, obs, pad), off)
    kind = _put(kind, jnp.where(is_obs, KIND_OBS, KIND_PAD), off)
    turn = _put(turn, jnp.where(is_obs, t, -1), off)
    logp = _put(logp, jnp.zeros_like(obs, jnp.float32), off)
    off = off + obs_len
    answered = answered | is_answer
    alive = alive & (glen > 0) & ~is_answer
    key, k_turn = jax.random.split(key)
    # after the last turn nothing is generated, so its extend (a forward over obs) is skipped
    state = jax.lax.cond(
        t + 1 < rcfg.max_turns,
        lambda st: sampling.extend(cfg, params, st, obs, obs_len, k_turn, samp, spec, active=alive),
        lambda st: st, state)
    return (state, tok, kind, turn, logp, off, alive, answered, n_turns, searches + is_search,
            invalid + is_invalid, key)

  carry = jax.lax.fori_loop(0, rcfg.max_turns, one_turn, carry)
  _, tok, kind, turn, logp, off, _, answered, n_turns, searches, invalid, _ = carry
  c = lambda x: constrain(x[:, :s], ("batch", None))  # noqa: E731
  return Rollout(tokens=c(tok), kind=c(kind), turn=c(turn), logprobs=c(logp), length=off, n_turns=n_turns,
                 answered=answered, searches=searches, invalid=invalid)


__all__ = ["Rollout", "RolloutConfig", "ToolTokens", "buffer_length", "cache_slots", "rollout", "turn_query"]
