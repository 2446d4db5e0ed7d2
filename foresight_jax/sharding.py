"""Mesh construction and the one logical-axis rules table.

Every parameter and activation names its dimensions with logical axes ("embed", "mlp", "batch"...).
`RULES` maps them onto the physical mesh axes (data, fsdp, tensor). The same model code runs on
1 CPU device, forced host devices, a GPU or a pod slice: only the mesh changes.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or tuple of axes, or None = replicated). First match wins.
RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # activations
    ("batch", ("data", "fsdp")),
    ("seq", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("cache_seq", None),
    # parameters
    ("layers", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("q_lora", None),
    ("kv_lora", None),
    ("norm", None),
)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> jax.sharding.Mesh:
  """A (data, fsdp, tensor) mesh; one size may be -1 to take the remaining devices."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = [data, fsdp, tensor]
  if sizes.count(-1) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got data={data} fsdp={fsdp} tensor={tensor}")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f"mesh (data={data}, fsdp={fsdp}, tensor={tensor}) does not divide "
                       f"{len(devices)} devices")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                     f"have {len(devices)}")
  # Auto axes: shardings are propagated by XLA from our constraints (not sharding-in-types).
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3,
                       devices=devices)


def logical_to_spec(axes: Sequence[str | None], rules=RULES) -> P:
  return nn.logical_to_mesh_axes(tuple(axes), rules)


def _fit_spec(spec: P, shape: Sequence[int], mesh) -> P:
  """Drop mesh axes that do not divide a dimension (e.g. 9 heads on tensor=2): replicate instead."""
  out = []
  for dim, ax in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    if ax is None:
      out.append(None)
      continue
    names = ax if isinstance(ax, tuple) else (ax,)
    size = math.prod(mesh.shape[n] for n in names)
    out.append(ax if dim % size == 0 else None)
  return P(*out)


def logical_sharding(mesh, axes: Sequence[str | None], shape: Sequence[int] | None = None,
                     rules=RULES) -> NamedSharding:
  spec = logical_to_spec(axes, rules)
  if shape is not None:
    spec = _fit_spec(spec, shape, mesh)
  return NamedSharding(mesh, spec)


def constrain(x: jax.Array, axes: Sequence[str | None], rules=RULES) -> jax.Array:
  """Sharding hint for an activation; a no-op when no mesh is set (plain single-device use)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or math.prod(mesh.shape.values()) == 1:
    return x
  spec = _fit_spec(logical_to_spec(axes, rules), x.shape, mesh)
  return jax.lax.with_sharding_constraint(x, spec)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def host_local_batch_slice(global_batch: int) -> slice:
  """Rows of the global batch this process feeds in a multi-controller run."""
  n, i = jax.process_count(), jax.process_index()
  if global_batch % n:
    raise ValueError(f"global batch {global_batch} does not divide over {n} processes")
  per = global_batch // n
  return slice(i * per, (i + 1) * per)


def shard_host_array(x: np.ndarray, mesh, axes: Sequence[str | None]) -> jax.Array:
  """Place a host array (the full global value, identical on every host) onto its shards."""
  sharding = logical_sharding(mesh, axes, x.shape)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
