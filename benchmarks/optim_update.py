"""Time of the optimizer update alone (clip + AdamW + the non-finite guard, jitted, state donated) at
a model's parameter shapes: the library's `train.step.apply_update` with `optim.make_optimizer`
(one-pass AdamW, the guard a branch on the CPU), against the code it replaced (optax's chain and an
elementwise select over every leaf), interleaved in one process.

    .venv/bin/python benchmarks/optim_update.py --preset smollm2_135m --reps 8

Prints ONE JSON line: median ms per update of each variant, the parameter count, and the effective
bandwidth if an update read grads, moments and params once and wrote moments and params once
(7 x 4 bytes per parameter), against this host's measured copy bandwidth.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from foresight_jax.models import presets
from foresight_jax.train import loop, optim, state as state_lib, step as step_lib


def old_update(tx, state, grads):
  """The replaced path: optax's chain, then a select of new or old on every leaf."""
  finite = jnp.isfinite(optax.tree.norm(grads))
  updates, new_opt = tx.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  keep = lambda new, old: jnp.where(finite, new, old)
  return state.replace(step=state.step + 1, params=jax.tree.map(keep, new_params, state.params),
                       opt_state=jax.tree.map(keep, new_opt, state.opt_state))


def copy_bandwidth_gbs(n: int) -> float:
  """GB/s of a jitted, donated x * 0.5 + y over n fp32 values (two reads, one write)."""
  x, y = jnp.ones(n), jnp.ones(n)
  f = jax.jit(lambda x, y: x * 0.5 + y, donate_argnums=(0,))
  x = f(x, y).block_until_ready()
  t = time.perf_counter()
  for _ in range(5):
    x = f(x, y)
  x.block_until_ready()
  return 3 * 4 * n / ((time.perf_counter() - t) / 5) / 1e9


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--preset", default="smollm2_135m")
  ap.add_argument("--reps", type=int, default=8)
  a = ap.parse_args()
  cfg = presets.model_config(a.preset)
  mesh = loop.build_mesh((-1, 1, 1))
  ocfg = optim.OptimConfig()
  new_tx, schedule = optim.make_optimizer(ocfg)
  old_tx = optim.reference_clip_adamw(schedule, ocfg)
  new = jax.jit(lambda s, g: step_lib.apply_update(new_tx, schedule, s, g, jnp.float32(1.0), jax.random.key(0))[0],
                donate_argnums=(0,))
  old = jax.jit(lambda s, g: old_update(old_tx, s, g), donate_argnums=(0,))
  with jax.set_mesh(mesh):
    states = {"library": state_lib.init_train_state(cfg, new_tx, mesh, seed=0),
              "optax_chain_and_select": state_lib.init_train_state(cfg, old_tx, mesh, seed=0)}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), states["library"].params)
    fns = {"library": new, "optax_chain_and_select": old}
    times = {k: [] for k in fns}
    for rep in range(a.reps + 1):
      for k, f in fns.items():  # interleaved: the host's drift hits both alike
        t = time.perf_counter()
        states[k] = f(states[k], grads)
        jax.block_until_ready(states[k].params)
        if rep:  # the first call compiles
          times[k].append(time.perf_counter() - t)
  n = sum(x.size for x in jax.tree.leaves(states["library"].params))
  ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
  print(json.dumps({"bench": "optim_update", "preset": a.preset, "params": n,
                    "median_ms": {k: round(v, 1) for k, v in ms.items()},
                    "speedup": round(ms["optax_chain_and_select"] / ms["library"], 2),
                    "effective_gbs": {k: round(7 * 4 * n / v / 1e6, 1) for k, v in ms.items()},
                    "copy_bandwidth_gbs": round(copy_bandwidth_gbs(n), 1), "jax": jax.__version__}))


if __name__ == "__main__":
  main()
