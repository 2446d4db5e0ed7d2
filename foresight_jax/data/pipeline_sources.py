"""Random-access trajectory sources for the grain pipeline.

A source is anything with `__len__` and `__getitem__(int)` (a `collections.abc.Sequence`, or a
grain `RandomAccessDataSource`), whose items are one of:

- a `Trajectory`;
- a decoded JSON record (a dict with a "task" key, schema.py);
- a JSON string / UTF-8 bytes of such a record;
- a dict holding one of those under a field (default "trajectory"): what TFDS array_record data
  sources (`tfds.data_source(...)`) return, e.g. {"trajectory": b'{"task": ...}', ...}.

`to_trajectory` turns any of them into a `Trajectory` or raises ValueError; the pipeline counts
such records as `rejected` (never dropped silently). Sources are read lazily, one index at a
time, so a multi-GB array_record source is never loaded whole; each host reads only its shard's
indices (pipeline.py slices the index space before anything is read).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from foresight_jax.data.schema import ReadReport, Trajectory, read_trajectories

RECORD_FIELD = "trajectory"


def to_trajectory(record: Any, field: str = RECORD_FIELD) -> Trajectory:
  """A `Trajectory` from any supported item (see module doc); ValueError if it is not one."""
  if isinstance(record, Trajectory):
    return record
  if isinstance(record, dict) and "task" not in record and field in record:
    record = record[field]
  if hasattr(record, "item") and getattr(record, "shape", None) == ():  # numpy scalar / 0-d array
    record = record.item()
  if isinstance(record, (bytes, bytearray, memoryview)):
    try:
      record = bytes(record).decode("utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(f"record is not UTF-8: {e}") from e
  if isinstance(record, str):
    try:
      record = json.loads(record)
    except json.JSONDecodeError as e:
      raise ValueError(f"malformed JSON: {e.msg} at column {e.colno}") from e
  if not isinstance(record, dict):
    raise ValueError(f"unsupported record type {type(record).__name__}")
  return Trajectory.from_json(record)


class MemorySource(Sequence):
  """Items held in memory (trajectories, records or JSON strings)."""

  def __init__(self, items: Iterable[Any]):
    self._items = list(items)

  def __len__(self) -> int:
    return len(self._items)

  def __getitem__(self, i):
    return self._items[i]

  def __repr__(self) -> str:
    return f"MemorySource(n={len(self)})"


class JsonlSource(Sequence):
  """Valid trajectories of one or more JSONL files, read with `schema.read_trajectories`.

  Every rejected line is accounted for in `reports` (one `ReadReport` per file); `rejected`
  totals them and `summary()` prints them. Files are read in the order given.
  """

  def __init__(self, paths: str | os.PathLike | Iterable[str | os.PathLike],
               max_steps: int | None = None):
    if isinstance(paths, (str, os.PathLike)):
      paths = [paths]
    self.paths = [Path(p) for p in paths]
    self._items: list[Trajectory] = []
    self.reports: list[ReadReport] = []
    for p in self.paths:
      trajs, report = read_trajectories(p, max_steps=max_steps)
      self._items.extend(trajs)
      self.reports.append(report)

  @property
  def accepted(self) -> int:
    return sum(r.accepted for r in self.reports)

  @property
  def rejected(self) -> int:
    return sum(r.rejected for r in self.reports)

  def summary(self) -> str:
    return "\n".join(r.summary() for r in self.reports)

  def __len__(self) -> int:
    return len(self._items)

  def __getitem__(self, i):
    return self._items[i]

  def __repr__(self) -> str:
    return f"JsonlSource(files={len(self.paths)}, n={len(self)}, rejected={self.rejected})"


class RecordSource(Sequence):
  """Adapter over a random-access sequence of records holding JSON under `field` (e.g. a
  `tfds.data_source` over array_record files). Decoding is deferred to the pipeline's map,
  where invalid records are counted as rejected."""

  def __init__(self, records: Any, field: str = RECORD_FIELD):
    if not (hasattr(records, "__len__") and hasattr(records, "__getitem__")):
      raise TypeError(f"{type(records).__name__} is not random-access (__len__/__getitem__)")
    self.records = records
    self.field = field

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, i):
    return self.records[i]

  def __repr__(self) -> str:
    return f"RecordSource({type(self.records).__name__}, n={len(self)}, field={self.field!r})"


def open_source(source: Any, field: str = RECORD_FIELD) -> Sequence:
  """A path (or list of paths) to JSONL -> JsonlSource; a list of items -> MemorySource; any
  other random-access object -> RecordSource."""
  if isinstance(source, (str, os.PathLike)):
    return JsonlSource(source)
  if isinstance(source, (list, tuple)) and source and all(
      isinstance(s, (str, os.PathLike)) and str(s).endswith(".jsonl") for s in source):
    return JsonlSource(source)
  if isinstance(source, (MemorySource, JsonlSource, RecordSource)):
    return source
  if isinstance(source, (list, tuple)):
    return MemorySource(source)
  return RecordSource(source, field)
