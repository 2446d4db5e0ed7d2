"""HF tensor names and layouts for our params, header validation, and streaming placement.

Every one of our params maps to one HF tensor (per layer for the stacked [num_layers, ...] params).
A `TensorMap` records how: our per-layer array is the HF array with each HF axis split into one or
more of our axes (e.g. q_proj rows = heads x head_dim) and the HF axes permuted (transposed for
torch Linear weights [out, in] -> our [in, out]). Loading goes through a *source* (safetensors files
or a GGUF file) that can read a rectangular block of one HF tensor, so each device shard is read
straight from disk: no whole-checkpoint copy on the host is ever made.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Protocol

import jax
import numpy as np

from foresight_jax.models import params as params_lib
from foresight_jax.models.config import ModelConfig


class CheckpointError(ValueError):
  """A checkpoint (config, file or tensor) cannot be imported or exported; the message names it."""


@dataclasses.dataclass(frozen=True)
class TensorMap:
  hf: str  # HF tensor name; "{i}" marks the layer index of a stacked param
  split: tuple[tuple[int, ...], ...]  # per HF axis: the sizes of our axes it splits into
  perm: tuple[int, ...]  # HF axes in our order: (0,) / (0, 1) plain, (1, 0) transposed

  @property
  def hf_shape(self) -> tuple[int, ...]:
    return tuple(math.prod(s) for s in self.split)

  @property
  def our_shape(self) -> tuple[int, ...]:
    return tuple(d for a in self.perm for d in self.split[a])

  @property
  def layered(self) -> bool:
    return "{i}" in self.hf

  def names(self, num_layers: int) -> list[str]:
    return [self.hf.format(i=i) for i in range(num_layers)] if self.layered else [self.hf]


def _lin(name: str, out: tuple[int, ...], inp: tuple[int, ...]) -> TensorMap:
  """A torch Linear weight [out, in] stored by us as [*in, *out]."""
  return TensorMap(name, (out, inp), (1, 0))


def _same(name: str, *dims: int) -> TensorMap:
  return TensorMap(name, (tuple(dims),), (0,))


def hf_tensor_maps(cfg: ModelConfig) -> dict[tuple[str, ...], TensorMap]:
  """Our param path -> the HF tensor it comes from (same keys as `params.param_specs(cfg)`)."""
  D, F, V, H = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_heads
  p = "model.layers.{i}."
  a = p + "self_attn."
  m: dict[tuple[str, ...], TensorMap] = {
      ("embed",): TensorMap("model.embed_tokens.weight", ((V,), (D,)), (0, 1)),
      ("final_norm",): _same("model.norm.weight", D),
      ("layers", "attn_norm"): _same(p + "input_layernorm.weight", D),
      ("layers", "mlp_norm"): _same(p + "post_attention_layernorm.weight", D),
      ("layers", "mlp", "gate"): _lin(p + "mlp.gate_proj.weight", (F,), (D,)),
      ("layers", "mlp", "up"): _lin(p + "mlp.up_proj.weight", (F,), (D,)),
      ("layers", "mlp", "down"): _lin(p + "mlp.down_proj.weight", (D,), (F,)),
  }
  if not cfg.tie_embeddings:
    m[("lm_head",)] = _lin("lm_head.weight", (V,), (D,))
  at: dict[str, TensorMap] = {}
  if cfg.is_mla:
    dqk, dv, dn, r = cfg.qk_head_dim, cfg.v_head_dim, cfg.qk_nope_head_dim, cfg.kv_lora_rank
    if cfg.q_lora_rank:
      at["q_a"] = _lin(a + "q_a_proj.weight", (cfg.q_lora_rank,), (D,))
      at["q_a_norm"] = _same(a + "q_a_layernorm.weight", cfg.q_lora_rank)
      at["q_b"] = _lin(a + "q_b_proj.weight", (H, dqk), (cfg.q_lora_rank,))
    else:
      at["q"] = _lin(a + "q_proj.weight", (H, dqk), (D,))
    at["kv_a"] = _lin(a + "kv_a_proj_with_mqa.weight", (r + cfg.qk_rope_head_dim,), (D,))
    at["kv_a_norm"] = _same(a + "kv_a_layernorm.weight", r)
    at["kv_b"] = _lin(a + "kv_b_proj.weight", (H, dn + dv), (r,))
    at["o"] = _lin(a + "o_proj.weight", (D,), (H, dv))
  else:
    K, hd = cfg.num_kv_heads, cfg.head_dim
    at["q"] = _lin(a + "q_proj.weight", (H, hd), (D,))
    at["k"] = _lin(a + "k_proj.weight", (K, hd), (D,))
    at["v"] = _lin(a + "v_proj.weight", (K, hd), (D,))
    at["o"] = _lin(a + "o_proj.weight", (D,), (H, hd))
    if cfg.attention_bias:
      at["q_bias"] = _same(a + "q_proj.bias", H, hd)
      at["k_bias"] = _same(a + "k_proj.bias", K, hd)
      at["v_bias"] = _same(a + "v_proj.bias", K, hd)
    if cfg.qk_norm:
      at["q_norm"] = _same(a + "q_norm.weight", hd)
      at["k_norm"] = _same(a + "k_norm.weight", hd)
  for k, v in at.items():
    m[("layers", "attn", k)] = v
  ours = {path for path, _ in params_lib.flatten_specs(params_lib.param_specs(cfg))}
  assert ours == set(m), f"checkpoint name map out of date: {sorted(ours ^ set(m))}"
  return m


class Source(Protocol):
  """Where tensors come from. `read` returns HF-layout values for a block given per HF axis as
  (start, stop); any float dtype (it is cast to the param dtype by the caller)."""

  def shapes(self) -> dict[str, tuple[int, ...]]: ...
  def where(self, name: str) -> str: ...
  def read(self, name: str, ranges: tuple[tuple[int, int], ...]) -> np.ndarray: ...


def validate(cfg: ModelConfig, source: Source, ignore: Callable[[str], bool] = lambda n: False,
             rename: Callable[[str], str] = lambda n: n) -> None:
  """Every expected tensor present with the right shape and no unexpected ones, from headers alone.

  `rename` maps an HF name to the source's own name (GGUF); `ignore(name)` skips harmless extras.
  """
  have = source.shapes()
  expected: dict[str, tuple[int, ...]] = {}
  for tm in hf_tensor_maps(cfg).values():
    for n in tm.names(cfg.num_layers):
      expected[rename(n)] = tm.hf_shape
  for name, shape in expected.items():
    if name not in have:
      raise CheckpointError(f"{source.where(name)}: missing tensor {name!r} (expected shape {shape})")
    if tuple(have[name]) != shape:
      raise CheckpointError(f"{source.where(name)}: tensor {name!r} has shape {tuple(have[name])}, "
                            f"expected {shape} from the model config")
  extra = sorted(n for n in have if n not in expected and not ignore(n))
  if extra:
    raise CheckpointError(f"{source.where(extra[0])}: unexpected tensor {extra[0]!r}"
                          + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))


def _norm(sl: slice, dim: int) -> tuple[int, int]:
  start, stop, step = sl.indices(dim)
  if step != 1:
    raise NotImplementedError("strided shard index")
  return start, stop


def read_block(source: Source, tm: TensorMap, name: str, index: tuple[slice, ...]) -> np.ndarray:
  """Our per-layer block `index` (slices over tm.our_shape) of HF tensor `name`, reading as little
  of the file as the layout allows (a contiguous HF range per axis)."""
  ranges: list[tuple[int, int]] = [(0, 0)] * len(tm.split)
  block_dims: list[tuple[int, ...]] = [()] * len(tm.split)
  post: list[slice] = []
  pos = 0
  for ax in tm.perm:
    dims = tm.split[ax]
    ss = [_norm(s, d) for s, d in zip(index[pos:pos + len(dims)], dims)]
    pos += len(dims)
    inner = math.prod(dims[1:])
    if all(s == (0, d) for s, d in zip(ss[1:], dims[1:])):
      ranges[ax] = (ss[0][0] * inner, ss[0][1] * inner)
      block_dims[ax] = (ss[0][1] - ss[0][0],) + dims[1:]
      post.extend(slice(None) for _ in dims)
    else:  # not a contiguous HF range: read the whole axis, slice after reshaping
      ranges[ax] = (0, math.prod(dims))
      block_dims[ax] = dims
      post.extend(slice(a, b) for a, b in ss)
  block = source.read(name, tuple(ranges))
  block = block.reshape(tuple(d for bd in block_dims for d in bd))
  starts = np.cumsum([0] + [len(bd) for bd in block_dims])
  order = [int(starts[ax]) + j for ax in tm.perm for j in range(len(block_dims[ax]))]
  return block.transpose(order)[tuple(post)]


_CHUNK_ELEMS = 1 << 22  # read granularity: bounds the transient host buffer (16 MB of fp32)


def _aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
  """np.empty on a 64-byte boundary: JAX's CPU client then adopts the buffer without a copy."""
  dtype = np.dtype(dtype)
  n = math.prod(shape) * dtype.itemsize
  raw = np.empty(n + align, np.uint8)
  off = (-raw.ctypes.data) % align
  return raw[off:off + n].view(dtype).reshape(shape)


