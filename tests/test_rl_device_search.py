"""The in-graph search tool (foresight_jax/rl/device_search.py): BM25 in the policy tokenizer's id
space against a plain host reference, the observation's ids against the host text, no callbacks in
the graph, mesh == single device, and agreement with the synthetic world's own word-level search."""
import random

import jax
import jax.extend
import numpy as np
import pytest

from foresight_jax.data.generate import GenConfig, make_worlds
from foresight_jax.data.render import render_observation
from foresight_jax.data.world import RELATIONS, format_docs
from foresight_jax.rl import device_search as ds
from foresight_jax.sharding import make_mesh
from foresight_jax.tokenizer import FORESIGHT_TOKENS, train_sentencepiece

K1, B = 0.9, 0.4


# ---- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def worlds():
  return make_worlds(GenConfig(seed=0))


@pytest.fixture(scope="module")
def tok(worlds):
  return train_sentencepiece([x for _, x in worlds[0].docs], None, 2048)


@pytest.fixture(scope="module")
def dense_index(worlds, tok):
  return ds.build_index(worlds[0].docs, tok)


@pytest.fixture(scope="module")
def wiki():
  from foresight_jax.retrieval import corpora
  try:
    docs = corpora.wiki_lead_corpus()
    queries = corpora.fanoutqa_subquestions(titles={t for t, _ in docs})
  except FileNotFoundError as e:
    pytest.skip(str(e))
  return docs, queries


def _search_raw(index, tokens, mask, k):
  ids, scores = jax.jit(ds.search, static_argnames="k")(index, tokens, mask, k=k)
  return np.asarray(ids), np.asarray(scores)


def _search(index, tok, queries, k=3, max_len=64):
  return _search_raw(index, *ds.encode_queries(tok, queries, max_len), k)


# ---- the host reference: plain numpy BM25 over the same token-id statistics ----------------------

def host_bm25(docs, tok, indexable, title_weight=1, k1=K1, b=B):
  """A closure scoring a query string against every doc, written from bm25.py's docstring with
  numpy over (term, doc) pairs (float64; no code shared with the module under test)."""
  n = len(docs)
  ids = tok.encode_batch([f"(Title: {title}) {text}" for title, text in docs])
  if title_weight > 1:
    titles = tok.encode_batch([" " + title for title, _ in docs])
    ids = [p + t * (title_weight - 1) for p, t in zip(ids, titles)]
  ids = [np.array(x)[indexable[np.array(x)]] for x in ids]
  dl = np.array([len(x) for x in ids], np.float64)
  pair, tf = np.unique(np.concatenate([x * n + d for d, x in enumerate(ids)]), return_counts=True)
  term, doc = pair // n, pair % n
  df = np.bincount(term, minlength=len(indexable))
  idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
  w = idf[term] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl[doc] / dl.mean()))

  def scores(query: str) -> np.ndarray:
    q = [i for i in set(tok.encode(f" {query} ")) if indexable[i]]
    hit = np.isin(term, q)
    return np.bincount(doc[hit], weights=w[hit], minlength=n)
  return scores


def _assert_matches_host(index, tok, docs, queries, title_weight=1, k=3):
  ids, scores = _search(index, tok, queries, k)
  ref = host_bm25(docs, tok, np.asarray(index.indexable), title_weight)
  for q, row_ids, row_scores in zip(queries, ids, scores):
    s = ref(q)
    want = sorted(range(len(docs)), key=lambda d: (-s[d], d))[:k]  # ties -> lower doc index
    assert row_ids.tolist() == want, (q, row_ids, want, s[row_ids], s[want])
    np.testing.assert_allclose(row_scores, s[want], rtol=1e-5, atol=1e-5)


def _doc_phrase_queries(docs, n, seed):
  rng = random.Random(seed)
  out = []
  for _ in range(n):
    words = rng.choice(docs)[1].split()
    start = rng.randrange(len(words))
    out.append(" ".join(words[start:start + rng.randint(1, 4)]))
  return out


