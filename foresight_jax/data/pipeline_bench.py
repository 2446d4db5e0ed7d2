"""Throughput of the grain training pipeline on synthetic-world trajectories.

    python -m foresight_jax.data.pipeline_bench --n 2000 --seq-len 4096 --batch-size 8

Trajectories are generated and given foresight blocks (variant full) and a sentencepiece
tokenizer is trained on them *before* the clock starts; the timed part is the pipeline alone
(decode, render, tokenize, mask, length policy, pack, shift, batch) over one epoch. Packed
tokens/s counts non-padding tokens of the emitted batches; `fill` is their share of the B*T
slots.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from foresight_jax.data.pipeline import PipelineConfig, batch_stats, make_iterator, pipeline_counts


def synthetic_data(n: int, seed: int = 0, variant: str = "full", vocab_size: int = 2000):
  """(trajectories with foresight blocks, tokenizer trained on their text)."""
  from foresight_jax.data.foresight import ForesightConfig, build_dataset
  from foresight_jax.data.generate import GenConfig, generate, make_worlds
  from foresight_jax.data.render import render_text
  from foresight_jax.tokenizer import train_sentencepiece
  gcfg = GenConfig(seed=seed)
  worlds = make_worlds(gcfg)
  trajs = build_dataset(list(generate(gcfg, n, worlds=worlds)), ForesightConfig(variant=variant),
                        worlds)
  tok = train_sentencepiece([render_text(t) for t in trajs[:500]], None, vocab_size=vocab_size)
  return trajs, tok


def measure(trajs, tok, cfg: PipelineConfig) -> dict:
  t0 = time.perf_counter()
  it = make_iterator(trajs, tok, cfg)
  tokens = trained = batches = 0
  slots = 0
  first = None
  for b in it:
    if first is None:
      first = time.perf_counter() - t0
    s = batch_stats(b)
    tokens += s["tokens"]
    trained += s["trained_tokens"]
    slots += b["segment_ids"].size
    batches += 1
  dt = time.perf_counter() - t0
  counts = pipeline_counts(it)
  return {"seconds": round(dt, 3), "first_batch_s": round(first or 0.0, 3), "batches": batches,
          "packed_tokens_per_s": round(tokens / dt), "trained_tokens_per_s": round(trained / dt),
          "examples_per_s": round(counts.examples / dt, 1), "fill": round(tokens / max(slots, 1), 4),
          "tokens_per_example": round(counts.tokens / max(counts.examples, 1), 1),
          "counts": counts.to_dict()}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=2000)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--vocab-size", type=int, default=2000)
  p.add_argument("--mode", default="mid_training")
  p.add_argument("--seq-len", type=int, default=4096)
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--packing", default="first_fit")
  p.add_argument("--bins", type=int, default=None)
  p.add_argument("--read-threads", type=int, default=0)
  p.add_argument("--workers", type=int, default=0)
  p.add_argument("--overlong", default="truncate")
  args = p.parse_args(argv)
  if args.workers:
    from absl import flags  # grain worker processes read absl flags
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
  t0 = time.perf_counter()
  trajs, tok = synthetic_data(args.n, args.seed, vocab_size=args.vocab_size)
  prep = time.perf_counter() - t0
  cfg = PipelineConfig(mode=args.mode, seq_len=args.seq_len, batch_size=args.batch_size,
                       packing=args.packing, num_packing_bins=args.bins, overlong=args.overlong,
                       read_threads=args.read_threads, worker_count=args.workers, seed=args.seed,
                       shard_index=0, shard_count=1)
  out = {"config": {k: v for k, v in vars(args).items()}, "prep_s": round(prep, 2),
         **measure(trajs, tok, cfg)}
  print(json.dumps(out, indent=1))
  return out


if __name__ == "__main__":
  main()
