"""Pure autoregressive sampling: a jitted prefill, a `lax.while_loop` decode, and `extend` for
multi-turn use, all over one KV cache. No host sync, no Python side effects: every function here
can run inside a larger jitted step (the FC-RL rollout: sample -> tool -> extend -> sample ...).

Modelled on Tunix's `generate/sampler.py`:

* `prefill(...)` runs one forward over the whole left-padded prompt (cache slots [0, P)) and samples
  the first new token from the last prompt position; `decode(...)` then generates one token per
  `while_loop` step, writing the fed token at the state's cache `slot`, and exits as soon as every
  row is done. `prefill_jit` / `decode_jit` are the jitted halves; `decode_jit` donates its state so
  the KV cache is updated in place.
* `extend(...)` appends tokens that the model did not generate (a tool's observation) to the live
  cache of every row at once, then samples the first token of the next segment: the multi-turn
  rollout's "append `<information>...</information>` and keep sampling".
* The host-level `generate` (encode, left-pad, stop strings, decode to text) is in `host.py`.

Conventions: prompts are LEFT-padded to a common width P (pad tokens get segment 0 and are never
attended; positions count from 0 at each row's first real token), every row needs at least one real
prompt token. All rows write the same cache slot at each step (a shared `slot`); a row with nothing
to write (finished, or shorter than the others in `extend`) writes a pad with segment 0 there, so
its RoPE positions stay contiguous and nobody ever attends the gap. Generated `tokens` include the
eos / stop-sequence token(s) that ended a row, `lengths` count them, and every slot at or after a
row's length holds `pad_id`. The last generated token of a segment is only written to the cache by
the next `extend` (it is the first token `extend` feeds). `logprobs` are the log probabilities of the
sampled tokens under the raw model distribution (fp32 logits, temperature 1, no top-k/top-p
filtering): the quantity an RL trainer recomputes for importance ratios.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from foresight_jax.models import transformer
from foresight_jax.models.config import ModelConfig
from foresight_jax.sharding import constrain

# Stop reasons (SampleOutput.stop_reason). NONE only appears in intermediate states.
STOP_NONE = 0
STOP_EOS = 1
STOP_SEQUENCE = 2
STOP_LENGTH = 3
STOP_REASON_NAMES = {STOP_NONE: "none", STOP_EOS: "eos", STOP_SEQUENCE: "stop", STOP_LENGTH: "length"}

_NO_TOKEN = -1  # padding value in stop sequences / eos lists and the "nothing generated yet" window
_BIG = np.iinfo(np.int32).max  # "no per-row limit"


def _round_up(x: int, m: int) -> int:
  return -(-x // m) * m if m > 1 else x


# --------------------------------------------------------------------------------------------------
# Pytrees
# --------------------------------------------------------------------------------------------------


@flax.struct.dataclass
class SamplingParams:
  """How to pick each token. temperature / top_p are traced ([B] or scalar): changing them never
  recompiles. temperature <= 0 means greedy (argmax of the raw logits) for that row; top_p >= 1 means
  no nucleus filtering. top_k is static (it fixes the shape of `lax.top_k`); 0 means off."""

  temperature: Any = 1.0
  top_p: Any = 1.0
  top_k: int = flax.struct.field(pytree_node=False, default=0)

  @classmethod
  def make(cls, batch: int, temperature=1.0, top_p=1.0, top_k: int = 0) -> "SamplingParams":
    """Per-row float32 arrays [batch] from scalars or sequences."""
    t = jnp.broadcast_to(jnp.asarray(temperature, jnp.float32), (batch,))
    p = jnp.broadcast_to(jnp.asarray(top_p, jnp.float32), (batch,))
    return cls(temperature=t, top_p=p, top_k=int(top_k))


@flax.struct.dataclass
class StopSpec:
  """When each row ends (all int32, padded with -1):

  eos_ids: [B, E] (or [E] shared) token ids that end a row.
  stop_seqs: [B, n_stop, S] token sequences RIGHT-aligned (left-padded with -1); a row ends when the
    last generated tokens equal any of its rows. One stop string usually appears as several rows
    (its different tokenizations; see `make_stop_spec`). Only generated tokens are matched, never
    the prompt.
  max_new_tokens_per_row: [B] per-row cap on generated tokens (also capped by `max_new_tokens`).
  """

  eos_ids: Any
  stop_seqs: Any
  max_new_tokens_per_row: Any

  @classmethod
  def make(cls, batch: int, eos_ids: Sequence[int] | np.ndarray = (), stop_seqs: np.ndarray | None = None,
           max_new_tokens_per_row: Sequence[int] | np.ndarray | int | None = None) -> "StopSpec":
    # jnp (not np) so this also works on traced values inside a larger jitted step
    eos = jnp.asarray(eos_ids, jnp.int32)
    if eos.ndim == 1:
      eos = jnp.broadcast_to(eos[None], (batch, eos.shape[0]))
    seqs = (jnp.full((batch, 0, 0), _NO_TOKEN, jnp.int32) if stop_seqs is None
            else jnp.asarray(stop_seqs, jnp.int32))
    if max_new_tokens_per_row is None:
      lim = jnp.full((batch,), _BIG, jnp.int32)
    else:
      lim = jnp.broadcast_to(jnp.asarray(max_new_tokens_per_row, jnp.int32), (batch,))
    return cls(eos_ids=eos, stop_seqs=seqs, max_new_tokens_per_row=lim)


@flax.struct.dataclass
class SampleOutput:
  """tokens [B, N] (pad_id at and after `lengths`), lengths [B], stop_reason [B] (STOP_*),
  logprobs [B, N] (raw-model log p of each sampled token, 0 after `lengths`)."""

  tokens: jax.Array
  lengths: jax.Array
  stop_reason: jax.Array
  logprobs: jax.Array

  @property
  def finished(self) -> jax.Array:
    """[B] True where the row ended by itself (eos or stop sequence), False where truncated by length."""
    return (self.stop_reason == STOP_EOS) | (self.stop_reason == STOP_SEQUENCE)


@flax.struct.dataclass
class SamplerState:
  """The decode loop's carry. `step` = number of tokens generated in this segment (token step-1 is
  the last); a segment starts at `prefill` or `extend`."""

  cache: dict
  tokens: jax.Array  # [B, N] this segment's generated tokens
  logprobs: jax.Array  # [B, N]
  last_token: jax.Array  # [B] the token to feed next (generated, not yet in the cache)
  lengths: jax.Array  # [B]
  done: jax.Array  # [B] bool
  stop_reason: jax.Array  # [B]
  window: jax.Array  # [B, S] last S generated tokens (-1 = none yet), for stop-sequence matching
  positions: jax.Array  # [B] RoPE position of the next fed token (= real tokens in the cache so far)
  slot: jax.Array  # scalar int32: the cache slot the next fed token is written at (shared by all rows)
  step: jax.Array  # scalar int32
  key: jax.Array
  pad_id: int = flax.struct.field(pytree_node=False, default=0)

  def output(self) -> SampleOutput:
    return SampleOutput(tokens=self.tokens, lengths=self.lengths, stop_reason=self.stop_reason,
                        logprobs=self.logprobs)


# --------------------------------------------------------------------------------------------------
# In-graph pieces
# --------------------------------------------------------------------------------------------------


def prompt_positions(prompt_lengths: jax.Array, width: int) -> tuple[jax.Array, jax.Array]:
  """Positions and segment ids [B, width] for a LEFT-padded prompt batch."""
  slots = jnp.arange(width, dtype=jnp.int32)[None, :]
  start = width - prompt_lengths.astype(jnp.int32)[:, None]  # first real slot of each row
  # pads get segment 0 (never attended) and position 0; real tokens count from 0 per row
  return jnp.maximum(slots - start, 0), (slots >= start).astype(jnp.int32)


def cache_length(prompt_width: int, max_new_tokens: int, multiple: int = 8) -> int:
  """Slots needed: the prompt plus every fed-back generated token, rounded up for tidy shapes."""
  return _round_up(prompt_width + max_new_tokens, multiple)


def constrain_cache(cfg: ModelConfig, cache: dict) -> dict:
  """Pin the cache's batch dim to the mesh's batch axes (no-op without a mesh)."""
  axes = transformer.cache_logical_axes(cfg)
  return {k: constrain(v, axes[k]) for k, v in cache.items()}


def _top_p_keep_sorted(sorted_logits: jax.Array, top_p: jax.Array) -> jax.Array:
  """[B, K] keep-mask over descending logits: the smallest prefix whose mass reaches top_p."""
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs  # exclusive cumsum: a token is kept if the mass before it < p
  keep = mass_before < top_p[:, None]
  return keep.at[:, 0].set(True)  # the top token is always kept (top_p -> 0 degenerates to greedy)


def _top_p_filter_full(logits: jax.Array, top_p: jax.Array) -> jax.Array:
  """Nucleus filtering over the whole vocab: mask every logit below the row's cut-off logit."""
  sorted_logits = -jnp.sort(-logits, axis=-1)
  keep = _top_p_keep_sorted(sorted_logits, top_p)
  n_keep = jnp.sum(keep, axis=-1, keepdims=True)
  cutoff = jnp.take_along_axis(sorted_logits, n_keep - 1, axis=-1)
  # compare against the cut-off value instead of scattering back through the sort permutation
  return jnp.where(logits >= cutoff, logits, -jnp.inf)


