"""Optimizer: AdamW with linear warmup + cosine decay, global-norm clipping and a decay mask.

    ocfg = OptimConfig(learning_rate=3e-4, warmup_steps=100, total_steps=10_000)
    tx, schedule = make_optimizer(ocfg)

Gradient accumulation is NOT an optax wrapper here: `train/step.py` scans over micro-batches inside
the one jitted step and hands the optimizer the token-weighted mean gradient. Why not
`optax.MultiSteps`:
  * MultiSteps keeps a params-sized accumulator in the optimizer state for the whole run (memory on
    every device, and in every checkpoint); the scan's accumulator lives only inside the step.
  * With MultiSteps one "step" of the loop is a micro-batch, so the LR schedule, the step counter,
    checkpoints, data-iterator states and the non-finite guard would all have to distinguish
    micro-steps from updates. With the scan, one step = one global batch = one update, everywhere.
  * One host dispatch per update instead of k, and XLA sees the whole update at once.
  * The scan weights micro-batches by their loss-token counts, so k micro-batches give exactly the
    gradient of the big batch's token-mean loss; MultiSteps averages micro-batch means equally,
    which differs whenever packed micro-batches hold different numbers of loss tokens.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

# Leaves whose last path key contains one of these are excluded from weight decay: decaying norm
# scales towards 0 (and biases towards 0) fights the normalisation instead of regularising.
NO_DECAY_KEYS = ("norm", "bias")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  learning_rate: float = 3e-4  # peak LR, reached at the end of warmup
  warmup_steps: int = 100  # linear 0 -> peak over this many updates
  total_steps: int = 10_000  # warmup + cosine; the LR stays at end_lr_ratio * peak afterwards
  end_lr_ratio: float = 0.1  # final LR as a fraction of the peak
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.1
  clip_norm: float | None = 1.0  # global-norm gradient clipping; None/0 disables
  grad_accum_steps: int = 1  # micro-batches per update (scan inside the step, see module doc)

  def __post_init__(self):
    if self.warmup_steps < 0 or self.total_steps < 1:
      raise ValueError(f"bad schedule: warmup_steps={self.warmup_steps} total_steps={self.total_steps}")
    if self.grad_accum_steps < 1:
      raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")

  @classmethod
  def from_dict(cls, d: Mapping[str, Any] | Any) -> "OptimConfig":
    d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"unknown optimizer config keys {unknown}; known: {sorted(names)}")
    return cls(**d)


def make_schedule(ocfg: OptimConfig) -> optax.Schedule:
  """Linear warmup from 0 to the peak, then cosine decay to `end_lr_ratio * peak` at total_steps."""
  peak = ocfg.learning_rate
  warmup = min(ocfg.warmup_steps, ocfg.total_steps)
  # optax's decay_steps counts the warmup too; keep at least one cosine step so the math is defined
  decay = max(ocfg.total_steps, warmup + 1)
  return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=peak, warmup_steps=warmup,
                                            decay_steps=decay, end_value=peak * ocfg.end_lr_ratio)


def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def decay_mask(params) -> Any:
  """True for leaves that get weight decay: everything but norm scales and biases.

  Decided by name, not rank: stacked layer params carry a leading `layers` axis, so a norm scale
  is 2-D ([L, D]) and a rank test would decay it.
  """
  def keep(path, _):
    name = _key_name(path[-1]).lower() if path else ""
    return not any(s in name for s in NO_DECAY_KEYS)

  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(ocfg: OptimConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optax transformation, LR schedule). The schedule is returned so the step can report the LR.

  The transformation is `optax.chain(clip_by_global_norm, adamw(mask=decay_mask))` computed by
  `fused_clip_adamw`: the same state tree and the same arithmetic, one pass over each leaf."""
  schedule = make_schedule(ocfg)
  return fused_clip_adamw(schedule, ocfg), schedule


