"""Tunix side of `tunix_compare.py`: full fine-tuning of a random Llama3 with Tunix's own PeftTrainer.

Runs under the Tunix venv's python (google-tunix==0.1.7), not ours:
  .venv-tunix/bin/python benchmarks/tunix_side.py --hidden 576 --layers 30 ... --batch 4 --seq 256
Prints one JSON line of wall-clock timestamps (time.time()) so the parent can compute time to the
first finished step from its own spawn time, and per-step completion times for steady-state steps/s.

What "finished" means here, identically on both sides: both loops dispatch step k+1 and then fetch
step k's metrics (Tunix: `_write_train_metrics` -> host loss; ours: `finish()` -> device_get). The
timestamp of step k is taken right after that fetch returns, i.e. when step k's outputs exist on
the host. Tunix reports it through its own `TrainingHooks.on_train_step_end`.

Configuration only, no patching of Tunix: checkpoint_root_directory=None (no checkpoint manager),
metrics_logging_options=None (no TensorBoard/W&B backends, in-memory history only),
profiler_options=None, eval_ds=None; defaults otherwise (max_inflight_computations=2, tqdm bar,
cache_nnx_graph=True). No mesh: a single CPU device (Tunix's `shard()` is a no-op on CPU anyway).
"""
from __future__ import annotations

import time

T_START = time.time()  # before the heavy imports

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from tunix.models import dummy_model_creator
from tunix.models.llama3 import model as llama3
from tunix.sft import hooks, peft_trainer
from tunix.sft import utils as sft_utils

T_IMPORTED = time.time()


class _StepTimes(hooks.TrainingHooks):
  """Records time.time() each time the loop reports a finished step (its own hook)."""

  def __init__(self):
    self.times: list[tuple[int, float, float]] = []  # (step, wall, process cpu)

  def on_train_start(self, train_ctx):
    pass

  def on_train_end(self, train_ctx):
    pass

  def on_train_step_start(self, train_ctx):
    pass

  def on_train_step_end(self, train_ctx, train_step, train_loss):
    self.times.append((int(train_step), time.time(), time.process_time()))

  def on_eval_step_start(self, train_ctx):
    pass

  def on_eval_step_end(self, train_ctx, eval_loss):
    pass


