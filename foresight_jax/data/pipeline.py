"""grain training pipeline: trajectories -> packed [B, T] batches for `causal_lm_loss`.

    from foresight_jax.data.pipeline import PipelineConfig, make_iterator, pipeline_counts
    cfg = PipelineConfig(mode="mid_training", seq_len=2048, batch_size=8, seed=0, num_epochs=None)
    it = make_iterator("data/train.jsonl", tokenizer, cfg)   # or a list, or a tfds data source
    batch = next(it)      # {inputs, targets, loss_mask, positions, segment_ids}: [B, T]
    state = it.get_state()                # JSON-serialisable; save with the model checkpoint
    it = make_iterator(src, tokenizer, cfg); it.set_state(state)    # resumes exactly
    pipeline_counts(it)                   # Counts: examples, truncated, dropped, rejected, ...

Stages (grain dataset API, `grain.MapDataset` then `grain.IterDataset`):

  source (random access)                        pipeline_sources.py
  [shard_index::shard_count]                    per host: disjoint, covering the whole
  shuffle(seed)  -> repeat(num_epochs)          a new permutation each epoch (seed + epoch)
  map(TokenizeRecord)                           decode + render + per-segment encode + masks
  to_iter_dataset(ReadOptions(read_threads))    ordered thread prefetch (0: inline)
  LengthPolicyIterDataset                       truncate / drop over-long, counted in the state
  FirstFit/BestFitPackIterDataset(T, bins)      grain packing: segment ids 1..n, positions
  map(ShiftPackedRow)                           inputs/targets shifted within segments
  batch(B, PadBatch)                            static [B, T]; a short last batch is padded
  [mp_prefetch(worker_count)]                   worker processes (see below)

Masks (pipeline_tokenize.py): observation tokens are never trained; mode "mid_training" trains
prompt + assistant tokens, mode "sft" only assistant tokens.

Multi-host: by default host `jax.process_index()` of `jax.process_count()` reads the indices
i with i % count == index; pass shard_index / shard_count to choose explicitly. Each host then
shuffles and packs its own shard, so hosts feed their local devices without coordination.

Workers: `worker_count > 0` runs everything up to the batches in grain worker processes.
Their entry point must be importable: call from under `if __name__ == "__main__":`, with absl
flags parsed (`absl.app.run(main)`, or `flags.FLAGS.mark_as_parsed()`), and a picklable
tokenizer (our sentencepiece Tokenizer is). Tests use `worker_count=0`. Results are identical
for any worker count given the same state (grain interleaves workers deterministically), but
states are only interchangeable between runs with the same worker_count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grain

from foresight_jax.data.pipeline_pack import (BATCH_KEYS, LengthPolicyIterDataset, PadBatch,
                                              ShiftPackedRow, TokenizeRecord, batch_stats,
                                              find_counts, live_counts)
from foresight_jax.data.pipeline_sources import (JsonlSource, MemorySource, RecordSource,
                                                 open_source, to_trajectory)
from foresight_jax.data.pipeline_tokenize import (MODES, OVERLONG, Counts, check_mode,
                                                  example_targets, tokenize_trajectory)

# grain's packers (first-fit: each example goes to the first of `num_packing_bins` rows with
# room; best-fit: to the row it fills most tightly). Both emit the whole group of rows when an
# example fits in none, and checkpoint by replaying the group from the parent's saved state.
PACKERS = {name: cls for name, cls in (
    ("first_fit", getattr(grain.experimental, "FirstFitPackIterDataset", None)),
    ("best_fit", getattr(grain.experimental, "BestFitPackIterDataset", None))) if cls is not None}


@dataclass(frozen=True)
class PipelineConfig:
  mode: str = "mid_training"        # mid_training | sft
  seq_len: int = 1024               # T; also the longest example kept whole
  batch_size: int = 8               # B (per host)
  overlong: str = "truncate"        # truncate (keep the first T tokens) | drop; both counted
  packing: str = "first_fit"        # first_fit | best_fit
  num_packing_bins: int | None = None   # rows packed at once (None: 4 * batch_size)
  shuffle_bins: bool = True         # shuffle rows within a packed group (seeded)
  shuffle: bool = True
  seed: int = 0
  num_epochs: int | None = 1        # None: repeat forever
  drop_remainder: bool = False      # False: a short last batch is padded to B rows
  variant: str | None = None        # prompt instructions (None: inferred from the blocks)
  slip_rate: float = 0.0            # slip-and-recover augmentation per turn (render.slip_turns)
  add_bos: bool = True
  add_eos: bool = True
  record_field: str = "trajectory"  # JSON field of records from array_record/TFDS sources
  shard_index: int | None = None    # None: jax.process_index()
  shard_count: int | None = None    # None: jax.process_count()
  read_threads: int = 0             # thread prefetch for decode + tokenize (0: inline)
  worker_count: int = 0             # grain worker processes (0: in-process)
  worker_buffer_size: int = 2

  def __post_init__(self):
    check_mode(self.mode)
    if self.overlong not in OVERLONG:
      raise ValueError(f"overlong must be one of {OVERLONG}, got {self.overlong!r}")
    if self.packing not in PACKERS:
      raise ValueError(f"packing must be one of {sorted(PACKERS)}, got {self.packing!r}")
    if self.seq_len < 2 or self.batch_size < 1:
      raise ValueError("seq_len must be >= 2 and batch_size >= 1")
    if self.num_epochs is not None and self.num_epochs < 1:
      raise ValueError(f"num_epochs must be >= 1 or None, got {self.num_epochs}")
    if (self.shard_index is None) != (self.shard_count is None):
      raise ValueError("give both shard_index and shard_count, or neither")
    if self.shard_count is not None and not 0 <= self.shard_index < self.shard_count:
      raise ValueError(f"shard_index {self.shard_index} not in [0, {self.shard_count})")

  def shard(self) -> tuple[int, int]:
    if self.shard_count is not None:
      return self.shard_index, self.shard_count
    import jax
    return jax.process_index(), jax.process_count()


def source_dataset(source: Any, cfg: PipelineConfig) -> grain.MapDataset:
  """This host's shard of the source, shuffled per epoch and repeated (no tokenization yet)."""
  src = open_source(source, cfg.record_field)
  index, count = cfg.shard()
  ds = grain.MapDataset.source(src)
  if count > 1:
    ds = ds[index::count]
  if len(ds) == 0:
    raise ValueError(f"shard {index}/{count} of {src!r} is empty")
  if cfg.shuffle:
    ds = ds.shuffle(seed=cfg.seed)
  if cfg.num_epochs != 1:
    ds = ds.repeat(cfg.num_epochs)
  return ds


