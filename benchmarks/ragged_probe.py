"""Device probe for `kernels._cudnn_packed_or_none`: which mask types cuDNN's ragged (packed) layout
accepts through jax's private entry point, and whether each is exact against the plain reference,
for MHA and GQA (whose K/V offsets jax scales correctly from 0.11.1). One JSON line per case:
  python benchmarks/ragged_probe.py"""
import json

import jax
import jax.numpy as jnp
import numpy as np
from jax._src.cudnn import fused_attention_stablehlo as fa

from foresight_jax.models import kernels, layers

b, t, h, d = 2, 256, 4, 64
seg = np.ones((b, t), np.int32)
seg[0, 100:] = 2
seg[0, 240:] = 0
seg[1, :30] = 0
seg = jnp.asarray(seg)
pos = jnp.arange(t)
real = (np.asarray(seg) != 0)[:, :, None, None]
lengths, starts, _ = kernels.segment_runs(seg, 4)
for kh, mask_type in ((4, "PADDING_CAUSAL"), (4, "CAUSAL"), (4, "PADDING"), (2, "PADDING_CAUSAL")):
  ks = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(ks[0], (b, t, h, d), jnp.bfloat16)
  k = jax.random.normal(ks[1], (b, t, kh, d), jnp.bfloat16)
  v = jax.random.normal(ks[2], (b, t, kh, d), jnp.bfloat16)
  f32 = lambda x: x.astype(jnp.float32)
  ref = layers.dot_attention(f32(q), f32(k), f32(v), layers.attention_mask(pos, pos, seg, seg), d ** -0.5)
  rec = {"probe": "ragged_mask_type", "kv_heads": kh, "heads": h, "mask_type": mask_type, "jax": jax.__version__}
  try:
    f = jax.jit(lambda q, k, v, mt=getattr(fa.MaskType, mask_type): fa.dot_product_attention(
        q, k, v, q_seqlen=lengths, kv_seqlen=lengths, q_offsets=starts, kv_offsets=starts, scale=d ** -0.5, mask_type=mt))
    out = np.asarray(f(q, k, v), np.float32)
    rec["max_err"] = float(np.abs(out * real - np.asarray(ref) * real).max())
  except Exception as e:  # a refusal is the finding
    rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
  print(json.dumps(rec), flush=True)
