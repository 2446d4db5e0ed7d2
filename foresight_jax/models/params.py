"""Parameter declarations: every tensor once, with shape, logical axes and initializer.

From these specs come the abstract shapes (no memory), the shardings, random init (materialised
straight onto its shards) and the checkpoint loaders' targets. Layer parameters are stacked along a
leading "layers" axis so the decoder can `lax.scan` over them.
"""
from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Any, Iterator

import jax
import jax.numpy as jnp

from foresight_jax import sharding as sharding_lib
from foresight_jax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class ParamSpec:
  shape: tuple[int, ...]
  axes: tuple[str | None, ...]
  init: str = "normal"  # normal | ones | zeros
  std: float = 0.02

  def __post_init__(self):
    if len(self.shape) != len(self.axes):
      raise ValueError(f"shape {self.shape} and axes {self.axes} differ in rank")


def _spec_maker(cfg: ModelConfig):
  """ParamSpec with the model's initializer_range as the default std."""
  return functools.partial(ParamSpec, std=cfg.initializer_range)


def _branch_std(cfg: ModelConfig) -> float:
  """The std of a residual branch's output projection (attention o, MLP down): scaled by
  1/sqrt(2 layers) so the residual stream's variance does not grow with depth (GPT-2 / MaxText)."""
  return cfg.initializer_range / (2 * cfg.num_layers) ** 0.5


def _attention_specs(cfg: ModelConfig) -> dict[str, ParamSpec]:
  L, D, H = cfg.num_layers, cfg.hidden_size, cfg.num_heads
  spec = _spec_maker(cfg)
  out_std = _branch_std(cfg)
  if cfg.is_mla:
    dqk, dv = cfg.qk_head_dim, cfg.v_head_dim
    s = {}
    if cfg.q_lora_rank:
      s["q_a"] = spec((L, D, cfg.q_lora_rank), ("layers", "embed", "q_lora"))
      s["q_a_norm"] = spec((L, cfg.q_lora_rank), ("layers", "norm"), "ones")
      s["q_b"] = spec((L, cfg.q_lora_rank, H, dqk), ("layers", "q_lora", "heads", "head_dim"))
    else:
      s["q"] = spec((L, D, H, dqk), ("layers", "embed", "heads", "head_dim"))
    s["kv_a"] = spec((L, D, cfg.kv_lora_rank + cfg.qk_rope_head_dim), ("layers", "embed", "kv_lora"))
    s["kv_a_norm"] = spec((L, cfg.kv_lora_rank), ("layers", "norm"), "ones")
    s["kv_b"] = spec((L, cfg.kv_lora_rank, H, cfg.qk_nope_head_dim + dv),
                     ("layers", "kv_lora", "heads", "head_dim"))
    s["o"] = spec((L, H, dv, D), ("layers", "heads", "head_dim", "embed"), std=out_std)
    return s
  K, hd = cfg.num_kv_heads, cfg.head_dim
  s = {
      "q": spec((L, D, H, hd), ("layers", "embed", "heads", "head_dim")),
      "k": spec((L, D, K, hd), ("layers", "embed", "kv_heads", "head_dim")),
      "v": spec((L, D, K, hd), ("layers", "embed", "kv_heads", "head_dim")),
      "o": spec((L, H, hd, D), ("layers", "heads", "head_dim", "embed"), std=out_std),
  }
  if cfg.attention_bias:
    s["q_bias"] = spec((L, H, hd), ("layers", "heads", "head_dim"), "zeros")
    s["k_bias"] = spec((L, K, hd), ("layers", "kv_heads", "head_dim"), "zeros")
    s["v_bias"] = spec((L, K, hd), ("layers", "kv_heads", "head_dim"), "zeros")
  if cfg.qk_norm:
    s["q_norm"] = spec((L, hd), ("layers", "norm"), "ones")
    s["k_norm"] = spec((L, hd), ("layers", "norm"), "ones")
  return s


