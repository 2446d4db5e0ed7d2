"""Flat dense index: corpus embedding matrix + exact inner-product top-k, as a pure JAX function.

`search(q, emb, k, n_valid, shards)` runs on device inside any jitted step (no host round trip):
a rollout can encode its `<search>` query and fetch doc ids in-graph. The corpus axis has the
logical name `"corpus"`; `RULES` maps it over every mesh axis, so each device holds N / devices
rows. Top-k is two-stage so the sharded axis is never gathered whole:

  per shard s (shard_map): q @ E_s.T -> local top-k  (no communication)
  -> [Q, S * k] candidates (tiny all-gather)         ->  global top-k

which is exactly the single-stage `lax.top_k` over all N (ties go to the lower corpus row in
both). The host wrapper `DenseRetriever` embeds the corpus with an `Encoder` and answers
`search(query, k) -> [(title, text)]`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from foresight_jax import sharding
from foresight_jax.retrieval import encoder as enc_lib
from foresight_jax.retrieval.format import DEFAULT_TOPK, Doc, check_k, to_contents

CORPUS_AXIS = "corpus"
# The index is not part of the model's parallelism plan: spread its rows over every device.
RULES = ((CORPUS_AXIS, ("data", "fsdp", "tensor")),) + sharding.RULES


def corpus_shards(mesh) -> int:
  """How many pieces the corpus axis is cut into on `mesh` (1 without a mesh)."""
  if mesh is None:
    return 1
  spec = sharding.logical_to_spec((CORPUS_AXIS,), RULES)[0]
  names = spec if isinstance(spec, tuple) else (spec,)
  return math.prod(mesh.shape[n] for n in names if n is not None)


@dataclass(frozen=True)
class DenseIndex:
  emb: jax.Array   # [N_pad, D]; N_pad a multiple of `shards`; rows >= n are zero padding
  n: int           # real corpus rows
  shards: int      # static shard count the search reshapes by


def build_index(emb: np.ndarray, mesh=None, dtype=jnp.float32) -> DenseIndex:
  """Pad the [N, D] embeddings to a multiple of the corpus shards and place them (sharded over
  `mesh` by the `"corpus"` rule, or on the default device). bf16 halves memory and bandwidth
  at a small cost in score precision."""
  emb = np.asarray(emb)
  if emb.ndim != 2 or emb.shape[0] == 0:
    raise ValueError(f"corpus embeddings must be a non-empty [N, D] matrix, got shape {emb.shape}")
  shards = corpus_shards(mesh)
  n_pad = -(-emb.shape[0] // shards) * shards
  host = np.zeros((n_pad, emb.shape[1]), jnp.dtype(dtype))
  host[:emb.shape[0]] = emb
  if mesh is None:
    arr = jnp.asarray(host)
  else:
    arr = jax.device_put(host, corpus_sharding(mesh, host.shape))
  return DenseIndex(emb=arr, n=int(emb.shape[0]), shards=shards)


def corpus_sharding(mesh, shape) -> NamedSharding:
  return sharding.logical_sharding(mesh, (CORPUS_AXIS, None), shape, rules=RULES)


def _local_top_k(q, e, k, n_valid, row0, precision):
  """Top-k of one corpus block whose first row has global index `row0`; padding rows never win."""
  s = jnp.einsum("qd,nd->qn", q.astype(e.dtype), e, precision=precision,
                 preferred_element_type=jnp.float32)
  rows = row0 + jnp.arange(e.shape[0])
  s = jnp.where(rows[None] < n_valid, s, -jnp.inf)
  v, i = jax.lax.top_k(s, min(k, e.shape[0]))
  return v, (i + row0).astype(jnp.int32)


def search(q: jax.Array, emb: jax.Array, k: int, n_valid: int | None = None, shards: int = 1,
           precision=None) -> tuple[jax.Array, jax.Array]:
  """Pure: queries [Q, D] against corpus rows [N, D] -> (scores [Q, k'], ids [Q, k'] int32), best
  first, k' = min(k, n_valid). Rows >= n_valid are padding and never returned. `k`, `n_valid`,
  `shards` are static (jit them with static_argnames).

  Under `jax.set_mesh(mesh)` with `shards == corpus_shards(mesh)` the first stage is a
  `shard_map`: each device scores and ranks only its own rows (GSPMD alone gathers the whole
  [Q, N] score matrix before a TopK). Without a mesh the same two stages run on one device."""
  N, D = emb.shape
  n_valid = N if n_valid is None else n_valid
  if N % shards or not 0 < n_valid <= N:
    raise ValueError(f"corpus of {N} rows ({n_valid} valid) does not split into {shards} shards")
  k = min(check_k(k), n_valid)
  per = N // shards
  mesh = jax.sharding.get_abstract_mesh()
  if shards == 1:
    return _local_top_k(q, emb, k, n_valid, 0, precision)
  if not mesh.empty and corpus_shards(mesh) == shards:
    axes = sharding.logical_to_spec((CORPUS_AXIS,), RULES)[0]

    def local(qq, ee):
      v, i = _local_top_k(qq, ee, k, n_valid, jax.lax.axis_index(axes) * per, precision)
      return v[:, None], i[:, None]

    v, i = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axes, None)),
                         out_specs=(P(None, axes, None), P(None, axes, None)))(q, emb)
  else:  # same blocks, one device: keeps results identical whatever the placement
    blocks = [_local_top_k(q, emb[b * per:(b + 1) * per], k, n_valid, b * per, precision)
              for b in range(shards)]
    v, i = jnp.stack([b[0] for b in blocks], 1), jnp.stack([b[1] for b in blocks], 1)
  kk = v.shape[-1]
  v, i = v.reshape(q.shape[0], shards * kk), i.reshape(q.shape[0], shards * kk)
  v2, j = jax.lax.top_k(v, k)  # candidates are in row order, so ties still go to the lower row
  return v2, jnp.take_along_axis(i, j, axis=1)


_search_jit = jax.jit(search, static_argnames=("k", "n_valid", "shards", "precision"))


def encode_and_search(params, cfg: enc_lib.EncoderConfig, ids: jax.Array, mask: jax.Array,
                      emb: jax.Array, k: int, n_valid: int | None = None, shards: int = 1):
  """Pure, fully in-graph: tokenized queries -> (scores, corpus ids). For use inside a jitted
  rollout step, where the ids then index a device-side table of passage tokens."""
  return search(enc_lib.embed(params, cfg, ids, mask), emb, k, n_valid, shards)


def passage_text(title: str, text: str) -> str:
  # what gets embedded: Search-R1/FlashRAG embed the corpus `contents` ("title"\ntext)
  return to_contents(title, text)


class DenseRetriever:
  """`Retriever` / `ScoredRetriever` over a corpus embedded with `encoder` (queries get the
  encoder's query prefix, passages its passage prefix)."""

  def __init__(self, encoder: enc_lib.Encoder, docs: Sequence[Doc], mesh=None,
               embeddings: np.ndarray | None = None, batch_size: int = 64, dtype=jnp.float32):
    self.encoder, self.docs, self.mesh = encoder, list(docs), mesh
    if embeddings is None:
      embeddings = enc_lib.encode(encoder, [passage_text(t, x) for t, x in self.docs], "passage",
                                  batch_size=batch_size)
    if len(embeddings) != len(self.docs):
      raise ValueError(f"{len(embeddings)} embeddings for {len(self.docs)} docs")
    self.embeddings = np.asarray(embeddings, np.float32)
    self.index = build_index(self.embeddings, mesh, dtype)

  def top_k_batch(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(check_k(k), self.index.n)
    if not queries:
      return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    q = enc_lib.encode(self.encoder, list(queries), "query")
    n_q = q.shape[0]
    rows = 1 << (n_q - 1).bit_length()  # pow2 query buckets: few recompiles for any batch size
    q = np.pad(q, ((0, rows - n_q), (0, 0)))
    if self.mesh is not None:
      with jax.set_mesh(self.mesh):
        v, i = _search_jit(q, self.index.emb, k, self.index.n, self.index.shards)
    else:
      v, i = _search_jit(q, self.index.emb, k, self.index.n, self.index.shards)
    return np.asarray(i)[:n_q].astype(np.int64), np.asarray(v)[:n_q]

  def search(self, query: str, k: int = DEFAULT_TOPK) -> list[Doc]:
    ids, _ = self.top_k_batch([query], k)
    return [self.docs[i] for i in ids[0]]
