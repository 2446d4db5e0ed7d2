"""Host-level sampling: stop strings as token sequences, and `generate` (encode, left-pad, run the
jitted prefill + decode of `core.py`, decode to text, cut at stop strings)."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from foresight_jax import sharding as sharding_lib
from foresight_jax.models.config import ModelConfig
from foresight_jax.sampling.core import (STOP_EOS, STOP_REASON_NAMES, SampleOutput, SamplingParams, StopSpec,
                                         _NO_TOKEN, _round_up, decode_jit, prefill_jit)

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
             gen_multiple: int = 8, batch_multiple: int = 1) -> GenerateResult:
  """Host convenience: tokenize, left-pad, sample with the jitted prefill/decode, decode to text.

  tokenizer: duck-typed `encode(text, add_bos=...)`, `decode(ids)`, `pad_id`, `eos_ids`, `bos_id`.
  stop: one list of stop strings for all rows, or one list per row. temperature / top_p: scalar or
  per-row. Prompt width and max_new_tokens are bucketed (`prompt_multiple`, `gen_multiple`) and the
  batch is padded to the mesh's batch shards (and to `batch_multiple`: a caller whose batch shrinks
  call by call, like an agent loop, keeps one shape), so repeated calls reuse compiled programs.
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
  b = _round_up(_round_up(n_rows, batch_multiple), _mesh_batch_shards())
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