def _callback(source: Source, tm: TensorMap, num_layers: int, dtype) -> Callable:
  """make_array_from_callback callback: fills one shard-sized buffer (the only one on the host)
  chunk by chunk, along the axis that is contiguous on disk (the first of HF axis 0's)."""
  lead = sum(len(tm.split[a]) for a in tm.perm[:tm.perm.index(0)])

  def cb(index):
    index = tuple(index)
    layers, inner = (_norm(index[0], num_layers), index[1:]) if tm.layered else ((0, 1), index)
    inner = tuple(slice(*_norm(s, d)) for s, d in zip(inner, tm.our_shape))
    shape = tuple(s.stop - s.start for s in inner)
    out = _aligned_empty(((layers[1] - layers[0],) if tm.layered else ()) + shape, dtype)
    c0, c1 = inner[lead].start, inner[lead].stop
    step = max(1, _CHUNK_ELEMS * max(1, c1 - c0) // max(1, math.prod(shape)))
    for j, layer in enumerate(range(*layers)):
      name = tm.hf.format(i=layer) if tm.layered else tm.hf
      dst = out[j] if tm.layered else out
      for c in range(c0, c1, step):
        e = min(c + step, c1)
        sub = inner[:lead] + (slice(c, e),) + inner[lead + 1:]
        dst[(slice(None),) * lead + (slice(c - c0, e - c0),)] = read_block(source, tm, name, sub)
    return out
  return cb


def place(cfg: ModelConfig, source: Source, mesh=None, source_name: Callable[[str], str] = lambda n: n
          ) -> dict[str, Any]:
  """Build the params pytree, each tensor read shard by shard from `source` onto its devices."""
  abstract = params_lib.flatten(params_lib.abstract_params(cfg, mesh))
  maps = hf_tensor_maps(cfg)
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  out = {}
  for path, sds in abstract.items():
    tm = maps[path]
    tm = dataclasses.replace(tm, hf=source_name(tm.hf))
    sharding = sds.sharding if sds.sharding is not None else default
    cb = _callback(source, tm, cfg.num_layers, np.dtype(sds.dtype))
    out[path] = jax.make_array_from_callback(sds.shape, sharding, cb)
  return params_lib.unflatten(out)


def to_hf(tm: TensorMap, ours: np.ndarray) -> np.ndarray:
  """Inverse of the load layout for one (per-layer) array: ours -> HF layout."""
  starts = np.cumsum([0] + [len(tm.split[ax]) for ax in tm.perm])
  pos_of = {ax: int(starts[k]) for k, ax in enumerate(tm.perm)}
  order = [pos_of[ax] + j for ax in range(len(tm.split)) for j in range(len(tm.split[ax]))]
  return np.ascontiguousarray(ours.transpose(order)).reshape(tm.hf_shape)


def iter_hf_tensors(cfg: ModelConfig, params) -> Iterable[tuple[str, TensorMap, Callable[[], np.ndarray]]]:
  """(HF name, map, thunk giving the HF-layout host array) for every tensor, one layer at a time."""
  flat = params_lib.flatten(params)
  for path, tm in hf_tensor_maps(cfg).items():
    if path not in flat:
      raise CheckpointError(f"params lack {params_lib.path_str(path)!r} required by the config")
    arr = flat[path]
    want = ((cfg.num_layers,) if tm.layered else ()) + tm.our_shape
    if tuple(arr.shape) != want:
      raise CheckpointError(f"param {params_lib.path_str(path)!r} has shape {tuple(arr.shape)}, expected {want}")
    if tm.layered:
      for i in range(cfg.num_layers):
        yield tm.hf.format(i=i), tm, (lambda arr=arr, i=i, tm=tm: to_hf(tm, np.asarray(arr[i])))
    else:
      yield tm.hf, tm, (lambda arr=arr, tm=tm: to_hf(tm, np.asarray(arr)))
