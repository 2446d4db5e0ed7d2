"""GRPO as small pure functions, picked by name where there is a choice (Tunix `algo_core` style).

    adv = group_advantages(rewards, group_size)                 # [B], zero mean per group
    logp, entropy = token_logprobs(cfg, params, tokens, kind)   # [B, S] each
    loss, aux = policy_loss(logp, old_logp, ref_logp, adv, kind, cfg=GRPOConfig(...))

Conventions (rl/layout.py): rows are compacted sequences; `logp[:, s]` is log p(tokens[:, s] |
tokens[:, :s]), defined for s >= 1 (0 at s = 0). Only KIND_GEN tokens enter any term: the policy
ratio, the KL to the reference and the entropy; observation tokens are read, never trained.

The ratio is exp(logp - old_logp). With one update per rollout (the fused step), `old_logp` is
`stop_gradient(logp)`, so the ratio is exactly 1 in value and the clip only matters for later
iterations on the same rollout (as Tunix does when num_iterations = 1). The KL term is the k3
estimator exp(r - l) - (r - l) - 1 >= 0 of KL(pi || ref) (Schulman's low-variance form, as
Search-R1 and Tunix use it).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from foresight_jax.models import transformer
from foresight_jax.models.config import ModelConfig
from foresight_jax.rl.layout import KIND_GEN, KIND_PAD
from foresight_jax.train import losses


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  clip_eps: float = 0.2           # PPO clip of the importance ratio
  beta: float = 0.04              # k3 KL coefficient (0: no reference forward at all)
  aggregation: str = "token_mean"  # LOSS_AGGREGATIONS key
  adv_eps: float = 1e-4           # std floor of group normalisation


# ------------------------------------------------------------------------------ advantages
def group_advantages(rewards: jax.Array, group_size: int, eps: float = 1e-4) -> jax.Array:
  """(R - mean_group) / (std_group + eps) for rows laid out as [prompt 0 x G, prompt 1 x G, ...].

  A group whose rewards are all equal gets advantage 0 everywhere (nothing to learn from it)."""
  r = rewards.astype(jnp.float32).reshape(-1, group_size)
  mean = r.mean(axis=1, keepdims=True)
  std = r.std(axis=1, keepdims=True)
  return ((r - mean) / (std + eps)).reshape(-1)


# ------------------------------------------------------------------------------ log-probs
def token_logprobs(cfg: ModelConfig, params, tokens: jax.Array, kind: jax.Array,
                   chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
  """(log p of each token given its prefix, entropy of the distribution that predicted it), both
  [B, S] fp32, 0 at s = 0 and at padding. One forward over the compacted rows.

  The head runs over sequence chunks (`losses.logits_chunk`'s budget, or `chunk` positions) in a
  rematerialised scan, as the LM loss does: [B, S, vocab] fp32 logits never exist at once. At
  SmolLM2's vocab of 49,152 they would be 3 GB for 16 rows of 1,000 tokens (the host was killed
  for memory at that size), and ~90 GB at the smollm2_135m config's 160 rows of ~3,000."""
  seg = (kind != KIND_PAD).astype(jnp.int32)
  h, _ = transformer.hidden_states(cfg, params, tokens, None, seg)
  b, s = tokens.shape
  # position s predicts token s + 1; the last position's prediction is dropped below
  targets = jnp.concatenate([tokens[:, 1:], jnp.zeros_like(tokens[:, :1])], axis=1)
  c = chunk or losses.logits_chunk(b, s, cfg.vocab_size)
  if s % c:
    raise ValueError(f"chunk={c} does not divide the {s} positions")

  @jax.checkpoint  # the backward recomputes one chunk's logits at a time
  def head(hc, tc):
    logits = transformer.lm_head(cfg, params, hc)
    logz = jax.nn.logsumexp(logits, axis=-1)
    gold = jnp.take_along_axis(logits, tc[..., None], axis=-1)[..., 0]
    entropy = logz - jnp.sum(jax.nn.softmax(logits, axis=-1) * logits, axis=-1)
    return gold - logz, entropy

  split = lambda x: jnp.moveaxis(x.reshape(b, s // c, c, *x.shape[2:]), 1, 0)  # noqa: E731
  _, (logp, entropy) = jax.lax.scan(lambda _, xs: (None, head(*xs)), None, (split(h), split(targets)))
  logp, entropy = (jnp.moveaxis(x, 0, 1).reshape(b, s)[:, :-1] for x in (logp, entropy))
  pad = jnp.zeros_like(logp[:, :1])
  valid = seg[:, 1:] > 0
  return (jnp.concatenate([pad, jnp.where(valid, logp, 0.0)], 1),
          jnp.concatenate([pad, jnp.where(valid, entropy, 0.0)], 1))


def kl_k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
  """Per-token k3 estimate of KL(pi || ref) from sampled tokens: >= 0, 0 where logp == ref_logp."""
  d = ref_logp - logp
  return jnp.exp(d) - d - 1.0


# ------------------------------------------------------------------------------ aggregation
def token_mean(per_token: jax.Array, mask: jax.Array) -> jax.Array:
  """Every trained token of the batch weighs the same (DAPO's choice: long answers are not
  down-weighted per token)."""
  m = mask.astype(jnp.float32)
  return (per_token * m).sum() / jnp.maximum(m.sum(), 1.0)


def sequence_mean(per_token: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over each row's trained tokens, then over rows with any (GRPO paper's form)."""
  m = mask.astype(jnp.float32)
  n = m.sum(axis=1)
  rows = (per_token * m).sum(axis=1) / jnp.maximum(n, 1.0)
  has = (n > 0).astype(jnp.float32)
  return (rows * has).sum() / jnp.maximum(has.sum(), 1.0)


LOSS_AGGREGATIONS: dict[str, Callable] = {"token_mean": token_mean, "sequence_mean": sequence_mean}


def get_aggregation(name: str) -> Callable:
  if name not in LOSS_AGGREGATIONS:
    raise ValueError(f"unknown loss aggregation {name!r}; choose one of {sorted(LOSS_AGGREGATIONS)}")
  return LOSS_AGGREGATIONS[name]


# ------------------------------------------------------------------------------ loss
def policy_loss(logp: jax.Array, old_logp: jax.Array, ref_logp: jax.Array | None, advantages: jax.Array,
                kind: jax.Array, cfg: GRPOConfig = GRPOConfig(), entropy: jax.Array | None = None
                ) -> tuple[jax.Array, dict]:
  """Clipped-ratio policy loss + beta * k3 KL over KIND_GEN tokens only; scalar metrics in aux."""
  mask = kind == KIND_GEN
  agg = get_aggregation(cfg.aggregation)
  adv = advantages[:, None]
  # zero every non-generated position BEFORE any exp: a masked inf (an observation token the
  # reference finds very unlikely) times 0 would still be NaN
  z = lambda x: jnp.where(mask, x, 0.0)  # noqa: E731
  logp, old_logp = z(logp), z(old_logp)
  ref_logp = None if ref_logp is None else z(ref_logp)
  ratio = jnp.exp(logp - old_logp)
  clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
  per_token = -jnp.minimum(ratio * adv, clipped * adv)
  aux = {"clip_fraction": token_mean((jnp.abs(ratio - 1.0) > cfg.clip_eps).astype(jnp.float32), mask)}
  if cfg.beta and ref_logp is not None:
    kl = kl_k3(logp, ref_logp)
    per_token = per_token + cfg.beta * kl
    aux["kl"] = token_mean(kl, mask)
  else:
    aux["kl"] = jnp.zeros((), jnp.float32)
  loss = agg(per_token, mask)
  aux["pg_loss"] = loss
  if entropy is not None:
    aux["entropy"] = token_mean(entropy, mask)
  aux["trained_tokens"] = mask.sum().astype(jnp.float32)
  return loss, aux


__all__ = ["GRPOConfig", "LOSS_AGGREGATIONS", "get_aggregation", "group_advantages", "kl_k3", "policy_loss",
           "sequence_mean", "token_logprobs", "token_mean"]
