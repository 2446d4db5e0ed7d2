"""Decode tokens/s of our sampler (jitted prefill + while_loop decode) against transformers' generate.

Greedy, every row generates exactly --new-tokens tokens (no stop), same weights on both sides.
Prints one JSON line. Example (CPU):
  python benchmarks/decode.py --preset smollm2_135m --weights <SmolLM2 gguf> --batch 8 --new-tokens 128
GPU, Youtu-2B shape, bf16, with the HBM-bandwidth roofline (ours only):
  python benchmarks/decode.py --preset youtu_llm_2b --batch 128 --dtype bfloat16 --no-torch --hbm-gbps 3350
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import common
from foresight_jax import sampling
from foresight_jax.models import config as config_lib, params as params_lib, presets


def roofline_tokens_per_s(cfg, batch: int, context: int, hbm_bytes_per_s: float) -> float:
  """Upper bound when every decode step must stream all weights plus the live KV cache once."""
  pbytes = config_lib.param_count(cfg) * jnp.dtype(cfg.param_dtype).itemsize
  per_tok = (cfg.kv_lora_rank + cfg.qk_rope_head_dim if cfg.is_mla else 2 * cfg.num_kv_heads * cfg.head_dim)
  kv_bytes = cfg.num_layers * batch * context * per_tok * jnp.dtype(cfg.compute_dtype).itemsize
  return batch * hbm_bytes_per_s / (pbytes + kv_bytes)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--preset", default="tiny")
  ap.add_argument("--weights", default=None)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--prompt-len", type=int, default=32)
  ap.add_argument("--new-tokens", type=int, default=128)
  ap.add_argument("--dtype", default="float32", help="param and compute dtype")
  ap.add_argument("--no-torch", action="store_true")
  ap.add_argument("--hbm-gbps", type=float, default=0.0, help="HBM bandwidth for the roofline fraction")
  ap.add_argument("--min-time", type=float, default=5.0)
  ap.add_argument("--ab-fusion", action="store_true",
                  help="also time decode with fused projections (cfg.decode_fusion=True) against without, "
                       "the two interleaved over 3 rounds in this process (the host's drift cancels out)")
  args = ap.parse_args()

  if args.no_torch:
    cfg = presets.model_config(args.preset, param_dtype=args.dtype)
    params = params_lib.init_params(cfg, jax.random.key(0))
    hf = None
  else:
    cfg, params, hf = common.load_both(args.preset, args.weights)
  cfg = cfg.replace(compute_dtype=args.dtype)
  params = jax.tree.map(lambda x: x.astype(args.dtype), params)
  rng = np.random.default_rng(0)
  prompt = rng.integers(3, cfg.vocab_size, (args.batch, args.prompt_len)).astype(np.int32)
  lengths = jnp.full((args.batch,), args.prompt_len, jnp.int32)
  sp = sampling.SamplingParams.make(args.batch, temperature=0.0)
  prompt_j = jnp.asarray(prompt)

  def ours(c=cfg):
    out = sampling.sample_jit(c, params, prompt_j, lengths, jax.random.key(0), sp, None,
                              max_new_tokens=args.new_tokens)
    jax.block_until_ready(out.tokens)
    return out

  out = ours()
  assert int(jnp.min(out.lengths)) == args.new_tokens
  ab = {}
  if args.ab_fusion:
    fused, unfused = cfg.replace(decode_fusion=True), cfg.replace(decode_fusion=False)
    same = bool((np.asarray(ours(fused).tokens) == np.asarray(ours(unfused).tokens)).all())
    rounds = common.interleaved({"fused": lambda: ours(fused), "unfused": lambda: ours(unfused)}, 3, 3 * args.min_time)
    fused_s, unfused_s = (float(np.median(rounds[k])) for k in ("fused", "unfused"))
    ab = {"fused_ms_per_step": 1e3 * fused_s / args.new_tokens,
          "unfused_ms_per_step": 1e3 * unfused_s / args.new_tokens,
          "fusion_speedup": unfused_s / fused_s, "fusion_same_tokens": same}
  t_ours = common.timeit(ours, args.min_time)
  ntok = args.batch * args.new_tokens
  rec = {"bench": "decode", "preset": args.preset, "weights": args.weights, "batch": args.batch,
         "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "dtype": args.dtype,
         "ours_tokens_per_s": ntok / t_ours, "ours_ms_per_step": 1e3 * t_ours / args.new_tokens,
         **ab, **common.device_info()}
  if args.hbm_gbps:
    roof = roofline_tokens_per_s(cfg, args.batch, args.prompt_len + args.new_tokens, args.hbm_gbps * 1e9)
    rec.update(roofline_tokens_per_s=roof, fraction_of_roofline=(ntok / t_ours) / roof)
  if hf is not None:
    import os
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    ids = torch.from_numpy(prompt.astype(np.int64))
    mask = torch.ones_like(ids)

    def theirs():
      with torch.no_grad():
        return hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)

    gen = theirs()
    same = (gen[:, args.prompt_len:].numpy() == np.asarray(out.tokens)).mean()
    t_torch = common.timeit(theirs, args.min_time)
    rec.update(torch_tokens_per_s=ntok / t_torch, ratio_ours_over_torch=t_torch / t_ours,
               greedy_token_agreement=float(same), torch=torch.__version__)
  common.emit(rec)


if __name__ == "__main__":
  main()