def _argmax(x: jax.Array) -> jax.Array:
  """The first index of each row's maximum. Same token as `jnp.argmax`, which XLA:CPU lowers to a
  slow scalar loop (a variadic value/index reduce); max, then the smallest index equal to it, are
  two plain reduces."""
  m = jnp.max(x, axis=-1, keepdims=True)
  return jnp.min(jnp.where(x == m, jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape[-1]), axis=-1)


def sample_logits(logits: jax.Array, key: jax.Array, sampling: SamplingParams) -> jax.Array:
  """Pick one token per row from fp32 logits [B, V] -> int32 [B]."""
  b, v = logits.shape
  temperature = jnp.broadcast_to(jnp.asarray(sampling.temperature, jnp.float32), (b,))
  top_p = jnp.broadcast_to(jnp.asarray(sampling.top_p, jnp.float32), (b,))
  greedy = _argmax(logits).astype(jnp.int32)

  def draw(logits):
    # divide by 1 on greedy rows so their (unused) sampling branch stays finite
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)[:, None]
    if sampling.top_k:
      # static k: sample among the k best only; top_p then acts on this already-sorted short list
      vals, idx = jax.lax.top_k(scaled, sampling.top_k)
      vals = jnp.where(_top_p_keep_sorted(vals, top_p), vals, -jnp.inf)
      choice = _argmax(vals + jax.random.gumbel(key, vals.shape, vals.dtype))
      return jnp.take_along_axis(idx, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
    # a full-vocab sort is only paid on steps where some row actually asks for nucleus sampling
    scaled = jax.lax.cond(jnp.any(top_p < 1.0), _top_p_filter_full, lambda x, _: x, scaled, top_p)
    # inverse-CDF draw: one uniform per row instead of a Gumbel per vocabulary entry (the
    # categorical distribution all the same; threefry over B x V runs as a rolled loop on CPU)
    c = jnp.cumsum(jnp.exp(scaled - jnp.max(scaled, axis=-1, keepdims=True)), axis=-1)
    u = jax.random.uniform(key, (b, 1), jnp.float32) * c[:, -1:]
    return jnp.minimum(jnp.sum(c <= u, axis=-1), v - 1).astype(jnp.int32)

  # all-greedy steps skip the random draw over the whole vocab (it costs as much as the argmax)
  sampled = jax.lax.cond(jnp.any(temperature > 0), draw, lambda _: greedy, logits)
  return jnp.where(temperature > 0, sampled, greedy)


def _token_logprobs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  # raw-model log-probabilities (temperature 1, unfiltered): what the RL loss recomputes
  return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), tokens[:, None], axis=-1)[:, 0]


