"""Hugging Face checkpoints: config.json <-> ModelConfig and safetensors import/export.

Safetensors are read with a small header parser plus positional reads (`os.preadv`) instead of
`safe_open`: its numpy backend cannot return bfloat16 and its flax backend materialises on the
default device. Each read fetches one contiguous row block of one tensor, so importing never holds
more than one shard-stacked tensor on the host besides the finished params.
"""
from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

import jax.numpy as jnp
import ml_dtypes
import numpy as np

from foresight_jax.models.checkpoint import layout
from foresight_jax.models.checkpoint.layout import CheckpointError
from foresight_jax.models.config import ModelConfig

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                 "youtu": "YoutuForCausalLM"}
_ARCH_TO_FAMILY = {v: k for k, v in ARCHITECTURES.items()}
_TIE_DEFAULT = {"llama": False, "qwen2": False, "qwen3": False, "youtu": True}
DTYPES = {"F32": np.dtype(np.float32), "F16": np.dtype(np.float16), "BF16": np.dtype(ml_dtypes.bfloat16),
          "F64": np.dtype(np.float64)}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 << 20


# ------------------------------------------------------------------------------------------ config
def _rope(d: dict, where: str) -> tuple[float, tuple | None]:
  rp = d.get("rope_parameters")
  if not isinstance(rp, dict):
    rp = dict(d.get("rope_scaling") or {})
  theta = rp.get("rope_theta", d.get("rope_theta", 10000.0))
  kind = rp.get("rope_type", rp.get("type")) or "default"
  if kind == "default":
    return float(theta), None
  if kind == "llama3":
    try:
      scaling = (float(rp["factor"]), float(rp["low_freq_factor"]), float(rp["high_freq_factor"]),
                 int(rp["original_max_position_embeddings"]))
    except KeyError as e:
      raise CheckpointError(f"{where}: llama3 rope scaling lacks {e.args[0]!r}") from None
    return float(theta), scaling
  raise CheckpointError(f"{where}: unsupported rope_type {kind!r} (supported: default, llama3)")


def hf_config_to_model_config(hf: dict[str, Any] | Any, where: str = "config.json", **overrides) -> ModelConfig:
  """Map an HF config (dict or PretrainedConfig) onto our ModelConfig; unsupported features raise."""
  d = dict(hf.to_dict() if hasattr(hf, "to_dict") else hf)
  mt = d.get("model_type")
  family = mt if mt in ARCHITECTURES else None
  if family is None:
    for arch in d.get("architectures") or ():
      family = family or _ARCH_TO_FAMILY.get(arch)
  if family is None:
    raise CheckpointError(f"{where}: unknown architecture (model_type={mt!r}, architectures="
                          f"{d.get('architectures')}); supported model types: {sorted(ARCHITECTURES)}")

  def need(key):
    if d.get(key) is None:
      raise CheckpointError(f"{where}: missing required field {key!r}")
    return d[key]

  def refuse(cond: bool, what: str):
    if cond:
      raise CheckpointError(f"{where}: unsupported {family} feature: {what}")

  refuse(d.get("hidden_act", "silu") != "silu", f"hidden_act={d.get('hidden_act')!r}")
  refuse(bool(d.get("mlp_bias")), "mlp_bias")
  refuse(bool(d.get("use_sliding_window")), "sliding-window attention")
  refuse(any(t != "full_attention" for t in d.get("layer_types") or ()), f"layer_types={d.get('layer_types')}")
  refuse(family != "qwen2" and bool(d.get("attention_bias")), "attention_bias (bias on o_proj)")
  theta, scaling = _rope(d, where)
  H, D = need("num_attention_heads"), need("hidden_size")
  eos = d.get("eos_token_id")
  eos = () if eos is None else tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
  kw: dict[str, Any] = dict(
      family=family, vocab_size=need("vocab_size"), hidden_size=D, intermediate_size=need("intermediate_size"),
      num_layers=need("num_hidden_layers"), num_heads=H, num_kv_heads=d.get("num_key_value_heads") or H,
      head_dim=d.get("head_dim") or D // H, rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
      rope_theta=theta, rope_llama3_scaling=scaling, attention_bias=family == "qwen2",
      qk_norm=family == "qwen3", tie_embeddings=bool(d.get("tie_word_embeddings", _TIE_DEFAULT[family])),
      max_position_embeddings=int(d.get("max_position_embeddings", 4096)),
      bos_token_id=d.get("bos_token_id"), eos_token_ids=eos,
      initializer_range=float(d.get("initializer_range", 0.02)))
  if family == "youtu":
    kw.update(q_lora_rank=d.get("q_lora_rank") or None, kv_lora_rank=need("kv_lora_rank"),
              qk_nope_head_dim=need("qk_nope_head_dim"), qk_rope_head_dim=need("qk_rope_head_dim"),
              v_head_dim=need("v_head_dim"), rope_interleave=bool(d.get("rope_interleave", True)))
    kw["head_dim"] = kw["qk_rope_head_dim"]
    refuse(kw["num_kv_heads"] != H, "num_key_value_heads != num_attention_heads")
  kw.update(overrides)
  try:
    return ModelConfig(**kw)
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{where}: {e}") from None


