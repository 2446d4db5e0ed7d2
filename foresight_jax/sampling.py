"""Pure autoregressive sampling: a jitted prefill plus a `lax.while_loop` decode over a KV cache.

Modelled on Tunix's `generate/sampler.py`:

* `sample(...)` is a pure function of arrays (no host sync, no Python side effects), so it can be
  called inside a larger jitted step (e.g. an RL rollout + loss) or jitted on its own.
* `prefill(...)` runs one forward over the whole left-padded prompt (cache slots [0, P)) and samples
  the first new token from the last prompt position; `decode(...)` then generates one token per
  `while_loop` step, writing the fed token at cache slot P + i - 1, and exits as soon as every row is
  done. `prefill_jit` / `decode_jit` are the jitted halves; `decode_jit` donates its state so the
  KV cache is updated in place.
* `generate(...)` is the host-level convenience: encode + left-pad, build stop specs, run the two
  jitted halves, decode to strings and truncate at stop strings.

Conventions: prompts are LEFT-padded to a common width P (pad tokens get segment 0 and are never
attended; positions count from 0 at each row's first real token), every row needs at least one real
prompt token. Generated `tokens` include the eos / stop-sequence token(s) that ended a row, `lengths`
count them, and every slot at or after a row's length holds `pad_id`. `logprobs` are the log
probabilities of the sampled tokens under the raw model distribution (fp32 logits, temperature 1, no
top-k/top-p filtering) -- the quantity an RL trainer recomputes for importance ratios.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from foresight_jax import sharding as sharding_lib
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
  """The decode loop's carry. `step` = number of tokens generated so far (token step-1 is the last)."""

  cache: dict
  tokens: jax.Array  # [B, N]
  logprobs: jax.Array  # [B, N]
  last_token: jax.Array  # [B] the token to feed next
  lengths: jax.Array  # [B]
  done: jax.Array  # [B] bool
  stop_reason: jax.Array  # [B]
  window: jax.Array  # [B, S] last S generated tokens (-1 = none yet), for stop-sequence matching
  prompt_lengths: jax.Array  # [B]
  step: jax.Array  # scalar int32
  key: jax.Array
  prompt_width: int = flax.struct.field(pytree_node=False, default=0)  # P: decode slot = P + step - 1
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


def sample_logits(logits: jax.Array, key: jax.Array, sampling: SamplingParams) -> jax.Array:
  """Pick one token per row from fp32 logits [B, V] -> int32 [B]."""
  b = logits.shape[0]
  temperature = jnp.broadcast_to(jnp.asarray(sampling.temperature, jnp.float32), (b,))
  top_p = jnp.broadcast_to(jnp.asarray(sampling.top_p, jnp.float32), (b,))
  greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)

  def draw(logits):
    # divide by 1 on greedy rows so their (unused) sampling branch stays finite
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)[:, None]
    if sampling.top_k:
      # static k: sample among the k best only; top_p then acts on this already-sorted short list
      vals, idx = jax.lax.top_k(scaled, sampling.top_k)
      vals = jnp.where(_top_p_keep_sorted(vals, top_p), vals, -jnp.inf)
      choice = jax.random.categorical(key, vals, axis=-1)
      sampled = jnp.take_along_axis(idx, choice[:, None], axis=-1)[:, 0]
    else:
      # a full-vocab sort is only paid on steps where some row actually asks for nucleus sampling
      scaled = jax.lax.cond(jnp.any(top_p < 1.0), _top_p_filter_full, lambda x, _: x, scaled, top_p)
      sampled = jax.random.categorical(key, scaled, axis=-1)
    return sampled.astype(jnp.int32)

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
  limit = jnp.minimum(jnp.asarray(stop.max_new_tokens_per_row, jnp.int32), max_new_tokens)
  is_len = (i + 1) >= limit
  # priority when several fire at once: eos, then stop sequence, then length
  reason = jnp.where(is_eos, STOP_EOS, jnp.where(is_stop, STOP_SEQUENCE, jnp.where(is_len, STOP_LENGTH, STOP_NONE)))
  stop_reason = jnp.where(active, reason, state.stop_reason)
  done = state.done | (active & (reason != STOP_NONE))
  return state.replace(tokens=constrain(tokens, ("batch", None)), logprobs=constrain(logprobs, ("batch", None)),
                       last_token=tok, lengths=lengths, done=done, stop_reason=stop_reason, window=window,
                       step=i + 1)