def _match_stop(window: jax.Array, stop_seqs: jax.Array) -> jax.Array:
  """[B] whether the generated suffix `window` [B, S] ends with any of `stop_seqs` [B, n, S]."""
  valid = stop_seqs != _NO_TOKEN
  hit = jnp.all(~valid | (stop_seqs == window[:, None, :]), axis=-1) & jnp.any(valid, axis=-1)
  return jnp.any(hit, axis=-1)


def _row_limit(stop: StopSpec, max_new_tokens: int) -> jax.Array:
  """[B] the most tokens each row may generate in this segment."""
  return jnp.minimum(jnp.asarray(stop.max_new_tokens_per_row, jnp.int32), max_new_tokens)


def _record(state: SamplerState, tok: jax.Array, logprob: jax.Array, stop: StopSpec,
            max_new_tokens: int) -> SamplerState:
  """Store token number `state.step` for every still-active row and update stop bookkeeping."""
  i = state.step
  active = ~state.done
  tok = jnp.where(active, tok, state.pad_id)  # finished rows keep emitting pad
  tokens = jax.lax.dynamic_update_slice(state.tokens, tok[:, None], (0, i))
  logprobs = jax.lax.dynamic_update_slice(state.logprobs, jnp.where(active, logprob, 0.0)[:, None], (0, i))
  lengths = jnp.where(active, i + 1, state.lengths)
  window = state.window
  if window.shape[1]:
    window = jnp.where(active[:, None], jnp.concatenate([window[:, 1:], tok[:, None]], axis=1), window)
  eos = jnp.asarray(stop.eos_ids, jnp.int32)
  eos = jnp.broadcast_to(eos, (tok.shape[0], eos.shape[-1])) if eos.ndim == 1 else eos
  is_eos = jnp.any(tok[:, None] == eos, axis=-1)  # -1 padding never equals a token
  is_stop = _match_stop(window, stop.stop_seqs) if window.shape[1] else jnp.zeros_like(is_eos)
  limit = _row_limit(stop, max_new_tokens)
  is_len = (i + 1) >= limit
  # priority when several fire at once: eos, then stop sequence, then length
  reason = jnp.where(is_eos, STOP_EOS, jnp.where(is_stop, STOP_SEQUENCE, jnp.where(is_len, STOP_LENGTH, STOP_NONE)))
  stop_reason = jnp.where(active, reason, state.stop_reason)
  done = state.done | (active & (reason != STOP_NONE))
  # a finished row keeps its last generated token: `extend` feeds it first (the stop tag of a turn
  # is generated but not yet in the cache)
  return state.replace(tokens=constrain(tokens, ("batch", None)), logprobs=constrain(logprobs, ("batch", None)),
                       last_token=jnp.where(active, tok, state.last_token), lengths=lengths, done=done, stop_reason=stop_reason, window=window,
                       step=i + 1)


