"""grain stages between tokenization and the [B, T] batch: decode + tokenize map, the counted
length policy, packed-row shifting and batch padding.

Packed row layout (what `train.losses.causal_lm_loss` consumes), for a row holding examples
a (3 tokens) and b (2 tokens) with T = 7:

  tokens       a0 a1 a2 b0 b1 .  .
  segment_ids  1  1  1  2  2  0  0        0 = padding, never attended, never trained
  positions    0  1  2  0  1  0  0        restart per segment (RoPE sees each example alone)
  inputs       a0 a1 a2 b0 b1 p  p        p = tokenizer pad id
  targets      a1 a2 p  b1 p  p  p        shifted within the segment: a2 -> b0 is no target
  loss_mask    ma1 ma2 0 mb1 0 0 0        the token mask of the target; 0 where there is none

Every token of every packed example appears exactly once in `inputs` (segments contiguous, in
order), and every example token after the first appears once as a target, with its own mask.
"""
from __future__ import annotations

from typing import Any, Sequence

import grain
import numpy as np

from foresight_jax.data.pipeline_sources import RECORD_FIELD, to_trajectory
from foresight_jax.data.pipeline_tokenize import (Counts, apply_length_policy,
                                                  tokenize_trajectory)

COUNTS_KEY = "foresight_counts"
BATCH_KEYS = ("inputs", "targets", "loss_mask", "positions", "segment_ids")


class TokenizeRecord(grain.transforms.Map):
  """record -> {"tokens", "loss_mask"}, or {"rejected": message} for an invalid record (counted
  downstream, by the length policy stage, so counts travel in the iterator state)."""

  def __init__(self, tokenizer, mode: str, variant: str | None, add_bos: bool, add_eos: bool,
               field: str = RECORD_FIELD, slip_rate: float = 0.0, seed: int = 0):
    self.tokenizer, self.mode, self.variant = tokenizer, mode, variant
    self.add_bos, self.add_eos, self.field = add_bos, add_eos, field
    self.slip_rate, self.seed = slip_rate, seed

  def map(self, record: Any) -> dict[str, Any]:
    try:
      traj = to_trajectory(record, self.field)
    except ValueError as e:
      return {"rejected": str(e)[:200]}
    return tokenize_trajectory(traj, self.tokenizer, self.mode, self.variant, self.add_bos,
                               self.add_eos, slip_rate=self.slip_rate, seed=self.seed)


class _LengthPolicyIterator(grain.DatasetIterator):

  def __init__(self, parent: grain.DatasetIterator, max_len: int, overlong: str):
    super().__init__(parent)
    self._max_len, self._overlong = max_len, overlong
    self._counts = Counts()

  def __next__(self) -> dict[str, np.ndarray]:
    while True:
      element = next(self._parent)
      if "rejected" in element:
        self._counts.rejected += 1
        continue
      out = apply_length_policy(
          {"tokens": element["tokens"], "loss_mask": element["loss_mask"]}, self._max_len,
          self._overlong, self._counts)
      if out is not None:
        return out

  def get_state(self) -> dict[str, Any]:
    return {"parent": self._parent.get_state(), COUNTS_KEY: self._counts.to_dict()}

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state["parent"])
    self._counts = Counts.from_dict(state[COUNTS_KEY])


class LengthPolicyIterDataset(grain.IterDataset):
  """Truncates (or drops) examples longer than `max_len`, drops rejected records and examples
  with nothing to train on, and counts all of it in the iterator state (`COUNTS_KEY`), so the
  counts are checkpointed, restored, and come back from multiprocessing workers."""

  def __init__(self, parent: grain.IterDataset, max_len: int, overlong: str = "truncate"):
    super().__init__(parent)
    self._max_len, self._overlong = max_len, overlong

  def __iter__(self) -> _LengthPolicyIterator:
    return _LengthPolicyIterator(self._parent.__iter__(), self._max_len, self._overlong)

  def __str__(self) -> str:
    return f"LengthPolicyIterDataset(max_len={self._max_len}, overlong={self._overlong})"


