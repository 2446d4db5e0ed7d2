"""Peak host memory of `load_pretrained` on a >= 1 GB random Llama-shaped safetensors checkpoint.

    python benchmarks/import_memory.py [--gb 1.2] [--dtype float32] [--keep DIR]

Writes the checkpoint tensor by tensor (never the whole model in memory), then loads it in a fresh
subprocess that samples its own RSS every millisecond or so; the baseline is taken after all imports
and JAX backend start-up. Prints one JSON line:
{"checkpoint_bytes", "peak_rss_delta_bytes", "ratio", ...}; ratio = peak delta / checkpoint size
(on a CPU backend the loaded params themselves live in host memory, so 1.0 is the floor).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np


def llama_config(target_bytes: int, itemsize: int):
  from foresight_jax.models.config import ModelConfig
  base = dict(family="llama", vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_heads=32,
              num_kv_heads=8, head_dim=64, rms_norm_eps=1e-5, rope_theta=10000.0, tie_embeddings=False,
              bos_token_id=1, eos_token_ids=(2,))
  from foresight_jax.models.config import param_count
  per_layer = param_count(ModelConfig(**base, num_layers=2)) - param_count(ModelConfig(**base, num_layers=1))
  fixed = param_count(ModelConfig(**base, num_layers=1)) - per_layer
  layers = max(1, math.ceil((target_bytes / itemsize - fixed) / per_layer))
  return ModelConfig(**base, num_layers=layers)


def write_checkpoint(d: str, target_bytes: int, dtype: str) -> int:
  """Random HF-layout Llama checkpoint streamed to d/model.safetensors; returns its size."""
  import ml_dtypes
  from foresight_jax.models.checkpoint import layout, model_config_to_hf_config
  dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
  cfg = llama_config(target_bytes, dt.itemsize).replace(param_dtype=dtype)
  names = []
  for tm in layout.hf_tensor_maps(cfg).values():
    names += [(n, tm.hf_shape) for n in tm.names(cfg.num_layers)]
  names.sort()
  header, off = {"__metadata__": {"format": "pt"}}, 0
  for n, shape in names:
    nb = math.prod(shape) * dt.itemsize
    header[n] = {"dtype": {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[dtype],
                 "shape": list(shape), "data_offsets": [off, off + nb]}
    off += nb
  blob = json.dumps(header).encode()
  blob += b" " * (-len(blob) % 8)
  rng = np.random.default_rng(0)
  path = os.path.join(d, "model.safetensors")
  with open(path, "wb") as fh:
    fh.write(struct.pack("<Q", len(blob)) + blob)
    for n, shape in names:
      rows = max(1, (1 << 24) // max(1, math.prod(shape[1:])))  # ~16M values per chunk
      for r in range(0, shape[0], rows):
        chunk = rng.standard_normal((min(rows, shape[0] - r),) + shape[1:], dtype=np.float32) * 0.02
        fh.write(chunk.astype(dt).tobytes())
  with open(os.path.join(d, "config.json"), "w") as fh:
    json.dump(model_config_to_hf_config(cfg), fh)
  return os.path.getsize(path)


_CHILD = r"""
import json, os, sys, threading, time
import psutil, jax, jax.numpy as jnp
from foresight_jax.models.checkpoint import load_pretrained
jnp.zeros(1).block_until_ready()  # backend up before the baseline
proc = psutil.Process()
base = proc.memory_info().rss
peak, done = [base], [False]
def poll():
  while not done[0]:
    peak[0] = max(peak[0], proc.memory_info().rss)
    time.sleep(0.001)
t = threading.Thread(target=poll, daemon=True); t.start()
t0 = time.perf_counter()
cfg, params = load_pretrained(sys.argv[1], dtype=sys.argv[2])
jax.block_until_ready(params)
dt = time.perf_counter() - t0
done[0] = True; t.join()
end = proc.memory_info().rss
peak[0] = max(peak[0], end)
nbytes = sum(x.nbytes for x in jax.tree.leaves(params))
print(json.dumps({"peak": peak[0] - base, "final": end - base, "params_bytes": nbytes, "load_s": dt, "backend": jax.default_backend()}))
"""


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--gb", type=float, default=1.2, help="checkpoint size to generate (GB, >= 1)")
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                  help="dtype on disk and of the loaded params")
  ap.add_argument("--keep", default=None, help="write the checkpoint here and keep it")
  args = ap.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    d = args.keep or tmp
    os.makedirs(d, exist_ok=True)
    ckpt_bytes = write_checkpoint(d, int(args.gb * 1e9), args.dtype)
    env = dict(os.environ)
    env.setdefault("XLA_FLAGS", "")
    out = subprocess.run([sys.executable, "-c", _CHILD, d, args.dtype], env=env, check=True,
                         capture_output=True, text=True)
    child = json.loads(out.stdout.strip().splitlines()[-1])
  print(json.dumps({"checkpoint_bytes": ckpt_bytes, "peak_rss_delta_bytes": child["peak"],
                    "ratio": round(child["peak"] / ckpt_bytes, 3), "final_rss_delta_bytes": child["final"],
                    "params_bytes": child["params_bytes"],
                    "load_seconds": round(child["load_s"], 2), "backend": child["backend"],
                    "dtype": args.dtype}))


if __name__ == "__main__":
  main()