# --------------------------------------------------------------------------------------------------
# prefill / decode / sample
# --------------------------------------------------------------------------------------------------


def prefill(cfg: ModelConfig, params, prompt_tokens: jax.Array, prompt_lengths: jax.Array, key: jax.Array,
            sampling: SamplingParams, stop: StopSpec | None = None, *, max_new_tokens: int, pad_id: int = 0,
            cache: dict | None = None, cache_dtype=None) -> SamplerState:
  """Forward the left-padded prompt [B, P] into a fresh (or given) cache and sample token 0."""
  b, p = prompt_tokens.shape
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  stop = StopSpec.make(b) if stop is None else stop
  prompt_tokens = constrain(jnp.asarray(prompt_tokens, jnp.int32), ("batch", None))
  prompt_lengths = jnp.asarray(prompt_lengths, jnp.int32)
  if cache is None:
    # allocated inside the graph: XLA places it directly with the batch sharding below
    cache = transformer.init_cache(cfg, b, cache_length(p, max_new_tokens), cache_dtype)
  elif cache["segment"].shape[1] < p + max_new_tokens - 1:
    raise ValueError(f"cache has {cache['segment'].shape[1]} slots, need {p + max_new_tokens - 1}")
  else:
    # a reused cache: clear the segment ids so no stale slot is ever attended
    cache = {**cache, "segment": jnp.zeros_like(cache["segment"])}
  cache = constrain_cache(cfg, cache)
  positions, segments = prompt_positions(prompt_lengths, p)
  h, cache = transformer.hidden_states(cfg, params, prompt_tokens, positions, segments, cache, 0)
  # project only the last position: left padding puts every row's last real token there
  logits = transformer.lm_head(cfg, params, h[:, -1:])[:, 0]

  s = stop.stop_seqs.shape[-1]
  limit = jnp.minimum(jnp.asarray(stop.max_new_tokens_per_row, jnp.int32), max_new_tokens)
  state = SamplerState(
      cache=constrain_cache(cfg, cache),
      tokens=constrain(jnp.full((b, max_new_tokens), pad_id, jnp.int32), ("batch", None)),
      logprobs=constrain(jnp.zeros((b, max_new_tokens), jnp.float32), ("batch", None)),
      last_token=jnp.full((b,), pad_id, jnp.int32),
      lengths=jnp.zeros((b,), jnp.int32),
      done=limit <= 0,  # rows allowed no tokens at all are finished before they start
      stop_reason=jnp.where(limit <= 0, STOP_LENGTH, STOP_NONE).astype(jnp.int32),
      window=jnp.full((b, s), _NO_TOKEN, jnp.int32),
      prompt_lengths=prompt_lengths,
      step=jnp.zeros((), jnp.int32),
      key=key,
      prompt_width=p,
      pad_id=pad_id,
  )
  # fold the step into the key: token i's randomness does not depend on how the loop is split
  tok = sample_logits(logits, jax.random.fold_in(key, 0), sampling)
  return _record(state, tok, _token_logprobs(logits, tok), stop, max_new_tokens)