# ---- tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout,title_weight", [("dense", 1), ("sparse", 2)])
def test_world_topk_equals_host_bm25(worlds, tok, layout, title_weight):
  docs = worlds[0].docs
  index = ds.build_index(docs, tok, title_weight=title_weight,
                         dense_limit=ds.DEFAULT_DENSE_LIMIT if layout == "dense" else 0)
  assert index.layout == layout
  queries = _doc_phrase_queries(docs, 40, seed=1) + [t for t, _ in docs[:8]]
  _assert_matches_host(index, tok, docs, queries, title_weight)


def test_wiki_sparse_topk_equals_host_bm25(wiki):
  docs, subq = wiki
  tok8k = train_sentencepiece([x for _, x in docs], None, 8000)
  index = ds.build_index(docs, tok8k)
  assert index.layout == "sparse" and index.num_docs == len(docs) == 10033
  queries = [q for q, _ in subq[::12]]  # ~47 FanOutQA sub-questions keep this test to seconds
  _assert_matches_host(index, tok8k, docs, queries)


@pytest.mark.slow
def test_wiki_smollm2_topk_equals_host_bm25(wiki):
  from foresight_jax.assets import smollm2_gguf
  from foresight_jax.tokenizer import Tokenizer
  docs, subq = wiki
  gguf = Tokenizer.load(smollm2_gguf())
  gguf.add_special_tokens(FORESIGHT_TOKENS)
  index = ds.build_index(docs, gguf, max_passage_tokens=1024)  # no lead is truncated
  assert index.layout == "sparse" and index.vocab_size >= 49152 + len(FORESIGHT_TOKENS)
  queries = [q for q, _ in subq[::4]]
  _assert_matches_host(index, gguf, docs, queries)
  tokens, mask = ds.encode_queries(gguf, queries[:8], 48)
  r = jax.jit(ds.search_observation)(index, tokens, mask)
  for row, n, ids in zip(np.asarray(r.obs), np.asarray(r.obs_len), np.asarray(r.doc_ids)):
    assert gguf.decode(row[:n]) == render_observation(format_docs([docs[i] for i in ids]))


def test_indexable_table(tok, dense_index):
  ix = np.asarray(dense_index.indexable)
  for tag in FORESIGHT_TOKENS:
    assert not ix[tok.encode(tag)[0]], tag
  for i in [*tok.special_ids, tok.pad_id, *tok.eos_ids, tok.bos_id]:
    assert not ix[i]
  for text in (" ", ".", ",", " (", ")", "\n\n", " ?!"):  # no content: whitespace, punctuation
    assert not ix[tok.encode(text)].any(), text
  words = [i for i in tok.encode(" the mayor of") if ix[i]]
  assert len(words) >= 3


def test_query_terms_dedup_and_mask(worlds, tok, dense_index):
  name = worlds[0].docs[3][0]
  tokens, mask = ds.encode_queries(tok, [name, f"{name} {name} {name}", f"{name} mayor"], 32)
  mask[2, len(tok.encode(f" {name}")):] = False  # masks out " mayor "
  q = np.asarray(jax.jit(ds.query_terms)(dense_index, tokens, mask))
  assert set(np.unique(q)) <= {0.0, 1.0}
  np.testing.assert_array_equal(q[0], q[1])
  np.testing.assert_array_equal(q[0], q[2])
  assert q[0].sum() == len({i for i in tok.encode(f" {name} ") if np.asarray(dense_index.indexable)[i]})