def model_config_to_hf_config(cfg: ModelConfig) -> dict[str, Any]:
  """The config.json `transformers.AutoConfig` reads back as the same model."""
  f = cfg.family
  bad = []
  if f == "youtu" and not cfg.is_mla or f != "youtu" and cfg.is_mla:
    bad.append("MLA attention is only exported as youtu")
  if cfg.attention_bias != (f == "qwen2"):
    bad.append(f"attention_bias={cfg.attention_bias}")
  if cfg.qk_norm != (f == "qwen3"):
    bad.append(f"qk_norm={cfg.qk_norm}")
  if cfg.rope_interleave and f != "youtu":
    bad.append("rope_interleave")
  if bad:
    raise CheckpointError(f"cannot express {f} config in HF {ARCHITECTURES[f]}: {', '.join(bad)}")
  rope: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
  if cfg.rope_llama3_scaling is not None:
    fa, lo, hi, old = cfg.rope_llama3_scaling
    rope.update(rope_type="llama3", factor=fa, low_freq_factor=lo, high_freq_factor=hi,
                original_max_position_embeddings=old)
  eos = list(cfg.eos_token_ids)
  d: dict[str, Any] = dict(
      architectures=[ARCHITECTURES[f]], model_type=f, vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
      intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
      hidden_act="silu", max_position_embeddings=cfg.max_position_embeddings, rms_norm_eps=cfg.rms_norm_eps,
      rope_parameters=rope, tie_word_embeddings=cfg.tie_embeddings, bos_token_id=cfg.bos_token_id,
      eos_token_id=None if not eos else eos[0] if len(eos) == 1 else eos, pad_token_id=None,
      attention_dropout=0.0, initializer_range=cfg.initializer_range, use_cache=True, dtype=cfg.param_dtype)
  if f == "llama":
    d.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
  elif f in ("qwen2", "qwen3"):
    d.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.num_layers,
             layer_types=["full_attention"] * cfg.num_layers)
    if f == "qwen3":
      d["attention_bias"] = False
  else:
    d.update(num_key_value_heads=cfg.num_heads, q_lora_rank=cfg.q_lora_rank, kv_lora_rank=cfg.kv_lora_rank,
             qk_nope_head_dim=cfg.qk_nope_head_dim, qk_rope_head_dim=cfg.qk_rope_head_dim,
             v_head_dim=cfg.v_head_dim, qk_head_dim=cfg.qk_head_dim, rope_interleave=cfg.rope_interleave,
             attention_bias=False, head_dim=cfg.qk_rope_head_dim)
  return d


def read_config(ckpt_dir: str) -> dict[str, Any]:
  path = os.path.join(ckpt_dir, "config.json")
  try:
    with open(path) as fh:
      d = json.load(fh)
  except FileNotFoundError:
    raise CheckpointError(f"{path}: not found (an HF checkpoint dir needs config.json)") from None
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path}: unreadable config: {e}") from None
  if not isinstance(d, dict):
    raise CheckpointError(f"{path}: config is not a JSON object")
  return d


# ------------------------------------------------------------------------------------- safetensors
class _File:
  """One safetensors file: parsed, checked header and positional block reads."""

  def __init__(self, path: str):
    self.path = path
    try:
      size = os.path.getsize(path)
      with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
          raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
          raise CheckpointError(f"{path}: corrupt or truncated safetensors header (claims {n} bytes, "
                                f"file has {size})")
        header = json.loads(fh.read(n))
    except OSError as e:
      raise CheckpointError(f"{path}: cannot read: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
      raise CheckpointError(f"{path}: corrupt safetensors header: {e}") from None
    if not isinstance(header, dict):
      raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    self.base = 8 + n
    self.info: dict[str, tuple[np.dtype, tuple[int, ...], int]] = {}
    for name, t in header.items():
      try:
        dt, shape, (b, e) = t["dtype"], tuple(int(s) for s in t["shape"]), t["data_offsets"]
      except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: corrupt header entry for tensor {name!r}") from None
      if dt not in DTYPES:
        raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dt} (need {sorted(DTYPES)})")
      if e - b != math.prod(shape) * DTYPES[dt].itemsize or b < 0:
        raise CheckpointError(f"{path}: corrupt header: tensor {name!r} byte range {b}..{e} does not hold "
                              f"{dt}{list(shape)}")
      if self.base + e > size:
        raise CheckpointError(f"{path}: truncated safetensors file: tensor {name!r} ends at byte "
                              f"{self.base + e}, file has {size}")
      self.info[name] = (DTYPES[dt], shape, self.base + b)
    self._fd: int | None = None

  def read(self, name: str, ranges) -> np.ndarray:
    dt, shape, off = self.info[name]
    if self._fd is None:
      self._fd = os.open(self.path, os.O_RDONLY)
    r0, r1 = ranges[0]
    row = math.prod(shape[1:]) * dt.itemsize
    buf = np.empty((r1 - r0,) + shape[1:], dt)  # whole rows r0:r1 (contiguous on disk)
    mv, pos, want = memoryview(buf.reshape(-1).view(np.uint8)), 0, (r1 - r0) * row
    while pos < want:
      got = os.preadv(self._fd, [mv[pos:]], off + r0 * row + pos)
      if got <= 0:
        raise CheckpointError(f"{self.path}: unexpected end of file reading tensor {name!r}")
      pos += got
    if len(ranges) > 1 and tuple(ranges[1]) != (0, shape[1]):
      buf = buf[:, ranges[1][0]:ranges[1][1]]
    return buf

  def close(self):
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None


