"""BM25: scores equal a direct evaluation of the formula, rankings are sane, the synthetic world's
expert queries find their page, and the retriever plugs into the world's `search_fn`."""
import math
from collections import Counter

import numpy as np
import pytest

from foresight_jax.data.world import RELATIONS, World, doc_titles, extract_objects, split_docs
from foresight_jax.retrieval import bm25
from foresight_jax.retrieval.format import Retriever, format_results, from_contents, to_contents

DOCS = [
    ("Paris", "Paris is the capital and largest city of France."),
    ("Berlin", "Berlin is the capital of Germany. Berlin has many museums."),
    ("Rhine", "The Rhine is a river that flows through Germany and the Netherlands."),
    ("Louvre", "The Louvre is an art museum in Paris, the most visited museum in the world."),
    ("Python", "Python is a programming language; python code is readable."),
]


def _reference_scores(docs, query, k1, b, stop, title_weight=1):
  """The textbook formula evaluated term by term, no index (the title counted `title_weight` times)."""
  toks = [bm25.tokenize(t, stop) * title_weight + bm25.tokenize(x, stop) for t, x in docs]
  avg = sum(map(len, toks)) / len(toks)
  n = len(docs)
  out = []
  for d in toks:
    tf, s = Counter(d), 0.0
    for t in bm25.tokenize(query, stop):
      df = sum(t in e for e in toks)
      if df and tf[t]:
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        s += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(d) / avg))
    out.append(s)
  return np.array(out)


@pytest.mark.parametrize("k1,b,title_weight", [(0.9, 0.4, 1), (1.2, 0.75, 1), (0.9, 0.4, 3)])
@pytest.mark.parametrize("query", ["capital of Germany", "museum in Paris", "python python",
                                   "river Netherlands Germany", "nothing matches zzz"])
def test_scores_match_formula(query, k1, b, title_weight):
  index = bm25.build_index(DOCS, k1=k1, b=b, title_weight=title_weight)
  want = _reference_scores(DOCS, query, k1, b, bm25.ENGLISH_STOPWORDS, title_weight)
  np.testing.assert_allclose(bm25.score(index, query), want, rtol=1e-5)


def test_ranking_sanity():
  r = bm25.BM25Retriever(DOCS)
  assert isinstance(r, Retriever)
  assert r.search("capital of Germany", 1)[0][0] == "Berlin"
  assert r.search("art museum", 1)[0][0] == "Louvre"
  assert r.search("programming language", 1)[0][0] == "Python"
  assert [t for t, _ in r.search("Paris", 2)] == ["Paris", "Louvre"]  # shorter doc wins the tie on tf=1
  ids, scores = r.top_k_batch(["France capital", "river"], 3)
  assert ids.shape == scores.shape == (2, 3)
  assert ids[0, 0] == 0 and ids[1, 0] == 2
  assert np.all(np.diff(scores, axis=1) <= 0)


def test_tokenizer_and_stopwords():
  assert bm25.tokenize("The Rhine's 2nd-longest, flows!") == ["the", "rhine", "s", "2nd", "longest", "flows"]
  assert bm25.tokenize("The river of a city", bm25.ENGLISH_STOPWORDS) == ["river", "city"]
  index = bm25.build_index(DOCS)
  assert not bm25.score(index, "the of a is").any()  # stopwords only: no evidence at all


def test_top_k_fill_ties_and_bounds():
  index = bm25.build_index(DOCS)
  # one matching doc; zero-score docs fill the rest in corpus order (like the world's search)
  ids, scores = bm25.top_k(index, "Netherlands", 3)
  assert ids.tolist() == [2, 0, 1] and scores[0] > 0 and scores[1] == scores[2] == 0
  assert bm25.top_k(index, "Paris", 50)[0].shape == (5,)  # k capped at the corpus size
  s = np.array([1.0, 3.0, 3.0, 2.0, 3.0], np.float32)
  ids, vals = bm25.top_k_scores(s, 2)
  assert ids.tolist() == [1, 2] and vals.tolist() == [3.0, 3.0]  # ties -> lower index
  for bad in (0, -1, 1.5, True, "3"):
    with pytest.raises(ValueError, match="top-k"):
      bm25.top_k(index, "Paris", bad)
  with pytest.raises(ValueError, match="empty"):
    bm25.build_index([])


def test_top_k_scores_matches_argsort():
  rng = np.random.default_rng(0)
  s = rng.integers(0, 20, size=2000).astype(np.float32)  # many ties
  for k in (1, 3, 17, 2000):
    ids, _ = bm25.top_k_scores(s, k)
    assert ids.tolist() == np.argsort(-s, kind="stable")[:k].tolist()


def test_world_expert_queries_find_the_page():
  world = World(seed=0)
  r = bm25.BM25Retriever(world.docs)
  n = found = facts = 0
  for e in world.entities.values():
    for rel, obj in e.rel.items():
      query = f"{e.name} {RELATIONS[rel].keyword}"  # what the expert policy searches
      obs = world.search_text(query, k=3, search_fn=r.search)
      n += 1
      found += e.name in doc_titles(obs)
      facts += obj in extract_objects(obs, e.name, rel)
  assert n > 200 and found == n and facts == n


def test_formatting_round_trips():
  docs = DOCS[:3]
  text = format_results(docs)
  assert text.startswith("Doc 1(Title: Paris) Paris is") and "Doc 3(Title: Rhine) The Rhine" in text
  assert split_docs(text) == docs
  assert format_results(docs, k=1) == "Doc 1(Title: Paris) " + DOCS[0][1]
  assert from_contents(to_contents("A \"quoted\" title", "line one\nline two")) == \
      ("A \"quoted\" title", "line one\nline two")
