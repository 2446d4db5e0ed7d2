"""A seeded synthetic batch source with the data pipeline's iterator interface.

Same duck type as `foresight_jax.data.pipeline.make_iterator(...)`: `next()` gives a dict of
numpy [B, T] arrays (inputs, targets, loss_mask, positions, segment_ids) plus host-only
`source_ids`; `get_state()` / `set_state()` are JSON-serialisable and resume exactly. Batch i is a
pure function of (seed, i), so a restored iterator replays the same stream bit for bit.

Rows are packed with two segments, each a short random motif repeated: a model can learn to copy
the motif, so the loss visibly falls in demos and smoke runs (pure random tokens would not).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np


class SyntheticTokens:
  def __init__(self, vocab_size: int, batch_size: int, seq_len: int, seed: int = 0, delay_s: float = 0.0,
               first_token: int = 3):
    self.vocab_size, self.batch_size, self.seq_len = vocab_size, batch_size, seq_len
    self.seed, self.delay_s, self.first_token = seed, delay_s, first_token  # ids below are specials
    self.index = 0

  def __iter__(self):
    return self

  def get_state(self) -> dict[str, Any]:
    return {"kind": "synthetic", "seed": self.seed, "index": self.index}

  def set_state(self, state: dict[str, Any]) -> None:
    if state.get("seed") != self.seed:
      raise ValueError(f"iterator state is for seed {state.get('seed')}, this source has seed {self.seed}")
    self.index = int(state["index"])

  def _row(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = self.seq_len + 1  # one extra token: targets are inputs shifted by one
    cut = int(rng.integers(t // 4, 3 * t // 4))
    toks, seg, pos = np.empty(t, np.int32), np.empty(t, np.int32), np.empty(t, np.int32)
    for s, (a, b) in enumerate(((0, cut), (cut, t)), start=1):
      motif = rng.integers(self.first_token, self.vocab_size, int(rng.integers(3, 9)))
      toks[a:b] = np.resize(motif, b - a)
      seg[a:b], pos[a:b] = s, np.arange(b - a)
    return toks, seg, pos

  def __next__(self) -> dict[str, Any]:
    if self.delay_s:
      time.sleep(self.delay_s)
    i = self.index
    rng = np.random.default_rng([self.seed, i])
    rows = [self._row(rng) for _ in range(self.batch_size)]
    toks = np.stack([r[0] for r in rows])
    seg = np.stack([r[1] for r in rows])
    pos = np.stack([r[2] for r in rows])
    # a target is trained only inside its own segment (the last token of a segment predicts nothing)
    same = seg[:, 1:] == seg[:, :-1]
    self.index = i + 1
    return {"inputs": toks[:, :-1], "targets": np.where(same, toks[:, 1:], 0).astype(np.int32),
            "loss_mask": same.astype(np.int32), "positions": pos[:, :-1], "segment_ids": seg[:, :-1],
            "source_ids": [f"synthetic:{self.seed}:{i}:{r}" for r in range(self.batch_size)]}