def _decay_mask(params):
  # same rule as foresight_jax.train.optim.decay_mask: no weight decay on norm scales
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not any("norm" in str(k).lower() for k in path), params)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--vocab", type=int, required=True)
  ap.add_argument("--hidden", type=int, required=True)
  ap.add_argument("--inter", type=int, required=True)
  ap.add_argument("--layers", type=int, required=True)
  ap.add_argument("--heads", type=int, required=True)
  ap.add_argument("--kv-heads", type=int, required=True)
  ap.add_argument("--head-dim", type=int, required=True)
  ap.add_argument("--tie", type=int, default=1)
  ap.add_argument("--rope-theta", type=float, default=100000.0)
  ap.add_argument("--batch", type=int, required=True)
  ap.add_argument("--seq", type=int, required=True)
  ap.add_argument("--steps", type=int, required=True, help="total train steps (warm-up included)")
  ap.add_argument("--remat", default="NONE", choices=["NONE", "BLOCK", "DECODER"])
  ap.add_argument("--lr", type=float, default=3e-4)
  ap.add_argument("--warmup-steps", type=int, default=100)
  ap.add_argument("--total-steps", type=int, default=10_000)
  ap.add_argument("--split", type=int, default=0,
                  help="instead of training: best-of-N seconds of the jitted loss+grad alone and of the "
                       "trainer's own jitted train step (the profile split of tunix_compare.py --split)")
  args = ap.parse_args()

  t_setup = time.time()
  cfg = llama3.ModelConfig(
      num_layers=args.layers, vocab_size=args.vocab, embed_dim=args.hidden, hidden_dim=args.inter,
      num_heads=args.heads, head_dim=args.head_dim, num_kv_heads=args.kv_heads,
      rope_theta=int(args.rope_theta), norm_eps=1e-5, weight_tying=bool(args.tie),
      remat_config=getattr(llama3.RematConfig, args.remat))
  # Tunix's own random-init helper (normal * 0.02 for every param, fp32)
  model = dummy_model_creator.create_dummy_model(llama3.Llama3, cfg, dtype=jnp.float32)

  # the same optimizer as ours (foresight_jax.train.optim.make_optimizer with its defaults)
  schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup_steps, args.total_steps,
                                                args.lr * 0.1)
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.adamw(schedule, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, mask=_decay_mask))
  tcfg = peft_trainer.TrainingConfig(eval_every_n_steps=10**9, max_steps=args.steps,
                                     checkpoint_root_directory=None, metrics_logging_options=None,
                                     profiler_options=None)
  trainer = peft_trainer.PeftTrainer(model, tx, tcfg)

  def gen_model_input_fn(x: peft_trainer.TrainingInput):
    # as in tunix/cli/peft_main.py (pad id 0; our random tokens start at 3, so no position is padded)
    pad_mask = x.input_tokens != 0
    return {"input_tokens": x.input_tokens, "input_mask": x.input_mask,
            "positions": sft_utils.build_positions_from_mask(pad_mask),
            "attention_mask": sft_utils.make_causal_attn_mask(pad_mask)}

  trainer = trainer.with_gen_model_input_fn(gen_model_input_fn)
  rec = _StepTimes()
  trainer.with_training_hooks(rec)

  def data():
    rng = np.random.default_rng(0)
    for _ in range(args.steps):
      toks = rng.integers(3, args.vocab, (args.batch, args.seq)).astype(np.int32)
      yield peft_trainer.TrainingInput(input_tokens=toks, input_mask=np.ones_like(toks, dtype=bool))

  if args.split:
    print(json.dumps({"side": "tunix", **_split_times(trainer, model, gen_model_input_fn, args)}), flush=True)
    return
  trainer.train(data())
  jax.block_until_ready(nnx.state(model))
  t_end = time.time()
  n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  print(json.dumps({
      "side": "tunix", "t_start": T_START, "t_imported": T_IMPORTED, "t_setup": t_setup, "t_end": t_end,
      "step_times": rec.times, "steps": args.steps, "train_steps_done": trainer.train_steps,
      "n_params": int(n_params), "remat": args.remat,
      "final_loss": float(trainer.metrics_logger.get_metric_history("", "loss", "train")[-1]),
      "versions": {"python": sys.version.split()[0], "jax": jax.__version__,
                   "jaxlib": __import__("jaxlib").__version__, "flax": __import__("flax").__version__,
                   "optax": optax.__version__, "tunix": _version("google-tunix")},
      "devices": [str(d) for d in jax.devices()],
  }), flush=True)


def _split_times(trainer, model, gen_model_input_fn, args) -> dict:
  """Seconds per call (best of N after a compiling call): loss+grad alone, and the whole train step."""
  toks = np.random.default_rng(0).integers(3, args.vocab, (args.batch, args.seq)).astype(np.int32)
  raw = peft_trainer.TrainingInput(input_tokens=toks, input_mask=np.ones_like(toks, bool))
  inputs = gen_model_input_fn(raw)  # what the trainer's step feeds its loss
  grad = nnx.jit(nnx.value_and_grad(trainer.loss_fn))
  step, _ = trainer.jit_train_and_eval_step(cache_nnx_graph=True)

  import common  # benchmarks/common.py: needs only jax and numpy, both in the Tunix venv
  return {"grad_s": common.best_of(lambda: grad(model, **inputs), args.split),
          "step_s": common.best_of(lambda: step(raw), args.split)}


def _version(dist: str) -> str:
  from importlib.metadata import version
  try:
    return version(dist)
  except Exception:  # pragma: no cover
    return "?"


if __name__ == "__main__":
  main()
