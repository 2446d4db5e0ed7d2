"""Small CLI over `loop.train` with the synthetic source: smoke runs, demos, the resume tests.

    python -m foresight_jax.train.loop_main --workdir /tmp/run --preset tiny --steps 12 \
        --seq 64 --batch 4 --checkpoint-every 3

Re-running the same command resumes from the latest checkpoint in --workdir. SIGTERM saves a
checkpoint and exits 0. The stage trainers (WM-AMT, FE-SFT) reuse `loop.train` with real data.
"""
from __future__ import annotations

import argparse
import logging
import sys

from foresight_jax.models import presets
from foresight_jax.train import loop, optim
from foresight_jax.train.checkpoint import CheckpointMismatchError
from foresight_jax.train.synthetic import SyntheticTokens


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--preset", default="tiny", help=f"model preset: {sorted(presets.PRESETS)}")
  p.add_argument("--steps", type=int, default=12)
  p.add_argument("--seq", type=int, default=64)
  p.add_argument("--batch", type=int, default=4, help="global batch (rows)")
  p.add_argument("--seed", type=int, default=0, help="model init / train RNG seed")
  p.add_argument("--data-seed", type=int, default=0)
  p.add_argument("--data-delay", type=float, default=0.0,
                 help="seconds the synthetic source sleeps per batch (slows a demo down)")
  p.add_argument("--mesh", default="-1,1,1", help="data,fsdp,tensor (one may be -1)")
  p.add_argument("--lr", type=float, default=3e-3)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--grad-accum", type=int, default=1)
  p.add_argument("--clip-norm", type=float, default=1.0)
  p.add_argument("--weight-decay", type=float, default=0.1)
  p.add_argument("--checkpoint-every", type=int, default=3)
  p.add_argument("--max-to-keep", type=int, default=3)
  p.add_argument("--sync-checkpoint", action="store_true", help="blocking saves (default: async)")
  p.add_argument("--compute-dtype", default=None, help="e.g. bfloat16 (default: the preset's)")
  p.add_argument("--remat", default=None, help="remat policy override: none|full|dots|dots_no_batch")
  p.add_argument("--peak-flops", type=float, default=None, help="per-device peak FLOP/s for MFU")
  p.add_argument("--no-export", action="store_true")
  p.add_argument("--no-progress", action="store_true")
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
  cfg = presets.model_config(args.preset)
  tcfg = loop.TrainConfig(
      steps=args.steps, seed=args.seed, mesh=tuple(int(x) for x in args.mesh.split(",")),
      optim=optim.OptimConfig(learning_rate=args.lr, warmup_steps=args.warmup, total_steps=args.steps,
                              grad_accum_steps=args.grad_accum, clip_norm=args.clip_norm,
                              weight_decay=args.weight_decay),
      checkpoint_every=args.checkpoint_every, max_to_keep=args.max_to_keep,
      async_checkpoint=not args.sync_checkpoint, peak_flops_per_device=args.peak_flops,
      compute_dtype=args.compute_dtype, remat_policy=args.remat, export_hf=not args.no_export,
      progress=not args.no_progress)
  data = SyntheticTokens(cfg.vocab_size, args.batch, args.seq, seed=args.data_seed, delay_s=args.data_delay)
  try:
    result = loop.train(cfg, tcfg, data, args.workdir)
  except CheckpointMismatchError as e:  # e.g. a different --preset pointed at an old workdir
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  except loop.NonFiniteError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 3
  print(f"{result.status} at step {result.step}" + (f"; exported to {result.export_dir}" if result.export_dir else ""),
        flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
