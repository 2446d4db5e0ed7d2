"""Forward+backward tokens/s and MFU: ours (jitted) against transformers (torch), same weights.

Prints one JSON line. Example (CPU):
  python benchmarks/train_step.py --preset smollm2_135m --weights <SmolLM2 gguf> --seq 512 --batch 4
GPU, Youtu-2B shape in bf16 (ours only; the torch GPU peer is ../shared/peers/torch_gpu_train.py):
  python benchmarks/train_step.py --preset youtu_llm_2b --seq 4096 --batch 4 --dtype bfloat16 --no-torch
"""
from __future__ import annotations

import argparse
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

import common
from foresight_jax import hostenv
from foresight_jax.models import config as config_lib, kernels, params as params_lib, presets, transformer
from foresight_jax.train import losses


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--preset", default="tiny")
  ap.add_argument("--weights", default=None, help="HF dir or .gguf; default: random init of --preset")
  ap.add_argument("--seq", type=int, default=512)
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--dtype", default="float32", help="compute dtype")
  ap.add_argument("--param-dtype", default="float32",
                  help="dtype the weights are held in during fwd+bwd (bfloat16: the bf16-params, fp32-master "
                       "layout, where the optimizer keeps an fp32 copy; gradients come out in this dtype)")
  ap.add_argument("--remat", default="none")
  ap.add_argument("--attention", default="auto", help="attention_impl: auto|xla|cudnn|cudnn_mask|splash (models/kernels.py)")
  ap.add_argument("--plain-loss", action="store_true",
                  help="materialise the whole [B, T, vocab] fp32 logits (the pre-chunking loss) for comparison")
  ap.add_argument("--layers", default="auto", choices=("auto", "scan", "unroll"),
                  help="ModelConfig.scan_layers: auto (None: unrolled on GPU, scanned elsewhere), scan, unroll")
  ap.add_argument("--packed", action="store_true", help="pass segment ids (two documents per row), as the trainer does")
  ap.add_argument("--ragged-max-segments", type=int, default=None,
                  help="ModelConfig.ragged_max_segments: documents per row on cuDNN's ragged path (default: the config's)")
  ap.add_argument("--loss-chunk-gib", type=float, default=None,
                  help="fp32 logits budget of one chunk of the chunked LM-head loss (default: losses.LOGITS_CHUNK_BYTES)")
  ap.add_argument("--profile", action="store_true",
                  help="also trace 3 steps with jax.profiler: kernel time by kind, GPU busy vs wall (GPU)")
  ap.add_argument("--no-torch", action="store_true", help="skip the transformers side (GPU runs)")
  ap.add_argument("--min-time", type=float, default=5.0, help="seconds of timed calls per side, over all rounds")
  ap.add_argument("--rounds", type=int, default=3,
                  help="rounds in which ours and torch take turns; the ratio is the median of the rounds' ratios")
  args = ap.parse_args()
  hostenv.reexec_with_huge_pages()  # as the CLI runs; torch shares the process, so both sides get it

  rng = np.random.default_rng(0)
  if args.no_torch:
    cfg = presets.model_config(args.preset)
    params = params_lib.init_params(cfg, jax.random.key(0))
    hf = None
  else:
    cfg, params, hf = common.load_both(args.preset, args.weights)
  cfg = cfg.replace(compute_dtype=args.dtype, remat_policy=args.remat, attention_impl=args.attention,
                    param_dtype=args.param_dtype, scan_layers={"auto": None, "scan": True, "unroll": False}[args.layers],
                    **({"ragged_max_segments": args.ragged_max_segments} if args.ragged_max_segments else {}))
  params = jax.tree.map(lambda a: a.astype(args.param_dtype), params)
  tokens = rng.integers(0, cfg.vocab_size, (args.batch, args.seq + 1)).astype(np.int32)
  batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:]),
           "loss_mask": jnp.ones((args.batch, args.seq), jnp.float32)}
  if args.packed:
    half = args.seq // 2
    batch["segment_ids"] = jnp.asarray(np.repeat([[1] * half + [2] * (args.seq - half)], args.batch, 0), jnp.int32)
    batch["positions"] = jnp.asarray(np.repeat([list(range(half)) + list(range(args.seq - half))], args.batch, 0),
                                     jnp.int32)

  def plain_loss(params, batch):
    logits, _ = transformer.forward(cfg, params, batch["inputs"], batch.get("positions"), batch.get("segment_ids"))
    loss, _ = losses.masked_cross_entropy(logits, batch["targets"], batch["loss_mask"])
    return loss, {"loss": loss}

  budget = int(args.loss_chunk_gib * 2 ** 30) if args.loss_chunk_gib else losses.LOGITS_CHUNK_BYTES
  loss_fn = plain_loss if args.plain_loss else functools.partial(losses.causal_lm_loss, cfg, logits_budget=budget)
  grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))

  def ours():
    (loss, _), g = grad_fn(params, batch)
    jax.block_until_ready(g)

  fns = {"ours": ours}
  if hf is not None:
    import torch
    torch.set_num_threads(max(1, jax.local_devices()[0].platform == "cpu" and os.cpu_count() or 1))
    ids = torch.from_numpy(tokens[:, :-1].astype(np.int64))
    labels = torch.from_numpy(tokens[:, 1:].astype(np.int64))
    hf.train()

    def theirs():
      hf.zero_grad(set_to_none=True)
      logits = hf(input_ids=ids).logits
      loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
      loss.backward()

    fns["torch"] = theirs
  # the sides take turns over --rounds rounds, so the host's drift falls on both alike
  times = common.interleaved(fns, args.rounds, args.min_time)
  t_ours = float(np.median(times["ours"]))
  ntok = args.batch * args.seq
  flops = config_lib.train_flops_per_token(cfg, args.seq) * ntok
  peak = common.measured_matmul_peak(jnp.dtype(args.dtype))
  rec = {"bench": "train_step", "preset": args.preset, "weights": args.weights, "seq": args.seq,
         "batch": args.batch, "dtype": args.dtype, "param_dtype": args.param_dtype, "ours_tokens_per_s": ntok / t_ours,
         "ours_tflops": flops / t_ours / 1e12, "mfu_vs_measured_matmul": flops / t_ours / peak,
         "measured_matmul_tflops": peak / 1e12, "attention": kernels.resolve(args.attention, args.dtype),
         "remat": args.remat, "scan_layers": cfg.scanned, "plain_loss": args.plain_loss, "packed": args.packed,
         "ragged_max_segments": cfg.ragged_max_segments,
         "loss_chunk_gib": args.loss_chunk_gib, "xla_flags": os.environ.get("XLA_FLAGS"),
         "glibc_tunables": os.environ.get("GLIBC_TUNABLES"), "rounds": len(times["ours"]),
         "peak_mem_gib": common.peak_memory_gib(), **common.device_info()}
  if args.profile:
    rec["profile"] = common.kernel_profile(ours, reps=3, steps=3)
  if hf is not None:
    per_round = [t / o for o, t in zip(times["ours"], times["torch"])]
    rec.update(torch_tokens_per_s=ntok / float(np.median(times["torch"])),
               ratio_ours_over_torch=float(np.median(per_round)), ratio_per_round=[round(r, 3) for r in per_round],
               torch_threads=torch.get_num_threads(), torch=torch.__version__)
  common.emit(rec)


if __name__ == "__main__":
  main()