def decode(cfg: ModelConfig, params, state: SamplerState, sampling: SamplingParams,
           stop: StopSpec | None = None) -> SamplerState:
  """Generate until every row is done or the token buffer is full (a `lax.while_loop`)."""
  b, max_new_tokens = state.tokens.shape
  stop = StopSpec.make(b) if stop is None else stop

  def cond(st: SamplerState):
    # early exit: one global "all done" reduction per step, evaluated on device
    return (st.step < max_new_tokens) & ~jnp.all(st.done)

  # one copy of the layer weights per call instead of a per-token slice of the stacked arrays
  params = transformer.unstack_layers(params)

  def body(st: SamplerState):
    fed = st.step - 1  # index of the token being fed back
    # finished rows feed pad with segment 0: their writes are never attended by anyone
    seg = jnp.where(st.done, 0, 1).astype(jnp.int32)[:, None]
    pos = (st.prompt_lengths + fed)[:, None]
    h, cache = transformer.hidden_states(cfg, params, st.last_token[:, None], pos, seg, st.cache,
                                         st.prompt_width + fed)
    logits = transformer.lm_head(cfg, params, h)[:, 0]
    tok = sample_logits(logits, jax.random.fold_in(st.key, st.step), sampling)
    st = st.replace(cache=constrain_cache(cfg, cache))
    return _record(st, tok, _token_logprobs(logits, tok), stop, max_new_tokens)

  return jax.lax.while_loop(cond, body, state)


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
prefill_jit = jax.jit(prefill, static_argnames=("cfg", "max_new_tokens", "pad_id", "cache_dtype"),
                      donate_argnames=("cache",))
decode_jit = jax.jit(decode, static_argnames=("cfg",), donate_argnames=("state",))
sample_jit = jax.jit(sample, static_argnames=("cfg", "max_new_tokens", "pad_id", "cache_dtype"))


# --------------------------------------------------------------------------------------------------
# Host helpers
# --------------------------------------------------------------------------------------------------

DEFAULT_STOP_PREFIXES = ("", " ", "\n", "a", "A", ".", ",", "0", ")", "x ")


def stop_string_variants(encode_fn: Callable[[str], Sequence[int]], stop: str,
                         prefixes: Sequence[str] = DEFAULT_STOP_PREFIXES,
                         suffixes: Sequence[str] = ("",)) -> list[tuple[int, ...]]:
  """Token sequences whose generation means the text now contains `stop`.

  For each prefix p (and suffix q), tokenize p + stop + q and keep the tail after the longest common
  prefix with tokenize(p): those tokens decode to (a piece of p) + stop + q, so if they are the last
  generated tokens the text contains `stop` -- whatever tokens merged across the boundary. Different
  prefixes expose the different merges a BPE tokenizer makes at the stop string's left edge.
  """
  out: list[tuple[int, ...]] = []
  for pre in prefixes:
    base = list(encode_fn(pre)) if pre else []
    for suf in suffixes:
      ids = list(encode_fn(pre + stop + suf))
      n = 0
      while n < min(len(base), len(ids)) and base[n] == ids[n]:
        n += 1
      tail = tuple(int(t) for t in ids[n:])
      if tail and tail not in out:
        out.append(tail)
  return out


