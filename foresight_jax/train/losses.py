"""Token losses as small pure functions picked by name (Tunix algo_core style)."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from foresight_jax.models import transformer
from foresight_jax.models.config import ModelConfig


def masked_cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean next-token cross-entropy over positions where mask is 1; returns (loss, token count)."""
  logz = jax.nn.logsumexp(logits, axis=-1)
  gold = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  mask = mask.astype(jnp.float32)
  n = jnp.maximum(mask.sum(), 1.0)
  return ((logz - gold) * mask).sum() / n, n


# Largest fp32 logits block one chunk of `lm_head_cross_entropy` may hold. At vocab 152k a seq-4096
# batch-4 step would otherwise hold 10 GB of fp32 logits (and as much again for their gradient).
# 2 GiB, from an H200 sweep (BUILD_NOTES): Qwen2.5-1.5B seq 4096 batch 4 ran 2% faster than at 1 GiB
# with the same peak memory; 4 GiB gave 1.5% more for 3 GiB more.
LOGITS_CHUNK_BYTES = 2 << 30


def logits_chunk(batch: int, seq: int, vocab: int, budget: int = LOGITS_CHUNK_BYTES) -> int:
  """Sequence positions per chunk: the largest divisor of `seq` whose [batch, chunk, vocab] fp32
  logits fit in `budget` bytes (at least 1)."""
  best = 1
  for c in range(1, seq + 1):
    if seq % c == 0 and batch * c * vocab * 4 <= budget:
      best = c
  return best


def lm_head_cross_entropy(cfg: ModelConfig, params, h: jax.Array, targets: jax.Array, mask: jax.Array,
                          chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
  """`masked_cross_entropy(lm_head(h), targets, mask)` without ever holding [B, T, vocab] logits.

  A `lax.scan` over sequence chunks whose body is rematerialised: the forward keeps only each
  chunk's summed loss, the backward recomputes one chunk's logits at a time. The head weight enters
  the body in its parameter dtype and is cast inside, so its gradient accumulates over the chunks
  in that dtype (fp32 master weights), not in bf16."""
  b, t, _ = h.shape
  chunk = chunk or logits_chunk(b, t, cfg.vocab_size)
  mask = mask.astype(jnp.float32)
  n = jnp.maximum(mask.sum(), 1.0)
  if chunk >= t:
    loss, _ = masked_cross_entropy(transformer.lm_head(cfg, params, h), targets, mask)
    return loss, n

  def split(x):  # [B, T, ...] -> [T/chunk, B, chunk, ...]: scan over chunks, batch sharding kept
    return jnp.moveaxis(x.reshape(b, t // chunk, chunk, *x.shape[2:]), 1, 0)

  @jax.checkpoint
  def body(total, xs):
    hc, tc, mc = xs
    logits = transformer.lm_head(cfg, params, hc)
    logz = jax.nn.logsumexp(logits, axis=-1)
    gold = jnp.take_along_axis(logits, tc[..., None], axis=-1)[..., 0]
    return total + ((logz - gold) * mc).sum(), None

  total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (split(h), split(targets), split(mask)))
  return total / n, n


def causal_lm_loss(cfg: ModelConfig, params, batch: dict,
                   logits_budget: int = LOGITS_CHUNK_BYTES) -> tuple[jax.Array, dict]:
  """batch: inputs/targets/loss_mask [B,T] and optional positions/segment_ids (packed rows).
  `logits_budget`: fp32 logits bytes per loss chunk (`logits_chunk`; benchmarks sweep it)."""
  h, _ = transformer.hidden_states(cfg, params, batch["inputs"], batch.get("positions"), batch.get("segment_ids"))
  b, t = batch["targets"].shape
  loss, n = lm_head_cross_entropy(cfg, params, h, batch["targets"], batch["loss_mask"],
                                  chunk=logits_chunk(b, t, cfg.vocab_size, logits_budget))
  return loss, {"loss": loss, "tokens": n}


LOSSES: dict[str, Callable] = {"causal_lm": causal_lm_loss}


def get_loss(name: str) -> Callable:
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
  return LOSSES[name]