def live_counts(iterator: Any) -> Counts | None:
  """Sum of the live counts of every length-policy stage reachable from an in-process iterator
  (None if there is none, e.g. when the stages run in worker processes)."""
  found, total, stack, seen = False, Counts(), [iterator], set()
  while stack:
    it = stack.pop()
    if id(it) in seen:
      continue
    seen.add(id(it))
    if isinstance(it, _LengthPolicyIterator):
      found, total = True, total + it._counts
    stack.extend(getattr(it, "_parents", ()))
  return total if found else None


def find_counts(state: Any) -> Counts:
  """Sum of every length-policy stage's counts found in a pipeline state (one per worker with
  multiprocessing). A state holds the counts as of the start of the packing group being
  emitted (grain's packer restores by replaying that group, which recounts it)."""
  total = Counts()
  stack = [state]
  while stack:
    s = stack.pop()
    if isinstance(s, dict):
      if COUNTS_KEY in s:
        total = total + Counts.from_dict(s[COUNTS_KEY])
      stack.extend(v for k, v in s.items() if k != COUNTS_KEY)
    elif isinstance(s, (list, tuple)):
      stack.extend(s)
    elif isinstance(s, (str, bytes)) and s[:1] in ("{", b"{"):
      import json  # multiprocessing iterators may keep worker states as JSON strings
      try:
        stack.append(json.loads(s))
      except ValueError:
        pass
  return total


class ShiftPackedRow(grain.transforms.Map):
  """A grain-packed row {tokens, tokens_segment_ids, tokens_positions, loss_mask, ...} -> the
  batch keys (see module doc), int32 / float32."""

  def __init__(self, pad_id: int):
    self.pad_id = int(pad_id)

  def map(self, row: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tok = np.asarray(row["tokens"], np.int32)
    seg = np.asarray(row["tokens_segment_ids"], np.int32)
    pos = np.asarray(row["tokens_positions"], np.int32)
    m = np.asarray(row["loss_mask"], np.float32)
    has_next = np.zeros(len(tok), bool)
    has_next[:-1] = (seg[1:] == seg[:-1]) & (seg[:-1] != 0)
    nxt_tok = np.full(len(tok), self.pad_id, np.int32)
    nxt_tok[:-1] = tok[1:]
    nxt_m = np.zeros(len(tok), np.float32)
    nxt_m[:-1] = m[1:]
    return {
        "inputs": np.where(seg != 0, tok, self.pad_id).astype(np.int32),
        "targets": np.where(has_next, nxt_tok, self.pad_id).astype(np.int32),
        "loss_mask": np.where(has_next, nxt_m, 0.0).astype(np.float32),
        "positions": np.where(seg != 0, pos, 0).astype(np.int32),
        "segment_ids": seg,
    }


class PadBatch:
  """batch_fn: stacks rows; a short final batch is filled up to `batch_size` with padding rows
  (segment 0, loss_mask 0), so every batch has the static shape [B, T]."""

  def __init__(self, batch_size: int, seq_len: int, pad_id: int):
    self.batch_size, self.seq_len, self.pad_id = batch_size, seq_len, int(pad_id)

  def __call__(self, rows: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {k: np.stack([r[k] for r in rows]) for k in BATCH_KEYS}
    short = self.batch_size - len(rows)
    if short > 0:
      fill = {"inputs": self.pad_id, "targets": self.pad_id}
      for k in BATCH_KEYS:
        pad = np.full((short, self.seq_len), fill.get(k, 0), out[k].dtype)
        out[k] = np.concatenate([out[k], pad])
    return out


def batch_stats(batch: dict[str, np.ndarray]) -> dict[str, float]:
  """Non-padding tokens, trained targets, examples and the fill fraction of one batch."""
  seg = np.asarray(batch["segment_ids"])
  tokens = int((seg != 0).sum())
  # segment ids are 1..n per row, so a row's example count is its largest id
  examples = int(seg.max(axis=1).sum()) if seg.size else 0
  return {"tokens": tokens, "trained_tokens": float(np.asarray(batch["loss_mask"]).sum()),
          "examples": examples, "fill": tokens / max(seg.size, 1)}