def reference_clip_adamw(schedule: optax.Schedule, ocfg: OptimConfig) -> optax.GradientTransformation:
  """The optax chain `fused_clip_adamw` computes (its state tree, and the oracle of its test)."""
  parts = []
  if ocfg.clip_norm:
    parts.append(optax.clip_by_global_norm(ocfg.clip_norm))
  parts.append(optax.adamw(schedule, b1=ocfg.b1, b2=ocfg.b2, eps=ocfg.eps,
                           weight_decay=ocfg.weight_decay, mask=decay_mask))
  return optax.chain(*parts)


def fused_clip_adamw(schedule: optax.Schedule, ocfg: OptimConfig) -> optax.GradientTransformation:
  """`reference_clip_adamw` with every leaf's clip, moments, bias correction, decay and LR in one
  elementwise expression (optax's operations in optax's order, except that the clip multiplies by
  min(1, clip / norm) where optax selects between g and g / norm * clip: within fp32 rounding).
  Why: XLA:CPU fuses neither optax's chain of tree maps into one loop per leaf nor a select with a
  scalar predicate into its consumers; at SmolLM2-135M's 134.5M parameters the whole update went
  from 281 to 125 ms with this and `step.apply_update`'s branch (`benchmarks/optim_update.py`,
  BUILD_NOTES). The state is the reference chain's, so checkpoints of either restore into both."""
  reference = reference_clip_adamw(schedule, ocfg)
  b1, b2, eps, wd, clip = ocfg.b1, ocfg.b2, ocfg.eps, ocfg.weight_decay, ocfg.clip_norm

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("fused_clip_adamw needs params (weight decay)")
    clip_state, (adam, masked_state, sched) = state if clip else (None, state[0])
    if clip:
      g_norm = optax.tree.norm(grads)
      scale = jnp.where(g_norm < clip, 1.0, clip / g_norm)
    count_inc = optax.safe_increment(adam.count)
    bc1, bc2 = 1 - b1 ** count_inc, 1 - b2 ** count_inc
    step_size = -schedule(sched.count)

    def leaf(g, mu, nu, p, decay):
      if clip:
        g = g * scale.astype(g.dtype)
      mu_new = (1 - b1) * g + b1 * mu
      nu_new = (1 - b2) * (g ** 2) + b2 * nu
      u = (mu_new / bc1.astype(mu_new.dtype)) / (jnp.sqrt(nu_new / bc2.astype(nu_new.dtype)) + eps)
      if decay:
        u = u + wd * p
      return jnp.array(step_size, dtype=u.dtype) * u, mu_new, nu_new.astype(nu.dtype)

    treedef = jax.tree.structure(grads)
    out = treedef.flatten_up_to(jax.tree.map(leaf, grads, adam.mu, adam.nu, params, decay_mask(params)))
    updates, mu, nu = (treedef.unflatten([o[i] for o in out]) for i in range(3))
    new_adam = adam._replace(count=count_inc, mu=mu, nu=nu)
    new_sched = sched._replace(count=optax.safe_increment(sched.count))
    inner = (new_adam, masked_state, new_sched)
    return updates, ((clip_state, inner) if clip else (inner,))

  return optax.GradientTransformation(reference.init, update)


def shardings_like_params(opt_state, params_treedef, param_shardings, other: Callable[[Any], Any]):
  """Map optimizer-state leaves to shardings: params-shaped subtrees (Adam mu/nu...) follow the
  params' shardings, everything else (counts, scalars) gets `other(leaf)`.

  Matched on tree structure rather than via `optax.tree_map_params`, whose placeholder trick calls
  the (callable) weight-decay mask on a placeholder object instead of a params tree.
  """
  def is_params(x):
    return jax.tree.structure(x) == params_treedef

  def one(x):
    if is_params(x):
      return param_shardings
    return jax.tree.map(other, x)

  return jax.tree.map(one, opt_state, is_leaf=is_params)
