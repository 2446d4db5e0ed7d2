"""The search tool inside the fused FC-RL step (design.md §5): BM25 over the task corpus in the POLICY
tokenizer's token-id space, top-k on the device, and the Search-R1 observation assembled from
pre-tokenised pieces. Everything after `build_index` is pure jnp with fixed shapes (no host
callbacks), so a rollout's search turns stay inside one jit.

Index (built on the host with numpy by `build_index`):
  term        a token id `t` with `indexable[t]`: not a special/control id, not a foresight tag,
              and its decoded text, whitespace stripped, is neither empty nor only punctuation.
              (No stopword list: token ids have none; idf makes frequent ids nearly free.)
  doc terms   the indexable ids of the passage string `(Title: {title}) {text}`, untruncated, so
              the index counts what the observation shows; with `title_weight` w > 1 the title
              is added w - 1 more times, tokenised as " {title}" (its spelling inside the passage).
  doc length  the number of doc terms, repeats included.
  score       bm25.py's form; query ids count once per distinct id, as World.search does:
                score(q, d) = sum_{t in set(q)} idf[t] * M[d, t]
                idf[t]      = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
                M[d, t]     = tf * (k1 + 1) / (tf + k1 * (1 - b + b * len_d / avgdl))
  storage     idf [V] and M [D, V]: dense float32 when D * V <= dense_limit (default 2^26
              elements, 256 MiB), else a BCOO (10,033 wiki leads x 49k ids would be 2 GB dense;
              the BCOO is 12 bytes per nonzero). Dense wins wherever it fits: on 2 shared CPU cores,
              10,033 leads x 2048 ids, 32 queries, dense (82 MB) ~20 ms vs BCOO (12 MB) ~100 ms,
              since the BCOO product gathers B x nnz scattered weights while the dense one streams
              M once. A padded per-doc (term id, weight) table lost to the BCOO (260 ms vs 90 ms,
              10,033 leads x 8000 ids): rows pad to the longest lead's 296 distinct ids against an
              average of 86; a hand-written gather + segment_sum over the BCOO arrays tied it.

Observation: the ids of render_observation(format_docs(docs)) built as the concatenation of
separately tokenised pieces
    "\\n\\n<information>"  "Doc 1"  P_1  " Doc 2"  P_2 ...  " Doc k"  P_k  "</information>\\n\\n"
where P_i is row doc_i of the passage table (`(Title: t) x`, truncated to Lp tokens). These ids
need not equal tokenising the whole string at once (a BPE merge never crosses a piece boundary),
but they decode to exactly the host text (for untruncated passages): our tokenizers decode ids to
their bytes (byte-level BPE; sentencepiece with byte fallback and no dummy prefix). Observation
ids are read by the policy, never trained on, so the split is harmless; `build_index` checks that
each fixed piece decodes to its own text.

Sharding: query rows follow the mesh's batch axes (`constrain(x, ("batch", None))`); the index is
replicated (pass it as a jit argument; nothing in it is sharded).
"""
from __future__ import annotations

import unicodedata
from typing import Any, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse

from foresight_jax.data.render import render_observation
from foresight_jax.data.world import format_docs
from foresight_jax.sharding import constrain
from foresight_jax.tokenizer.tokens import FORESIGHT_TOKENS

DEFAULT_DENSE_LIMIT = 1 << 26  # D * V elements (256 MiB of float32) above which M is stored sparse
OBS_OPEN, OBS_CLOSE = "<information>", "</information>"
_OTHER_GROUP = -1e30  # the score of a doc outside the row's group
_HIGHEST = jax.lax.Precision.HIGHEST  # GPUs would otherwise score in TF32 and reorder near-ties