def build_pipeline(source: Any, tokenizer, cfg: PipelineConfig) -> grain.IterDataset:
  """The whole pipeline as a grain IterDataset of batches (see module doc)."""
  ds = source_dataset(source, cfg).map(
      TokenizeRecord(tokenizer, cfg.mode, cfg.variant, cfg.add_bos, cfg.add_eos,
                     cfg.record_field, cfg.slip_rate, cfg.seed))
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=cfg.read_threads,
                                            prefetch_buffer_size=max(4 * cfg.read_threads, 1)))
  ds = LengthPolicyIterDataset(ds, cfg.seq_len, cfg.overlong)
  lengths = {"tokens": cfg.seq_len, "loss_mask": cfg.seq_len}
  ds = PACKERS[cfg.packing](ds, length_struct=lengths,
                            num_packing_bins=cfg.num_packing_bins or 4 * cfg.batch_size,
                            seed=cfg.seed, shuffle_bins=cfg.shuffle_bins)
  ds = ds.map(ShiftPackedRow(tokenizer.pad_id))
  ds = ds.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder,
                batch_fn=PadBatch(cfg.batch_size, cfg.seq_len, tokenizer.pad_id))
  if cfg.worker_count > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=cfg.worker_count, per_worker_buffer_size=cfg.worker_buffer_size))
  return ds


def make_iterator(source: Any, tokenizer, cfg: PipelineConfig) -> grain.DatasetIterator:
  """A fresh iterator over batches; `get_state()` / `set_state()` checkpoint and resume it."""
  return iter(build_pipeline(source, tokenizer, cfg))


def pipeline_counts(iterator_or_state: Any) -> Counts:
  """Counts (examples, tokens, truncated, dropped, rejected) of the examples read so far.

  For an in-process iterator: everything read from the source, including the packing group
  whose rows are still being emitted (up to `num_packing_bins` rows ahead); exact totals once
  the iterator is exhausted. For a saved state (or an iterator whose stages run in worker
  processes): as of the start of the packing group being emitted; restoring that state and
  reading on recounts the group, so a resumed run's counts match an uninterrupted one's.
  """
  if hasattr(iterator_or_state, "get_state"):
    live = live_counts(iterator_or_state)
    if live is not None:
      return live
    iterator_or_state = iterator_or_state.get_state()
  return find_counts(iterator_or_state)


__all__ = [
    "BATCH_KEYS", "Counts", "JsonlSource", "MODES", "MemorySource", "PACKERS", "PipelineConfig",
    "RecordSource", "batch_stats", "build_pipeline", "example_targets", "make_iterator",
    "open_source", "pipeline_counts", "source_dataset", "to_trajectory", "tokenize_trajectory",
]
