"""Training checkpoints: one orbax composite per step = train state + data-iterator state + meta.

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=3)
    ckpt.save(step, state, data_state=it.get_state(), meta={"model": cfg.to_dict()})
    restored = ckpt.restore_latest(abstract_state)          # None when there is nothing to resume
    state, data_state, meta = restored
    ckpt.close()                                           # waits for the async write

Layout: `<dir>/<step>/{state,data,meta}`. `state` is the TrainState as a plain dict (step, params,
opt_state, rng, skipped) written by `StandardCheckpointHandler` (tensorstore, one shard per
device, restored straight onto the target shardings); `data` is the iterator's JSON state, so the
model and the data position are committed together and can never disagree; `meta` is JSON
(model config, for the error message when shapes disagree).

Atomicity (why an interrupted save never hides the last good one): orbax writes every item into
`<dir>/<step>.orbax-checkpoint-tmp-*` and renames it to `<dir>/<step>` only once all of it is on
disk (plus a commit marker on object stores); `latest_step()` lists finished step directories only,
and old checkpoints beyond `max_to_keep` are deleted only after the new one is committed. Saves are
async: `save` returns once the arrays are copied off the devices, the write runs in a background
thread, and the next `save`/`wait`/`close` joins it. Leftover tmp dirs from a crashed writer are
removed when the manager opens the directory.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from foresight_jax.train.state import TrainState


class CheckpointMismatchError(ValueError):
  """The checkpoint's tensors do not fit the model being trained (raised before any compute)."""


def _handlers() -> dict[str, ocp.CheckpointHandler]:
  # explicit handlers: without them a fresh manager cannot restore a composite it did not save
  return {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
          "meta": ocp.JsonCheckpointHandler()}


def _flat_shapes(tree) -> dict[str, tuple[tuple[int, ...], str]]:
  """'params/layers/mlp/up' -> (shape, dtype), with orbax's own leaf naming (so both sides agree)."""
  flat = ocp.tree.to_flat_dict(tree, sep="/")
  return {k: (tuple(v.shape), str(v.dtype)) for k, v in flat.items() if hasattr(v, "shape")}


def _config_diff(saved: dict | None, current: dict | None) -> str:
  if not saved or not current:
    return ""
  current = json.loads(json.dumps(current))  # as it would read back from JSON (tuples -> lists)
  keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
  if not keys:
    return ""
  return "; model config differs: " + ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}"
                                               for k in keys)


class Checkpointer:
  """A thin owner of one orbax `CheckpointManager` (async, keep-N)."""

  def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = 3, async_save: bool = True,
               save_interval_steps: int = 1):
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
                                           enable_async_checkpointing=async_save, cleanup_tmp_directories=True,
                                           create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=_handlers())

  # ------------------------------------------------------------------------------------------ save
  def save(self, step: int, state: TrainState, data_state: Any = None, meta: dict | None = None,
           force: bool = False) -> bool:
    """Start an (async) save of `state` as step `step`; False when the interval policy skips it."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state.to_dict()),
                              data=ocp.args.JsonSave({"iterator": data_state}),
                              meta=ocp.args.JsonSave(dict(meta or {}, step=int(step))))
    return self.manager.save(int(step), args=args, force=force)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  # --------------------------------------------------------------------------------------- restore
  def latest_step(self) -> int | None:
    # re-read the directory: another process (a killed run) may have written since we opened it
    self.manager.reload()
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    self.manager.reload()
    return list(self.manager.all_steps())

  def check_compatible(self, step: int, abstract: TrainState, model_config: dict | None = None) -> None:
    """Raise CheckpointMismatchError naming the first tensor whose shape/dtype/presence differs.

    Reads only metadata (no tensor data), so a wrong `--preset` fails before any restore or compute.
    """
    md = self.manager.item_metadata(step)
    saved = _flat_shapes(md["state"].tree)
    want = _flat_shapes(abstract.to_dict())
    meta = self.read_meta(step)
    extra = _config_diff(meta.get("model"), model_config)
    where = os.path.join(self.directory, str(step))
    # params first: a params mismatch is the useful message (optimizer moments mirror it)
    for name in sorted(want, key=lambda n: (not n.startswith("params/"), n)):
      if name not in saved:
        raise CheckpointMismatchError(f"checkpoint {where} has no tensor {name!r} (expected shape "
                                      f"{want[name][0]}){extra}")
      if saved[name] != want[name]:
        raise CheckpointMismatchError(
            f"checkpoint {where}: tensor {name!r} is {saved[name][0]} {saved[name][1]}, the model expects "
            f"{want[name][0]} {want[name][1]}{extra}")
    unexpected = sorted(set(saved) - set(want))
    if unexpected:
      raise CheckpointMismatchError(f"checkpoint {where} has tensors the model lacks: {unexpected[:5]}{extra}")

  def read_meta(self, step: int) -> dict:
    """The small JSON `meta` item alone (orbax's item_metadata has no content for JSON items)."""
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception:  # noqa: BLE001 - meta is only used to enrich messages; a bad one must not mask them
      return {}
    return dict(out["meta"] or {})

  def restore(self, step: int, abstract: TrainState, model_config: dict | None = None
              ) -> tuple[TrainState, Any, dict]:
    """(state on the abstract's shardings, data-iterator state, meta) of checkpoint `step`."""
    self.check_compatible(step, abstract, model_config)
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                          abstract.to_dict())
    out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                             data=ocp.args.JsonRestore(),
                                                             meta=ocp.args.JsonRestore()))
    data = out["data"] or {}
    # the abstract's own class (TrainState, rl's RLState) rebuilds the state from the plain dict
    return type(abstract).from_dict(out["state"]), data.get("iterator"), dict(out["meta"] or {})

  def restore_latest(self, abstract: TrainState, model_config: dict | None = None
                     ) -> tuple[TrainState, Any, dict] | None:
    step = self.latest_step()
    if step is None:
      return None
    return self.restore(step, abstract, model_config)