# --------------------------------------------------------------------------------------------------
# prefill / decode / sample
# --------------------------------------------------------------------------------------------------


def _start_segment(cfg: ModelConfig, cache: dict, logits: jax.Array, key: jax.Array, sampling: SamplingParams,
                   stop: StopSpec, *, max_new_tokens: int, pad_id: int, positions: jax.Array, slot,
                   active: jax.Array | None = None) -> SamplerState:
  """A state whose token 0 is sampled from `logits` [B, V] (each row's last fed position)."""
  b = logits.shape[0]
  s = stop.stop_seqs.shape[-1]
  limit = _row_limit(stop, max_new_tokens)
  # rows allowed no tokens at all (or not asked to continue) are finished before they start
  idle = limit <= 0 if active is None else (limit <= 0) | ~active
  state = SamplerState(
      cache=constrain_cache(cfg, cache),
      tokens=constrain(jnp.full((b, max_new_tokens), pad_id, jnp.int32), ("batch", None)),
      logprobs=constrain(jnp.zeros((b, max_new_tokens), jnp.float32), ("batch", None)),
      last_token=jnp.full((b,), pad_id, jnp.int32),
      lengths=jnp.zeros((b,), jnp.int32),
      done=idle,
      stop_reason=jnp.where(idle, STOP_LENGTH, STOP_NONE).astype(jnp.int32),
      window=jnp.full((b, s), _NO_TOKEN, jnp.int32),
      positions=positions.astype(jnp.int32),
      slot=jnp.asarray(slot, jnp.int32),
      step=jnp.zeros((), jnp.int32),
      key=key,
      pad_id=pad_id,
  )
  # fold the step into the key: token i's randomness does not depend on how the loop is split
  tok = sample_logits(logits, jax.random.fold_in(key, 0), sampling)
  return _record(state, tok, _token_logprobs(logits, tok), stop, max_new_tokens)


