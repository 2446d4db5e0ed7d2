"""Trajectory -> (token ids, loss mask): the per-example half of the training pipeline.

Loss-mask semantics: `loss_mask[i] == 1` means token i is trained on *as a target* (the model
is scored on predicting it from tokens < i). The packer turns this per-token mask into the
per-position mask of shifted (inputs, targets) pairs (pipeline_pack.py).

Modes (design.md: observation tokens are never trained; for SFT, prompt tokens are not either):

  role          mid_training (WM-AMT)   sft (FE-SFT)
  prompt        1                       0
  assistant     1                       1
  observation   0                       0

BOS (when the tokenizer has one) is never a target (nothing precedes it). EOS is appended after
the last segment and belongs to it: trained iff that segment's role is trained in the mode (a
trajectory that ran out of turns ends on an observation, and the model never writes EOS after an
observation, so there it is masked).

Boundary-exact tokenization: each rendered segment is encoded on its own and the ids are
concatenated. Encoding the joined text instead would let a BPE merge straddle a role boundary
(e.g. the `\\n\\n` that opens an observation merging with the end of the assistant's action), so
one token would be half trained, half observation, and no mask could be right. Separate encoding
also matches what the model sees at RL time, where the sampler's assistant tokens and the
environment's separately-encoded observation tokens are appended to one sequence. With our
sentencepiece tokenizers (identity normalisation, no dummy prefix, tags as single pieces) the
concatenation decodes back to exactly `render_text(traj)`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from foresight_jax.data.render import render_segments, slip_turns
from foresight_jax.data.schema import Trajectory

MODES: dict[str, dict[str, int]] = {
    "mid_training": {"prompt": 1, "assistant": 1, "observation": 0, "context": 0},
    "sft": {"prompt": 0, "assistant": 1, "observation": 0, "context": 0},
}
# Per-token role codes (returned with `with_roles=True`, for inspection and tests).
ROLE_IDS = {"special": 0, "prompt": 1, "assistant": 2, "observation": 3, "context": 4}
OVERLONG = ("truncate", "drop")


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f"unknown mode {mode!r}; choose one of {sorted(MODES)}")
  return mode


def tokenize_trajectory(traj: Trajectory, tokenizer, mode: str = "mid_training",
                        variant: str | None = None, add_bos: bool = True, add_eos: bool = True,
                        with_roles: bool = False, slip_rate: float = 0.0, seed: int = 0
                        ) -> dict[str, np.ndarray]:
  """{"tokens": int32 [L], "loss_mask": int32 [L]} (+ "roles": int8 [L]) of one trajectory.

  `variant` only picks the prompt's instructions (render_segments infers it by default).
  """
  table = MODES[check_mode(mode)]
  segs = render_segments(traj, variant, slip_turns(traj, slip_rate, seed))
  encoded = tokenizer.encode_batch([s.text for s in segs])
  bos = tokenizer.bos_id if add_bos else None
  eos = tokenizer.eos_ids[0] if add_eos and tokenizer.eos_ids else None
  n = sum(len(e) for e in encoded) + (bos is not None) + (eos is not None)
  tokens = np.empty(n, np.int32)
  mask = np.zeros(n, np.int32)
  roles = np.zeros(n, np.int8) if with_roles else None
  pos = 0
  if bos is not None:
    tokens[0] = bos
    pos = 1
  for seg, ids in zip(segs, encoded):
    end = pos + len(ids)
    tokens[pos:end] = ids
    mask[pos:end] = table[seg.role]
    if roles is not None:
      roles[pos:end] = ROLE_IDS[seg.role]
    pos = end
  if eos is not None:
    tokens[pos] = eos
    mask[pos] = table[segs[-1].role]
  out = {"tokens": tokens, "loss_mask": mask}
  if roles is not None:
    out["roles"] = roles
  return out


@dataclass
class Counts:
  """What the length policy and the decoder did; nothing leaves the pipeline uncounted.

  examples/tokens/trained_tokens: what went on to the packer (after truncation).
  truncated/truncated_tokens: kept examples cut to the row length and the tokens cut off them.
  dropped_overlong/dropped_overlong_tokens: examples over the row length, dropped (policy drop).
  dropped_untrainable: examples with no trained token left (e.g. an SFT prompt filling the row).
  rejected: records that did not decode to a valid trajectory (record sources).
  """
  examples: int = 0
  tokens: int = 0
  trained_tokens: int = 0
  truncated: int = 0
  truncated_tokens: int = 0
  dropped_overlong: int = 0
  dropped_overlong_tokens: int = 0
  dropped_untrainable: int = 0
  rejected: int = 0

  @property
  def read(self) -> int:
    """Records read: each is kept, dropped (over-long or untrainable) or rejected."""
    return self.examples + self.dropped_overlong + self.dropped_untrainable + self.rejected

  def to_dict(self) -> dict[str, int]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Counts":
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: int(v) for k, v in d.items() if k in names})

  def __add__(self, other: "Counts") -> "Counts":
    a, b = self.to_dict(), other.to_dict()
    return Counts(**{k: a[k] + b[k] for k in a})


def apply_length_policy(example: dict[str, np.ndarray], max_len: int, overlong: str,
                        counts: Counts) -> dict[str, np.ndarray] | None:
  """The example cut to `max_len` tokens (truncate) or None (dropped), counted either way.

  Each example lands in exactly one of examples / dropped_overlong / dropped_untrainable
  (truncated is a subset of examples: kept, but cut)."""
  n = len(example["tokens"])
  if n > max_len:
    if overlong == "drop":
      counts.dropped_overlong += 1
      counts.dropped_overlong_tokens += n
      return None
    example = {k: v[:max_len] for k, v in example.items()}
  # position 0 is never a target, so a trained token must sit at index >= 1
  trained = int(example["loss_mask"][1:].sum())
  if trained == 0:
    counts.dropped_untrainable += 1
    return None
  if n > max_len:
    counts.truncated += 1
    counts.truncated_tokens += n - max_len
  counts.examples += 1
  counts.tokens += len(example["tokens"])
  counts.trained_tokens += trained
  return example


def example_targets(example: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """One example as an unpacked [1, L] batch for `causal_lm_loss` (reference for the packer):
  inputs = tokens, targets[t] = tokens[t+1], loss_mask[t] = mask[t+1], last position masked."""
  tok = np.asarray(example["tokens"], np.int32)
  m = np.asarray(example["loss_mask"], np.float32)
  targets = np.zeros_like(tok)
  targets[:-1] = tok[1:]
  mask = np.zeros(len(tok), np.float32)
  mask[:-1] = m[1:]
  return {"inputs": tok[None], "targets": targets[None], "loss_mask": mask[None],
          "positions": np.arange(len(tok), dtype=np.int32)[None],
          "segment_ids": np.ones((1, len(tok)), np.int32)}
