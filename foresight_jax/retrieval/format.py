"""The retriever interface the rest of the project sees, and the text layouts results travel in.

Everything that retrieves (BM25, the dense index, the HTTP client) answers `search(query, k)` with
`[(title, text)]`, the world's `SearchFn`, so a real retriever replaces the synthetic world's
lexical search with no other change (`world.search_text(q, k, search_fn=r.search)`).
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from foresight_jax.data.world import format_docs, split_docs  # one layout for the whole project

DEFAULT_TOPK = 3  # Search-R1's retrieval top-k

Doc = tuple[str, str]  # (title, text)

__all__ = ["DEFAULT_TOPK", "Doc", "Retriever", "ScoredRetriever", "format_docs", "split_docs",
           "format_results", "to_contents", "from_contents", "check_k"]


@runtime_checkable
class Retriever(Protocol):
  """Anything with `search(query, k) -> [(title, text)]`; a bound `search` is a world `SearchFn`."""

  def search(self, query: str, k: int = DEFAULT_TOPK) -> list[Doc]: ...


@runtime_checkable
class ScoredRetriever(Retriever, Protocol):
  """A retriever over an indexed corpus that also exposes row ids and scores (what the HTTP
  server needs to answer Search-R1's `/retrieve` with `"id"` and `"score"`)."""

  docs: Sequence[Doc]

  def top_k_batch(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids [len(queries), k'] int, scores [len(queries), k'] float), k' = min(k, corpus size),
    best first."""
    ...


def format_results(docs: Sequence[Doc], k: int | None = None, sep: str = " ") -> str:
  """`Doc 1(Title: t) text Doc 2(Title: t) text ...`, optionally cut to the first k docs.

  Search-R1's own client joins docs with newlines; the design's examples use spaces (`sep`)."""
  docs = list(docs) if k is None else list(docs)[:check_k(k)]
  return format_docs(docs, sep=sep)


def to_contents(title: str, text: str) -> str:
  """Search-R1's corpus field (wiki-18 jsonl `contents`): the title in double quotes, a newline,
  the text."""
  return f'"{title}"\n{text}'


def from_contents(contents: str) -> Doc:
  """Inverse of `to_contents`. Search-R1's client keeps the quotes in the title
  (`Doc 1(Title: "Aaron") ...`); we strip one pair so titles equal the corpus's."""
  title, _, text = contents.partition("\n")
  if len(title) >= 2 and title[0] == title[-1] == '"':
    title = title[1:-1]
  return title, text


def check_k(k) -> int:
  # bool is an int subclass: `True` as a top-k is a caller bug, not 1
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"top-k must be a positive integer, got {k!r}")
  return int(k)