def prefill(cfg: ModelConfig, params, prompt_tokens: jax.Array, prompt_lengths: jax.Array, key: jax.Array,
            sampling: SamplingParams, stop: StopSpec | None = None, *, max_new_tokens: int, pad_id: int = 0,
            cache: dict | None = None, cache_dtype=None, cache_len: int | None = None) -> SamplerState:
  """Forward the left-padded prompt [B, P] into a fresh (or given) cache and sample token 0.

  `cache_len` (static) sizes a fresh cache; the default holds the prompt and one segment of
  `max_new_tokens`. A multi-turn caller sizes it for every `extend` and segment to come."""
  b, p = prompt_tokens.shape
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  stop = StopSpec.make(b) if stop is None else stop
  prompt_tokens = constrain(jnp.asarray(prompt_tokens, jnp.int32), ("batch", None))
  prompt_lengths = jnp.asarray(prompt_lengths, jnp.int32)
  need = p + max_new_tokens - 1
  if cache is None:
    n = cache_len or cache_length(p, max_new_tokens)
    if n < need:
      raise ValueError(f"cache_len={n} slots cannot hold the prompt ({p}) and {max_new_tokens} new tokens")
    # allocated inside the graph: XLA places it directly with the batch sharding below
    cache = transformer.init_cache(cfg, b, n, cache_dtype)
  elif cache["segment"].shape[1] < need:
    raise ValueError(f"cache has {cache['segment'].shape[1]} slots, need {need}")
  else:
    # a reused cache: clear the segment ids so no stale slot is ever attended
    cache = {**cache, "segment": jnp.zeros_like(cache["segment"])}
  cache = constrain_cache(cfg, cache)
  positions, segments = prompt_positions(prompt_lengths, p)
  h, cache = transformer.hidden_states(cfg, params, prompt_tokens, positions, segments, cache, 0)
  # project only the last position: left padding puts every row's last real token there
  logits = transformer.lm_head(cfg, params, h[:, -1:])[:, 0]
  return _start_segment(cfg, cache, logits, key, sampling, stop, max_new_tokens=max_new_tokens, pad_id=pad_id,
                        positions=prompt_lengths, slot=p)


def decode(cfg: ModelConfig, params, state: SamplerState, sampling: SamplingParams,
           stop: StopSpec | None = None) -> SamplerState:
  """Generate until every row is done or the token buffer is full (a `lax.while_loop`)."""
  b, max_new_tokens = state.tokens.shape
  stop = StopSpec.make(b) if stop is None else stop

  def cond(st: SamplerState):
    # early exit: one global "all done" reduction per step, evaluated on device
    return (st.step < max_new_tokens) & ~jnp.all(st.done)

  # one copy of the layer weights per call instead of a per-token slice of the stacked arrays (and,
  # with cfg.decode_fusion, the projections that share an input fused: fewer kernels per token)
  params = transformer.decode_params(cfg, params)

  def body(st: SamplerState):
    live = ~st.done
    # finished rows feed pad with segment 0: their writes are never attended by anyone
    seg = live.astype(jnp.int32)[:, None]
    h, cache = transformer.hidden_states(cfg, params, st.last_token[:, None], st.positions[:, None], seg,
                                         st.cache, st.slot)
    logits = transformer.lm_head(cfg, params, h)[:, 0]
    tok = sample_logits(logits, jax.random.fold_in(st.key, st.step), sampling)
    # only rows that really fed a token advance their position: positions count real tokens
    st = st.replace(cache=constrain_cache(cfg, cache), positions=st.positions + live, slot=st.slot + 1)
    return _record(st, tok, _token_logprobs(logits, tok), stop, max_new_tokens)

  return jax.lax.while_loop(cond, body, state)