def test_empty_query_returns_first_docs(tok, dense_index):
  tokens, mask = ds.encode_queries(tok, ["anything", ". , ( )", "<search> </search>", "x"], 16)
  mask[0] = False  # nothing selected; the others select only punctuation, tags, invalid ids
  tokens[3, :3], mask[3, :3] = [-1, tok.vocab_size, tok.vocab_size + 7], True
  mask[3, 3:] = False
  ids, scores = _search_raw(dense_index, tokens, mask, 3)
  np.testing.assert_array_equal(ids, np.tile(np.arange(3), (4, 1)))
  np.testing.assert_array_equal(scores, 0.0)


@pytest.mark.parametrize("k", [3, 2])
def test_observation_decodes_to_host_text(worlds, tok, dense_index, k):
  docs = worlds[0].docs
  queries = _doc_phrase_queries(docs, 12, seed=2) + [""]
  tokens, mask = ds.encode_queries(tok, queries, 32)
  r = jax.jit(ds.search_observation, static_argnames="k")(dense_index, tokens, mask, k=k)
  obs, obs_len = np.asarray(r.obs), np.asarray(r.obs_len)
  assert obs.shape == (len(queries), dense_index.max_obs_tokens)
  for row, n, ids in zip(obs, obs_len, np.asarray(r.doc_ids)):
    assert tok.decode(row[:n]) == render_observation(format_docs([docs[i] for i in ids]))
    assert (row[n:] == tok.pad_id).all()


def test_truncated_passages_are_the_table_rows(worlds, tok):
  docs = worlds[0].docs
  index = ds.build_index(docs, tok, max_passage_tokens=7)
  assert index.passages.shape[1] == 7
  ids = np.array([[5, 0, 9], [1, 2, 3]], np.int32)
  obs, obs_len = map(np.asarray, jax.jit(ds.observation)(index, ids))
  pieces = ds.observation_pieces(tok, 3)
  for row, n, doc_ids in zip(obs, obs_len, ids):
    want = list(pieces[0])
    for head, d in zip(pieces[1:4], doc_ids):
      want += head + tok.encode(ds.passage_text(*docs[d]))[:7]
    want += pieces[4]
    assert row[:n].tolist() == want


def test_no_callbacks_in_graph(worlds, tok, dense_index):
  sparse_index = ds.build_index(worlds[0].docs, tok, dense_limit=0)
  tokens, mask = ds.encode_queries(tok, ["a b", "c"], 8)
  for index in (dense_index, sparse_index):
    jaxpr = jax.make_jaxpr(jax.jit(ds.search_observation))(index, tokens, mask)
    names = set(_primitives(jaxpr.jaxpr))
    assert "top_k" in names  # the walk sees inside the jit
    assert not [n for n in names if "callback" in n], names