def make_stop_spec(encode_fn: Callable[[str], Sequence[int]],
                   stop_strings_per_row: Sequence[Sequence[str] | None] | None = None, *,
                   batch: int | None = None,
                   eos_ids: Sequence[int] | Sequence[Sequence[int]] = (),
                   stop_token_ids_per_row: Sequence[Sequence[int] | None] | None = None,
                   max_new_tokens_per_row: Sequence[int] | int | None = None,
                   prefixes: Sequence[str] = DEFAULT_STOP_PREFIXES, suffixes: Sequence[str] = ("",),
                   max_stop_len: int | None = None, pad_multiple: int = 4) -> StopSpec:
  """Build a StopSpec on the host.

  encode_fn(text) -> token ids, WITHOUT bos (e.g. `lambda s: tok.encode(s, add_bos=False)`).
  stop_strings_per_row: per row, a list of stop strings (each expanded by `stop_string_variants`).
  stop_token_ids_per_row: per row, single token ids that also stop (e.g. special tokens such as
    `<|im_end|>`), added as length-1 stop sequences.
  eos_ids: shared [E] or per-row [B][E]. Variants longer than `max_stop_len` are dropped. The n_stop
  and length dims are padded up to `pad_multiple` so similar requests share one compiled program.
  """
  if batch is None:
    for x in (stop_strings_per_row, stop_token_ids_per_row, max_new_tokens_per_row):
      if x is not None and not isinstance(x, int):
        batch = len(x)
        break
  if batch is None:
    raise ValueError("make_stop_spec: pass batch= when no per-row argument gives it")
  cache: dict[str, list[tuple[int, ...]]] = {}
  rows: list[list[tuple[int, ...]]] = []
  for r in range(batch):
    seqs: list[tuple[int, ...]] = []
    for s in (stop_strings_per_row[r] if stop_strings_per_row is not None else None) or ():
      if not s:
        continue
      if s not in cache:
        cache[s] = stop_string_variants(encode_fn, s, prefixes, suffixes)
      seqs.extend(v for v in cache[s] if v not in seqs and (max_stop_len is None or len(v) <= max_stop_len))
    for t in (stop_token_ids_per_row[r] if stop_token_ids_per_row is not None else None) or ():
      if (int(t),) not in seqs:
        seqs.append((int(t),))
    rows.append(seqs)
  n = _round_up(max((len(s) for s in rows), default=0), pad_multiple)
  s_len = _round_up(max((len(v) for s in rows for v in s), default=0), pad_multiple)
  arr = np.full((batch, n, s_len), _NO_TOKEN, np.int32)
  for r, seqs in enumerate(rows):
    for j, v in enumerate(seqs):
      arr[r, j, s_len - len(v):] = v  # right-aligned: the last token sits in the last column

  eos = list(eos_ids)
  if eos and isinstance(eos[0], (list, tuple, np.ndarray)):
    width = max(len(e) for e in eos)
    eos_arr = np.full((batch, width), _NO_TOKEN, np.int32)
    for r, e in enumerate(eos):
      eos_arr[r, :len(e)] = e
  else:
    eos_arr = np.asarray(eos, np.int32).reshape(-1)
  return StopSpec.make(batch, eos_arr, arr, max_new_tokens_per_row)


@dataclasses.dataclass
class GenerateResult:
  texts: list[str]  # decoded completions, eos dropped, cut at the first stop string
  token_ids: list[list[int]]  # generated ids per row (including the eos / stop tokens)
  logprobs: list[list[float]]  # raw-model log-prob of each generated id
  stop_reasons: list[str]  # "eos" | "stop" | "length"
  output: SampleOutput  # the device arrays (batch rows only, padding rows dropped)