def extend(cfg: ModelConfig, params, state: SamplerState, tokens: jax.Array, lengths: jax.Array,
           key: jax.Array, sampling: SamplingParams, stop: StopSpec | None = None, *,
           active: jax.Array | None = None) -> SamplerState:
  """Append `tokens` [B, E] (row b's first `lengths[b]`, e.g. a tool's observation) to the live
  cache and sample the first token of a new segment (same buffer size as the last one).

  Each row first feeds the token its last segment ended on (a stop tag is generated, not yet in
  the cache), then its new tokens; all rows write the same E + 1 slots, a shorter row filling the
  rest with segment-0 pads. `active` [B] bool picks the rows that generate in the new segment
  (default: rows with something to read); the others write nothing and stay done. The new
  segment's token i draws from fold_in(key, i), so pass a fresh key per segment."""
  b, e = tokens.shape
  n = state.tokens.shape[1]
  stop = StopSpec.make(b) if stop is None else stop
  lengths = jnp.asarray(lengths, jnp.int32)
  pending = state.lengths > 0  # a segment that generated anything left its last token unfed
  tokens = jnp.asarray(tokens, jnp.int32)
  pad = jnp.full((b, 1), state.pad_id, jnp.int32)
  feed = jnp.where(pending[:, None], jnp.concatenate([state.last_token[:, None], tokens], 1),
                   jnp.concatenate([tokens, pad], 1))
  # a row that generated nothing in the last segment is finished for good (nothing of it is pending)
  active = pending if active is None else jnp.asarray(active, bool) & pending
  feed_len = jnp.where(active, lengths + 1, 0)
  j = jnp.arange(e + 1, dtype=jnp.int32)[None, :]
  real = j < feed_len[:, None]
  seg = real.astype(jnp.int32)
  pos = state.positions[:, None] + j
  feed = constrain(jnp.where(real, feed, state.pad_id), ("batch", None))
  h, cache = transformer.hidden_states(cfg, params, feed, pos, seg, state.cache, state.slot)
  # each row's next token is predicted from its last real fed position
  last = jnp.take_along_axis(h, jnp.maximum(feed_len - 1, 0)[:, None, None], axis=1)
  logits = transformer.lm_head(cfg, params, last)[:, 0]
  return _start_segment(cfg, cache, logits, key, sampling, stop, max_new_tokens=n, pad_id=state.pad_id,
                        positions=state.positions + feed_len, slot=state.slot + e + 1, active=active)


def sample(cfg: ModelConfig, params, prompt_tokens: jax.Array, prompt_lengths: jax.Array, key: jax.Array,
           sampling: SamplingParams | None = None, stop: StopSpec | None = None, *, max_new_tokens: int,
           pad_id: int = 0, cache_dtype=None) -> SampleOutput:
  """Pure prefill + decode. prompt_tokens [B, P] int32 LEFT-padded, prompt_lengths [B] (>= 1).

  `stop=None` stops only at `max_new_tokens` (pass `StopSpec.make(B, eos_ids=cfg.eos_token_ids)` for
  eos). `cfg`, `max_new_tokens`, `pad_id`, `sampling.top_k` and the stop-array shapes are static;
  everything else is traced. Safe inside an outer `jax.jit` (no host sync, no side effects).
  """
  sampling = SamplingParams() if sampling is None else sampling
  state = prefill(cfg, params, prompt_tokens, prompt_lengths, key, sampling, stop,
                  max_new_tokens=max_new_tokens, pad_id=pad_id, cache_dtype=cache_dtype)
  return decode(cfg, params, state, sampling, stop).output()


# Jitted halves (Tunix style). cfg and shapes are static; the decode state -- which owns the KV cache
# -- is donated so the while_loop updates the cache buffers in place instead of copying them.
prefill_jit = jax.jit(prefill, static_argnames=("cfg", "max_new_tokens", "pad_id", "cache_dtype", "cache_len"),
                      donate_argnames=("cache",))
decode_jit = jax.jit(decode, static_argnames=("cfg",), donate_argnames=("state",))
sample_jit = jax.jit(sample, static_argnames=("cfg", "max_new_tokens", "pad_id", "cache_dtype"))
extend_jit = jax.jit(extend, static_argnames=("cfg",), donate_argnames=("state",))