@flax.struct.dataclass
class DeviceIndex:
  """A BM25 index plus the observation material, as device arrays (replicate it on a mesh)."""

  idf: jax.Array            # [V] float32; 0 for ids that are not terms
  indexable: jax.Array      # [V] bool: which ids are terms
  matrix: Any               # M [D, V] float32: a jax.Array (dense) or a sparse.BCOO (sparse)
  passages: jax.Array       # [D, Lp] int32 `(Title: t) x` ids, pad_id after passage_len
  passage_len: jax.Array    # [D] int32
  pieces: jax.Array         # [P] int32: prefix, "Doc 1", " Doc 2", ..., " Doc topk", suffix
  doc_group: jax.Array      # [D] int32: a search with `groups` only sees docs of the row's group
  piece_start: tuple = flax.struct.field(pytree_node=False)  # where each piece starts in `pieces`
  piece_len: tuple = flax.struct.field(pytree_node=False)    # topk + 2 lengths
  num_docs: int = flax.struct.field(pytree_node=False)
  vocab_size: int = flax.struct.field(pytree_node=False)
  topk: int = flax.struct.field(pytree_node=False)            # most docs an observation shows
  max_obs_tokens: int = flax.struct.field(pytree_node=False)  # Lobs: observation width
  pad_id: int = flax.struct.field(pytree_node=False)
  layout: str = flax.struct.field(pytree_node=False)          # "dense" | "sparse"
  nnz: int = flax.struct.field(pytree_node=False)             # nonzeros of M

  def index_bytes(self) -> int:
    """Device bytes of the scoring index (idf, indexable, M)."""
    return sum(int(x.nbytes) for x in jax.tree.leaves((self.idf, self.indexable, self.matrix)))

  def passage_bytes(self) -> int:
    """Device bytes of the observation material (passage table, lengths, pieces)."""
    return sum(int(x.nbytes) for x in (self.passages, self.passage_len, self.pieces))


class SearchResult(NamedTuple):
  doc_ids: jax.Array   # [B, k] int32, best first
  scores: jax.Array    # [B, k] float32
  obs: jax.Array       # [B, Lobs] int32 observation ids, pad_id after obs_len
  obs_len: jax.Array   # [B] int32


# --------------------------------------------------------------------------------------------------
# Host side: building the index
# --------------------------------------------------------------------------------------------------


def passage_text(title: str, text: str) -> str:
  """One doc as format_docs writes it after "Doc i"."""
  return f"(Title: {title}) {text}"


def _has_content(text: str) -> bool:
  s = text.strip()
  return bool(s) and not all(unicodedata.category(c).startswith("P") for c in s)


def indexable_ids(tokenizer) -> np.ndarray:
  """[V] bool: ids that are BM25 terms (see the module docstring)."""
  drop = set(tokenizer.special_ids) | {tokenizer.pad_id, *tokenizer.eos_ids}
  if tokenizer.bos_id is not None:
    drop.add(tokenizer.bos_id)
  for tag in FORESIGHT_TOKENS:  # tags carry structure, not content
    ids = tokenizer.encode(tag)
    if len(ids) == 1:
      drop.add(ids[0])
  v = tokenizer.vocab_size
  return np.array([i not in drop and _has_content(tokenizer.decode([i])) for i in range(v)], bool)


def observation_pieces(tokenizer, topk: int, affixes: tuple[str, str] | None = None) -> list[list[int]]:
  """Ids of [prefix, "Doc 1", " Doc 2", ..., " Doc topk", suffix]; raises ValueError when the
  tokenizer lacks the information tags as single tokens or cannot decode a piece back exactly.

  `affixes` (prefix, suffix) replace render_observation's "\n\n<information>" and
  "</information>\n\n", e.g. with a chat template's end-of-turn + tool header before the
  `<information>` tag (the observation as a chat-formatted policy reads it); they must contain
  the information tags."""
  for tag in (OBS_OPEN, OBS_CLOSE):
    if len(tokenizer.encode(tag)) != 1:
      raise ValueError(f"the tokenizer must encode {tag!r} as a single token (it gives "
                       f"{len(tokenizer.encode(tag))} ids; vocab_size={tokenizer.vocab_size}); "
                       "add the foresight tags first (Tokenizer.add_special_tokens(FORESIGHT_TOKENS))")
  prefix, suffix = _observation_affixes()
  if affixes is not None and (OBS_OPEN not in affixes[0] or OBS_CLOSE not in affixes[1]):
    raise ValueError(f"observation affixes {affixes!r} must hold {OBS_OPEN} and {OBS_CLOSE}")
  heads = [("" if i == 1 else " ") + f"Doc {i}" for i in range(1, topk + 1)]
  texts = [prefix, *heads, suffix]
  # the layout is owned by render_observation/format_docs: fail loudly if it ever drifts from ours
  sample = [(f"T{i}", f"x{i}") for i in range(1, topk + 1)]
  ours = prefix + "".join(h + passage_text(*d) for h, d in zip(heads, sample)) + suffix
  if ours != render_observation(format_docs(sample)):
    raise RuntimeError("render_observation/format_docs changed layout; update device_search pieces")
  if affixes is not None:
    texts = [affixes[0], *heads, affixes[1]]
  ids = [tokenizer.encode(t) for t in texts]
  for t, i in zip(texts, ids):
    if tokenizer.decode(i) != t:
      raise ValueError(f"the tokenizer does not decode {t!r} back exactly (gives "
                       f"{tokenizer.decode(i)!r}); device observations would not match the text")
  return ids


