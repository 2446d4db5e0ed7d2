"""Okapi BM25 over (title, text) documents: a pure-numpy inverted index, no scipy, no Lucene.

Scoring (Robertson/Lucene form; ranking-equivalent to Pyserini's BM25 without stemming):

  score(q, d) = sum_{t in q} qtf(t) * idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))
  idf(t)      = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Defaults k1 = 0.9, b = 0.4 are Pyserini's (tuned on MS MARCO); 1.2 / 0.75 are the textbook values.
Repeated query terms count once per occurrence (qtf), as Lucene's bag-of-words query does.

The index is CSR postings (`indptr`, `doc_ids`, `weights`) with the whole BM25 term weight
precomputed per posting, so a query is one slice-and-add per query term: for one term each doc
appears once, hence `scores[ids] += w` (no `np.add.at`) is exact.

Tokenizer: lowercase, maximal runs of [a-z0-9] (the synthetic world's search uses the same rule),
optional stopword removal with Lucene's English stop set. No stemming: deterministic and
language-agnostic beyond ASCII folding is not attempted either (non-ASCII letters split tokens).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from foresight_jax.retrieval.format import DEFAULT_TOPK, Doc, check_k

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (what Pyserini's default analyzer drops).
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split())

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str, stopwords: Iterable[str] | None = None) -> list[str]:
  toks = _TOKEN.findall(text.lower())
  if stopwords:
    stop = stopwords if isinstance(stopwords, (set, frozenset)) else frozenset(stopwords)
    toks = [t for t in toks if t not in stop]
  return toks


@dataclass(frozen=True)
class BM25Index:
  """Immutable index. `postings of term v` = rows indptr[v]:indptr[v+1] of doc_ids / weights,
  doc ids ascending within a term."""
  vocab: dict            # term -> term id
  indptr: np.ndarray     # [V + 1] int64
  doc_ids: np.ndarray    # [nnz] int32
  weights: np.ndarray    # [nnz] float32: idf * tf * (k1 + 1) / (tf + k1 * norm_d)
  idf: np.ndarray        # [V] float32
  doc_len: np.ndarray    # [N] int32 (tokens after stopword removal)
  k1: float
  b: float
  stopwords: frozenset
  title_weight: int

  @property
  def num_docs(self) -> int:
    return int(self.doc_len.shape[0])


def build_index(docs: Sequence[Doc], k1: float = 0.9, b: float = 0.4,
                stopwords: Iterable[str] | None = ENGLISH_STOPWORDS, title_weight: int = 1) -> BM25Index:
  """Index `docs` [(title, text)]. The title is indexed `title_weight` times in front of the text
  (1 = Search-R1/Pyserini's wiki-18 layout, where `contents` is the title line plus the text)."""
  if not docs:
    raise ValueError("cannot index an empty corpus")
  if k1 < 0 or not 0.0 <= b <= 1.0:
    raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1} b={b}")
  stop = frozenset(stopwords or ())
  vocab: dict[str, int] = {}
  term_ids, doc_of, tfs, lens = [], [], [], np.zeros(len(docs), np.int32)
  for d, (title, text) in enumerate(docs):
    toks = tokenize(title, stop) * title_weight + tokenize(text, stop)
    lens[d] = len(toks)
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in toks), np.int64, len(toks))
    uniq, counts = np.unique(ids, return_counts=True)
    term_ids.append(uniq)
    doc_of.append(np.full(len(uniq), d, np.int32))
    tfs.append(counts)
  term_ids = np.concatenate(term_ids)
  doc_of = np.concatenate(doc_of)
  tfs = np.concatenate(tfs).astype(np.float64)
  # stable sort by term keeps doc ids ascending inside every posting list (ties -> lower doc id)
  order = np.argsort(term_ids, kind="stable")
  term_ids, doc_of, tfs = term_ids[order], doc_of[order], tfs[order]
  n_terms = len(vocab)
  df = np.bincount(term_ids, minlength=n_terms)
  indptr = np.zeros(n_terms + 1, np.int64)
  np.cumsum(df, out=indptr[1:])
  n = len(docs)
  idf = np.log1p((n - df + 0.5) / (df + 0.5))
  avgdl = max(float(lens.mean()), 1e-9)
  norm = k1 * (1.0 - b + b * lens.astype(np.float64) / avgdl)
  weights = idf[term_ids] * tfs * (k1 + 1.0) / (tfs + norm[doc_of])
  return BM25Index(vocab=vocab, indptr=indptr, doc_ids=doc_of, weights=weights.astype(np.float32),
                   idf=idf.astype(np.float32), doc_len=lens, k1=float(k1), b=float(b), stopwords=stop,
                   title_weight=int(title_weight))


def score(index: BM25Index, query: str) -> np.ndarray:
  """BM25 score of every document for `query`: float32 [N] (0 where no query term occurs)."""
  scores = np.zeros(index.num_docs, np.float32)
  terms, counts = np.unique([index.vocab[t] for t in tokenize(query, index.stopwords)
                             if t in index.vocab], return_counts=True)
  for v, c in zip(terms.tolist(), counts.tolist()):  # sorted term order: sums are deterministic
    s, e = index.indptr[v], index.indptr[v + 1]
    scores[index.doc_ids[s:e]] += index.weights[s:e] * np.float32(c)
  return scores


def top_k_scores(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices and values of the k best scores, best first; equal scores go to the lower index
  (the same rule as `jax.lax.top_k` and the world's search, so results are reproducible)."""
  k = min(check_k(k), scores.shape[0])
  if k < scores.shape[0]:
    # threshold from a partition, then an exact sort of the few candidates >= it (ties included)
    kth = np.partition(scores, scores.shape[0] - k)[scores.shape[0] - k]
    cand = np.flatnonzero(scores >= kth)
  else:
    cand = np.arange(scores.shape[0])
  order = np.lexsort((cand, -scores[cand]))[:k]
  ids = cand[order]
  return ids, scores[ids]


def top_k(index: BM25Index, query: str, k: int = DEFAULT_TOPK) -> tuple[np.ndarray, np.ndarray]:
  """Always min(k, N) docs: when fewer docs match, zero-score docs in corpus order fill the rest,
  as a dense retriever (and the synthetic world's search) would return *something*."""
  return top_k_scores(score(index, query), k)


class BM25Retriever:
  """`Retriever` / `ScoredRetriever` over an in-memory corpus."""

  def __init__(self, docs: Sequence[Doc], **index_kwargs):
    self.docs = list(docs)
    self.index = build_index(self.docs, **index_kwargs)

  def top_k_batch(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(check_k(k), len(self.docs))
    ids = np.zeros((len(queries), k), np.int64)
    vals = np.zeros((len(queries), k), np.float32)
    for i, q in enumerate(queries):
      ids[i], vals[i] = top_k(self.index, q, k)
    return ids, vals

  def search(self, query: str, k: int = DEFAULT_TOPK) -> list[Doc]:
    ids, _ = top_k(self.index, query, k)
    return [self.docs[i] for i in ids]