class SafetensorsSource:
  def __init__(self, ckpt_dir: str):
    single = os.path.join(ckpt_dir, "model.safetensors")
    index = os.path.join(ckpt_dir, "model.safetensors.index.json")
    if os.path.exists(index):
      try:
        with open(index) as fh:
          weight_map = json.load(fh)["weight_map"]
        files = sorted(set(weight_map.values()))
      except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index}: corrupt shard index: {e!r}") from None
    elif os.path.exists(single):
      weight_map, files = None, ["model.safetensors"]
    else:
      raise CheckpointError(f"{ckpt_dir}: no model.safetensors or model.safetensors.index.json")
    self.dir = ckpt_dir
    self.files: dict[str, _File] = {}
    self._owner: dict[str, _File] = {}
    for fn in files:
      path = os.path.join(ckpt_dir, fn)
      if not os.path.exists(path):
        raise CheckpointError(f"{index}: shard file {path} is missing")
      f = self.files[fn] = _File(path)
      for name in f.info:
        if name in self._owner:
          raise CheckpointError(f"{path}: tensor {name!r} also stored in {self._owner[name].path}")
        self._owner[name] = f
    if weight_map is not None:
      for name, fn in weight_map.items():
        if self._owner.get(name) is not self.files[fn]:
          raise CheckpointError(f"{index}: tensor {name!r} is mapped to {fn} but not stored there")

  def shapes(self):
    return {n: f.info[n][1] for n, f in self._owner.items()}

  def where(self, name: str) -> str:
    f = self._owner.get(name)
    return f.path if f is not None else (os.path.join(self.dir, "model.safetensors") if len(self.files) == 1
                                          else os.path.join(self.dir, "model.safetensors.index.json"))

  def read(self, name, ranges):
    return self._owner[name].read(name, ranges)

  def close(self):
    for f in self.files.values():
      f.close()


def _ignorable(cfg: ModelConfig):
  def ignore(name: str) -> bool:
    # rotary tables some exporters save; HF drops a stored lm_head when embeddings are tied
    return name.endswith("rotary_emb.inv_freq") or (cfg.tie_embeddings and name == "lm_head.weight")
  return ignore


def load_hf(ckpt_dir: str, dtype=None, mesh=None, compute_dtype=None):
  dtype = jnp.dtype(dtype or "float32").name
  cfg = hf_config_to_model_config(read_config(ckpt_dir), where=os.path.join(ckpt_dir, "config.json"),
                                  param_dtype=dtype, compute_dtype=jnp.dtype(compute_dtype or dtype).name)
  source = SafetensorsSource(ckpt_dir)
  try:
    layout.validate(cfg, source, ignore=_ignorable(cfg))
    params = layout.place(cfg, source, mesh)
  finally:
    source.close()
  return cfg, params


def save_pretrained(cfg: ModelConfig, params, out_dir: str) -> None:
  """Write config.json + model.safetensors (HF names and [out, in] layouts), one tensor at a time."""
  hf_cfg = model_config_to_hf_config(cfg)
  dt = np.dtype(jnp.dtype(cfg.param_dtype))
  if dt not in _DTYPE_NAMES:
    raise CheckpointError(f"cannot write param dtype {cfg.param_dtype} to safetensors")
  entries = sorted(layout.iter_hf_tensors(cfg, params), key=lambda e: e[0])
  header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
  off = 0
  for name, tm, _ in entries:
    nbytes = math.prod(tm.hf_shape) * dt.itemsize
    header[name] = {"dtype": _DTYPE_NAMES[dt], "shape": list(tm.hf_shape), "data_offsets": [off, off + nbytes]}
    off += nbytes
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "model.safetensors")
  tmp = path + ".tmp"
  with open(tmp, "wb") as fh:
    fh.write(struct.pack("<Q", len(blob)) + blob)
    for _, _, get in entries:
      fh.write(np.ascontiguousarray(get(), dtype=dt).reshape(-1).view(np.uint8).data)
  os.replace(tmp, path)
  with open(os.path.join(out_dir, "config.json"), "w") as fh:
    json.dump(hf_cfg, fh, indent=2, sort_keys=True)