def _observation_affixes() -> tuple[str, str]:
  """(prefix, suffix) around format_docs's text, read off render_observation itself."""
  marker = "\x00"
  prefix, suffix = render_observation(marker).split(marker)
  return prefix, suffix


def _doc_terms(passage_ids, title_ids, title_weight: int, indexable: np.ndarray) -> list[np.ndarray]:
  out = []
  for d, p in enumerate(passage_ids):
    ids = np.asarray(list(p) + list(title_ids[d]) * (title_weight - 1), np.int64)
    out.append(ids[indexable[ids]])
  return out


def bm25_matrix(terms: Sequence[np.ndarray], vocab_size: int, k1: float, b: float):
  """(rows, cols, values of M, idf [V], doc lengths) from each doc's term ids, float64."""
  lens = np.array([len(t) for t in terms], np.float64)
  rows, cols, tfs = [], [], []
  for d, t in enumerate(terms):
    u, c = np.unique(t, return_counts=True)  # sorted ids: the BCOO indices come out sorted
    rows.append(np.full(len(u), d, np.int64))
    cols.append(u)
    tfs.append(c.astype(np.float64))
  rows, cols, tfs = np.concatenate(rows), np.concatenate(cols), np.concatenate(tfs)
  n = len(terms)
  df = np.bincount(cols, minlength=vocab_size)
  idf = np.log1p((n - df + 0.5) / (df + 0.5))
  avgdl = max(float(lens.mean()), 1e-9)
  norm = k1 * (1.0 - b + b * lens / avgdl)
  vals = tfs * (k1 + 1.0) / (tfs + norm[rows])
  return rows, cols, vals, idf, lens


def _passage_table(passage_ids, max_tokens: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  lens = np.array([min(len(p), max_tokens) for p in passage_ids], np.int32)
  table = np.full((len(passage_ids), max(int(lens.max()), 1)), pad_id, np.int32)
  for d, p in enumerate(passage_ids):
    table[d, :lens[d]] = p[:lens[d]]
  return table, lens


def build_index(docs: Sequence[tuple[str, str]], tokenizer, *, k1: float = 0.9, b: float = 0.4,
                title_weight: int = 1, max_passage_tokens: int = 256, topk: int = 3,
                dense_limit: int = DEFAULT_DENSE_LIMIT, max_obs_tokens: int | None = None,
                affixes: tuple[str, str] | None = None,
                doc_groups: Sequence[int] | None = None) -> DeviceIndex:
  """Index [(title, text)] docs in `tokenizer`'s id space (see the module docstring).

  `max_passage_tokens` truncates each passage in the table (not in the index); `topk` is the most
  docs an observation shows; `max_obs_tokens` fixes the observation width Lobs (default: the
  longest possible, the fixed pieces plus the `topk` longest passages). `affixes`: see
  `observation_pieces`. `doc_groups` [D]: one int per doc (e.g. the synthetic world it belongs
  to), so one index serves tasks of several corpora (`search(..., groups=)`). Raises ValueError for an
  empty corpus, bad parameters, a tokenizer without the information tags, or an Lobs too small.
  """
  docs = list(docs)
  if not docs:
    raise ValueError("cannot index an empty corpus (0 docs)")
  if k1 < 0 or not 0.0 <= b <= 1.0:
    raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1} b={b}")
  if title_weight < 1 or max_passage_tokens < 1 or topk < 1:
    raise ValueError(f"title_weight, max_passage_tokens and topk must be >= 1, got "
                     f"{title_weight}, {max_passage_tokens}, {topk}")
  if topk > len(docs):
    raise ValueError(f"topk={topk} exceeds the corpus size ({len(docs)} docs)")
  pieces = observation_pieces(tokenizer, topk, affixes)
  groups = np.zeros(len(docs), np.int32) if doc_groups is None else np.asarray(doc_groups, np.int32)
  if groups.shape != (len(docs),):
    raise ValueError(f"doc_groups has shape {groups.shape}, expected ({len(docs)},) (one per doc)")
  vocab, pad_id = tokenizer.vocab_size, int(tokenizer.pad_id)
  indexable = indexable_ids(tokenizer)
  passage_ids = tokenizer.encode_batch([passage_text(t, x) for t, x in docs])
  title_ids = (tokenizer.encode_batch([" " + t for t, _ in docs]) if title_weight > 1
               else [[]] * len(docs))
  terms = _doc_terms(passage_ids, title_ids, title_weight, indexable)
  rows, cols, vals, idf, _ = bm25_matrix(terms, vocab, k1, b)
  idf = np.where(indexable, idf, 0.0).astype(np.float32)

  table, lens = _passage_table(passage_ids, max_passage_tokens, pad_id)
  fixed = sum(len(p) for p in pieces)
  needed = fixed + int(np.sort(lens)[::-1][:topk].sum())
  if max_obs_tokens is None:
    max_obs_tokens = needed
  elif max_obs_tokens < needed:
    raise ValueError(
        f"max_obs_tokens={max_obs_tokens} cannot hold a {topk}-doc observation: it needs {needed} "
        f"tokens ({fixed} for the tags and 'Doc i' heads + the {topk} longest passages, each "
        f"truncated to max_passage_tokens={max_passage_tokens}, table width {table.shape[1]}); "
        "raise max_obs_tokens or lower max_passage_tokens / topk")

  layout = "dense" if len(docs) * vocab <= dense_limit else "sparse"
  if layout == "dense":
    m = np.zeros((len(docs), vocab), np.float32)
    m[rows, cols] = vals
    matrix = jnp.asarray(m)
  else:
    idx = np.stack([rows, cols], axis=1).astype(np.int32)
    matrix = sparse.BCOO((jnp.asarray(vals.astype(np.float32)), jnp.asarray(idx)),
                         shape=(len(docs), vocab), indices_sorted=True, unique_indices=True)
  starts = np.cumsum([0] + [len(p) for p in pieces])[:-1]
  return DeviceIndex(
      idf=jnp.asarray(idf), indexable=jnp.asarray(indexable), matrix=matrix,
      passages=jnp.asarray(table), passage_len=jnp.asarray(lens),
      pieces=jnp.asarray(np.array([i for p in pieces for i in p], np.int32)), doc_group=jnp.asarray(groups),
      piece_start=tuple(int(s) for s in starts), piece_len=tuple(len(p) for p in pieces),
      num_docs=len(docs), vocab_size=vocab, topk=topk, max_obs_tokens=int(max_obs_tokens),
      pad_id=pad_id, layout=layout, nnz=int(len(vals)))


