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


def causal_lm_loss(cfg: ModelConfig, params, batch: dict) -> tuple[jax.Array, dict]:
  """batch: inputs/targets/loss_mask [B,T] and optional positions/segment_ids (packed rows)."""
  logits, _ = transformer.forward(cfg, params, batch["inputs"], batch.get("positions"), batch.get("segment_ids"))
  loss, n = masked_cross_entropy(logits, batch["targets"], batch["loss_mask"])
  return loss, {"loss": loss, "tokens": n}


LOSSES: dict[str, Callable] = {"causal_lm": causal_lm_loss}


def get_loss(name: str) -> Callable:
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
  return LOSSES[name]