def _primitives(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn.primitive.name
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from _primitives(sub)


def test_mesh_matches_single_device(worlds, tok, dense_index):
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (tests/conftest.py forces 8 host devices)")
  docs = worlds[0].docs
  sparse_index = ds.build_index(docs, tok, dense_limit=0)
  tokens, mask = ds.encode_queries(tok, _doc_phrase_queries(docs, 8, seed=3), 24)
  fn = jax.jit(ds.search_observation)
  for index in (dense_index, sparse_index):
    want = jax.tree.map(np.asarray, fn(index, tokens, mask))
    with jax.set_mesh(make_mesh(2, 2, 2)):
      got = fn(index, tokens, mask)
      assert len(got.obs.sharding.device_set) == 8
      got = jax.tree.map(np.asarray, got)
    for w, g in zip(want, got):
      np.testing.assert_array_equal(w, g)


def test_agrees_with_world_search(worlds, tok):
  """Expert queries ("<entity> <relation keyword>"): World.search's top-1 doc should be in the
  device top-3. Measured (sp 2048 trained on world 0's docs): 292/292 in top-3 on world 0 and on
  world 1 (unseen by the tokenizer); top-1 agreement 0.997 (world 0), 0.918 (world 1)."""
  for w, min_top1 in ((worlds[0], 0.97), (worlds[1], 0.88)):
    index = ds.build_index(w.docs, tok)
    queries = [f"{e.name} {RELATIONS[r].keyword}" for e in w.entities.values() for r in e.rel]
    row = {t: i for i, (t, _) in enumerate(w.docs)}
    top1 = np.array([row[w.search(q)[0][0]] for q in queries])
    ids, _ = _search(index, tok, queries, 3, 32)
    assert np.mean([a in r for a, r in zip(top1, ids)]) >= 0.98
    assert np.mean(top1 == ids[:, 0]) >= min_top1


def test_errors(worlds, tok, dense_index):
  docs = worlds[0].docs
  with pytest.raises(ValueError, match="empty corpus"):
    ds.build_index([], tok)
  with pytest.raises(ValueError, match=r"max_obs_tokens=50 .*needs \d+"):
    ds.build_index(docs, tok, max_obs_tokens=50)
  no_tags = train_sentencepiece([x for _, x in docs], None, 512, extra_symbols=())
  with pytest.raises(ValueError, match="<information>.*single token"):
    ds.build_index(docs, no_tags)
  tokens, mask = ds.encode_queries(tok, ["x"], 4)
  with pytest.raises(ValueError, match="k=4"):
    ds.search_observation(dense_index, tokens, mask, k=4)  # observation heads exist for topk=3
  with pytest.raises(ValueError, match=f"k={len(docs) + 1}.*{len(docs)} docs"):
    ds.search(dense_index, tokens, mask, k=len(docs) + 1)


def test_groups_restrict_each_row_to_its_own_world(worlds, tok):
  """One index over two worlds: a row with group g only retrieves world g's docs, and its top-k
  equals the top-k of an index built over world g alone (world search semantics per task)."""
  docs = worlds[0].docs + worlds[1].docs
  groups = [0] * len(worlds[0].docs) + [1] * len(worlds[1].docs)
  both = ds.build_index(docs, tok, doc_groups=groups)
  queries = _doc_phrase_queries(worlds[1].docs, 16, seed=3) + _doc_phrase_queries(worlds[0].docs, 16, seed=4)
  row_group = np.asarray([1] * 16 + [0] * 16, np.int32)
  tokens, mask = ds.encode_queries(tok, queries, 64)
  ids, _ = jax.jit(ds.search, static_argnames="k")(both, tokens, mask, k=3, groups=row_group)
  ids = np.asarray(ids)
  assert (np.asarray(groups)[ids] == row_group[:, None]).all()
  for g, rows in ((0, slice(16, 32)), (1, slice(0, 16))):
    alone = ds.build_index(worlds[g].docs, tok)
    ref, _ = _search(alone, tok, queries[rows])
    offset = 0 if g == 0 else len(worlds[0].docs)
    # BM25 statistics differ between the joint and the per-world index (idf, avgdl), so compare
    # the best doc only, which a doc-phrase query pins down
    assert (ids[rows, 0] - offset == ref[:, 0]).mean() >= 0.9
  with pytest.raises(ValueError, match="doc_groups"):
    ds.build_index(docs, tok, doc_groups=[0])


def test_chat_affixes_wrap_the_observation(worlds, tok):
  """Custom affixes (a chat template's end-of-turn and tool header) replace the raw format's
  newlines; the docs in between are unchanged."""
  pre, suf = "<|end|>\n<|tool|>\n<information>", "</information><|end|>\n<|assistant|>\n"
  index = ds.build_index(worlds[0].docs, tok, affixes=(pre, suf))
  obs, n = jax.jit(ds.observation)(index, np.asarray([[4, 0, 9]], np.int32))
  text = tok.decode([int(t) for t in np.asarray(obs)[0, :int(n[0])]])
  docs = [worlds[0].docs[i] for i in (4, 0, 9)]
  assert text == pre + format_docs(docs) + suf
  with pytest.raises(ValueError, match="must hold"):
    ds.build_index(worlds[0].docs, tok, affixes=("<|tool|>", suf))