def encode_queries(tokenizer, queries: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """(tokens [B, max_len] int32, mask [B, max_len] bool) of each query as the policy writes it
  inside `<search> q </search>`, i.e. the ids of " q " (truncated to max_len)."""
  ids = tokenizer.encode_batch([f" {q} " for q in queries])
  tokens = np.full((len(queries), max_len), tokenizer.pad_id, np.int32)
  mask = np.zeros((len(queries), max_len), bool)
  for r, q in enumerate(ids):
    q = q[:max_len]
    tokens[r, :len(q)] = q
    mask[r, :len(q)] = True
  return tokens, mask


# --------------------------------------------------------------------------------------------------
# Device side: pure, jittable, batched
# --------------------------------------------------------------------------------------------------


def query_terms(index: DeviceIndex, tokens: jax.Array, mask: jax.Array) -> jax.Array:
  """[B, V] float32: 1 at each distinct indexable id among the unmasked tokens (a scatter of B*L
  ones; setting the same id twice is idempotent, which is the dedup)."""
  tokens = constrain(jnp.asarray(tokens, jnp.int32), ("batch", None))
  v = index.vocab_size
  inside = (tokens >= 0) & (tokens < v)
  ok = jnp.asarray(mask, bool) & inside & index.indexable[jnp.clip(tokens, 0, v - 1)]
  cols = jnp.where(ok, tokens, v)  # out of range: dropped by the scatter
  rows = jnp.arange(tokens.shape[0])[:, None]
  q = jnp.zeros((tokens.shape[0], v), jnp.float32).at[rows, cols].set(1.0, mode="drop")
  return constrain(q, ("batch", None))


def score_docs(index: DeviceIndex, terms: jax.Array) -> jax.Array:
  """[B, D] float32 BM25 scores from `query_terms` output."""
  w = terms * index.idf[None, :]
  if index.layout == "dense":  # contract V of both: no transposed copy of M
    s = jax.lax.dot_general(w, index.matrix, (([1], [1]), ([], [])), precision=_HIGHEST)
  else:
    s = sparse.bcoo_dot_general(index.matrix, w, dimension_numbers=(([1], [1]), ([], [])),
                                precision=_HIGHEST).T
  return constrain(s, ("batch", None))


def _check_k(index: DeviceIndex, k: int | None, limit: int, what: str) -> int:
  k = index.topk if k is None else int(k)
  if not 1 <= k <= limit:
    raise ValueError(f"k={k} must be in [1, {limit}] ({what})")
  return k


def search(index: DeviceIndex, tokens: jax.Array, mask: jax.Array,
           k: int | None = None, groups: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """(doc_ids [B, k] int32, scores [B, k] float32), best first. Equal scores go to the lower doc
  index (lax.top_k's rule), so an empty query gets docs 0..k-1 with score 0, as World.search.
  `groups` [B]: row b only sees docs with doc_group == groups[b] (its own world); each group
  must hold at least k docs."""
  k = _check_k(index, k, index.num_docs, f"the corpus has {index.num_docs} docs")
  scores = score_docs(index, query_terms(index, tokens, mask))
  if groups is not None:
    # other groups' docs sink below any real score (BM25 scores are >= 0), ties stay by index
    same = index.doc_group[None, :] == jnp.asarray(groups, jnp.int32)[:, None]
    scores = jnp.where(same, scores, _OTHER_GROUP)
  s, ids = jax.lax.top_k(scores, k)
  return constrain(ids.astype(jnp.int32), ("batch", None)), constrain(s, ("batch", None))


def observation(index: DeviceIndex, doc_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(obs [B, Lobs] int32 padded with pad_id, obs_len [B] int32) for docs [B, k], k <= topk.

  Row layout: segments prefix, head_1, passage_1, ..., head_k, passage_k, suffix (2k + 2 of them);
  their lengths' cumsum gives each segment's start, and every output position finds its segment
  by counting the ends at or before it, then gathers from the passage table or the fixed pieces.
  """
  doc_ids = constrain(jnp.asarray(doc_ids, jnp.int32), ("batch", None))
  bsz, k = doc_ids.shape
  _check_k(index, k, index.topk, f"the index was built with topk={index.topk}")
  seg_count = 2 * k + 2
  plen = index.passage_len[doc_ids]                                    # [B, k]
  head_len = jnp.broadcast_to(jnp.asarray(index.piece_len[1:k + 1], jnp.int32), (bsz, k))
  mid = jnp.stack([head_len, plen], axis=-1).reshape(bsz, 2 * k)      # head_1, p_1, head_2, ...
  seg_len = jnp.concatenate([jnp.full((bsz, 1), index.piece_len[0], jnp.int32), mid,
                             jnp.full((bsz, 1), index.piece_len[-1], jnp.int32)], axis=1)
  ends = jnp.cumsum(seg_len, axis=1)                                   # [B, S]
  starts = ends - seg_len
  pos = jnp.arange(index.max_obs_tokens, dtype=jnp.int32)
  seg = jnp.sum(pos[None, :, None] >= ends[:, None, :], axis=-1)       # [B, Lobs]; S = past end
  seg_c = jnp.minimum(seg, seg_count - 1)
  off = pos[None, :] - jnp.take_along_axis(starts, seg_c, axis=1)
  # passages are the even segments 2..2k; fixed pieces: 0 -> prefix, 2i-1 -> head_i, 2k+1 -> suffix
  is_passage = (seg_c % 2 == 0) & (seg_c >= 2) & (seg_c <= 2 * k)
  which = jnp.clip(seg_c // 2 - 1, 0, k - 1)
  doc = jnp.take_along_axis(doc_ids, which, axis=1)
  lp = index.passages.shape[1]
  p_tok = index.passages[doc, jnp.clip(off, 0, lp - 1)]
  piece_of_seg = np.array([0] + [(s + 1) // 2 for s in range(1, 2 * k + 1)] + [index.topk + 1])
  start_of_seg = jnp.asarray(np.array(index.piece_start)[piece_of_seg], jnp.int32)
  f_idx = jnp.clip(start_of_seg[seg_c] + off, 0, index.pieces.shape[0] - 1)
  tok = jnp.where(is_passage, p_tok, index.pieces[f_idx])
  tok = jnp.where(seg >= seg_count, index.pad_id, tok)
  return constrain(tok, ("batch", None)), constrain(ends[:, -1], ("batch",))


def search_observation(index: DeviceIndex, tokens: jax.Array, mask: jax.Array,
                       k: int | None = None, groups: jax.Array | None = None) -> SearchResult:
  """`search` then `observation`: the whole tool call of one search turn."""
  ids, scores = search(index, tokens, mask, k, groups)
  obs, obs_len = observation(index, ids)
  return SearchResult(ids, scores, obs, obs_len)