def param_specs(cfg: ModelConfig) -> dict[str, Any]:
  L, D, F, V = cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
  spec = _spec_maker(cfg)
  specs: dict[str, Any] = {
      "embed": spec((V, D), ("vocab", "embed")),
      "final_norm": spec((D,), ("norm",), "ones"),
      "layers": {
          "attn_norm": spec((L, D), ("layers", "norm"), "ones"),
          "mlp_norm": spec((L, D), ("layers", "norm"), "ones"),
          "attn": _attention_specs(cfg),
          "mlp": {
              "gate": spec((L, D, F), ("layers", "embed", "mlp")),
              "up": spec((L, D, F), ("layers", "embed", "mlp")),
              "down": spec((L, F, D), ("layers", "mlp", "embed"), std=_branch_std(cfg)),
          },
      },
  }
  if not cfg.tie_embeddings:
    specs["lm_head"] = spec((D, V), ("embed", "vocab"))
  return specs


def _is_spec(x) -> bool:
  return isinstance(x, ParamSpec)


def flatten_specs(specs, prefix=()) -> Iterator[tuple[tuple[str, ...], ParamSpec]]:
  for k in sorted(specs):
    v = specs[k]
    if _is_spec(v):
      yield prefix + (k,), v
    else:
      yield from flatten_specs(v, prefix + (k,))


def path_str(path: tuple[str, ...]) -> str:
  return "/".join(path)


def param_shardings(cfg: ModelConfig, mesh) -> dict[str, Any]:
  return jax.tree.map(lambda s: sharding_lib.logical_sharding(mesh, s.axes, s.shape),
                      param_specs(cfg), is_leaf=_is_spec)


def abstract_params(cfg: ModelConfig, mesh=None) -> dict[str, Any]:
  """ShapeDtypeStructs (with shardings when a mesh is given): the target of init and loaders."""
  dtype = jnp.dtype(cfg.param_dtype)

  def one(s: ParamSpec):
    sh = sharding_lib.logical_sharding(mesh, s.axes, s.shape) if mesh is not None else None
    return jax.ShapeDtypeStruct(s.shape, dtype, sharding=sh)

  return jax.tree.map(one, param_specs(cfg), is_leaf=_is_spec)


def _init_leaf(spec: ParamSpec, key, dtype):
  if spec.init == "ones":
    return jnp.ones(spec.shape, dtype)
  if spec.init == "zeros":
    return jnp.zeros(spec.shape, dtype)
  return (spec.std * jax.random.truncated_normal(key, -2.0, 2.0, spec.shape, jnp.float32)).astype(dtype)


def init_params(cfg: ModelConfig, key: jax.Array, mesh=None) -> dict[str, Any]:
  """Random params; with a mesh, each shard is generated in place (never the full tensor on one host)."""
  specs = param_specs(cfg)
  dtype = jnp.dtype(cfg.param_dtype)

  def build(key):
    # fold the path's hash into the key so each tensor's values are independent of tree order
    return {path_str(p): _init_leaf(s, jax.random.fold_in(key, zlib.crc32(path_str(p).encode()) & 0x7FFFFFFF),
                                    dtype) for p, s in flatten_specs(specs)}

  out_sh = None
  if mesh is not None:
    flat_sh = {path_str(p): sharding_lib.logical_sharding(mesh, s.axes, s.shape)
               for p, s in flatten_specs(specs)}
    out_sh = flat_sh
  flat = jax.jit(build, out_shardings=out_sh)(key)
  return unflatten({tuple(k.split("/")): v for k, v in flat.items()})


def unflatten(flat: dict[tuple[str, ...], Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, v in flat.items():
    d = out
    for k in path[:-1]:
      d = d.setdefault(k, {})
    d[path[-1]] = v
  return out


def flatten(tree, prefix=()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k in sorted(tree):
    v = tree[k]
    if isinstance(v, dict):
      out.update(flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out