def _mesh_batch_shards() -> int:
  """How many ways the current mesh splits the "batch" logical axis (1 without a mesh)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return 1
  sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
  axes = sharding_lib.logical_to_spec(("batch",))[0]
  axes = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
  return math.prod(sizes.get(a, 1) for a in axes)


def _encode(tokenizer, text: str, add_bos: bool) -> list[int]:
  return list(tokenizer.encode(text, add_bos=add_bos))


def generate(cfg: ModelConfig, params, tokenizer, prompts: Sequence[str | Sequence[int]], *,
             max_new_tokens: int = 128, temperature=0.0, top_p=1.0, top_k: int = 0,
             stop: Sequence[str] | Sequence[Sequence[str]] | None = None,
             stop_token_ids: Sequence[int] = (), eos_ids: Sequence[int] | None = None,
             max_new_tokens_per_row: Sequence[int] | None = None, key: jax.Array | int = 0,
             add_bos: bool = True, include_stop_str: bool = False, prompt_multiple: int = 32,
             gen_multiple: int = 8) -> GenerateResult:
  """Host convenience: tokenize, left-pad, sample with the jitted prefill/decode, decode to text.

  tokenizer: duck-typed `encode(text, add_bos=...)`, `decode(ids)`, `pad_id`, `eos_ids`, `bos_id`.
  stop: one list of stop strings for all rows, or one list per row. temperature / top_p: scalar or
  per-row. Prompt width and max_new_tokens are bucketed (`prompt_multiple`, `gen_multiple`) and the
  batch is padded to the mesh's batch shards, so repeated calls reuse compiled programs.
  """
  n_rows = len(prompts)
  if n_rows == 0:
    return GenerateResult([], [], [], [], SampleOutput(*(jnp.zeros((0,)),) * 4))
  pad_id = int(getattr(tokenizer, "pad_id", 0) or 0)
  encoded = [_encode(tokenizer, p, add_bos) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
  if any(len(e) == 0 for e in encoded):
    raise ValueError("every prompt needs at least one token (use add_bos=True for empty prompts)")
  if eos_ids is None:
    eos_ids = tuple(getattr(tokenizer, "eos_ids", None) or cfg.eos_token_ids)

  # pad the batch with dummy rows (limit 0: they finish immediately) so it splits over the mesh
  b = _round_up(n_rows, _mesh_batch_shards())
  width = _round_up(max(len(e) for e in encoded), prompt_multiple)
  n_gen = _round_up(max_new_tokens, gen_multiple)
  prompt = np.full((b, width), pad_id, np.int32)
  lengths = np.ones((b,), np.int32)
  for r, e in enumerate(encoded):
    prompt[r, width - len(e):] = e
    lengths[r] = len(e)

  if stop is None:
    stop_rows: list[Sequence[str] | None] = [None] * n_rows
  elif len(stop) and not isinstance(stop[0], str):
    stop_rows = [list(s) if s else None for s in stop]  # type: ignore[arg-type]
  else:
    stop_rows = [list(stop)] * n_rows  # type: ignore[list-item]
  limits = np.zeros((b,), np.int32)
  limits[:n_rows] = max_new_tokens if max_new_tokens_per_row is None else np.minimum(
      np.asarray(max_new_tokens_per_row, np.int32), max_new_tokens)
  spec = make_stop_spec(lambda s: _encode(tokenizer, s, False), stop_rows + [None] * (b - n_rows), batch=b,
                        eos_ids=tuple(eos_ids), stop_token_ids_per_row=[list(stop_token_ids)] * b,
                        max_new_tokens_per_row=limits)

  def per_row(x, fill):
    v = np.broadcast_to(np.asarray(x, np.float32), (n_rows,))
    return jnp.asarray(np.concatenate([v, np.full((b - n_rows,), fill, np.float32)]))

  # dummy rows: greedy, no nucleus (so they never trigger the full-vocab sort)
  sampling = SamplingParams(temperature=per_row(temperature, 0.0), top_p=per_row(top_p, 1.0), top_k=int(top_k))
  if isinstance(key, (int, np.integer)):
    key = jax.random.key(int(key))
  state = prefill_jit(cfg, params, jnp.asarray(prompt), jnp.asarray(lengths), key, sampling, spec,
                      max_new_tokens=n_gen, pad_id=pad_id)
  out = decode_jit(cfg, params, state, sampling, spec).output()
  out = jax.tree.map(lambda x: x[:n_rows], out)

  tokens, lens, reasons, lps = jax.device_get((out.tokens, out.lengths, out.stop_reason, out.logprobs))
  stop_strings = [list(s or ()) for s in stop_rows]
  texts, ids_out, lp_out, reason_out = [], [], [], []
  for r in range(n_rows):
    ids = [int(t) for t in tokens[r, :lens[r]]]
    ids_out.append(ids)
    lp_out.append([float(x) for x in lps[r, :lens[r]]])
    text_ids = ids[:-1] if reasons[r] == STOP_EOS else ids
    text = tokenizer.decode(text_ids)
    # exact text-level stop: cut at the earliest occurrence (the in-graph check may fire late or not)
    cut, reason = None, STOP_REASON_NAMES[int(reasons[r])]
    for s in stop_strings[r]:
      j = text.find(s) if s else -1
      if j >= 0 and (cut is None or j < cut[0]):
        cut = (j, s)
    if cut is not None:
      text = text[:cut[0] + (len(cut[1]) if include_stop_str else 0)]
      reason = "stop"
    texts.append(text)
    reason_out.append(reason)
  return GenerateResult(texts, ids_out, lp_out, reason_out, out)
