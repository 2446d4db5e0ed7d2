"""TFDS builders for trajectory corpora and eval sets, written as array_record, TensorFlow-free.

Without TensorFlow, tensorflow-datasets can write and read only the ``array_record`` file format
through its numpy path: ``builder.download_and_prepare(file_format="array_record")`` to write,
``builder.as_data_source(split)`` / ``tfds.builder_from_directory(dir).as_data_source(split)`` /
``tfds.data_source(...)`` to read (random access, a grain-ready source). ``as_dataset()`` and
tfrecord need TensorFlow and are not used. Features are ``Text`` and ``Scalar`` only, which
encode and decode with numpy; ``Text`` reads back as UTF-8 ``bytes``. Float scalars are stored
as float32 whatever the declared dtype (the example proto's float list), so the exact values
live in the JSON string features.

Builders (registered TFDS names; the config name is the corpus / eval-set name):

- ``foresight_trajectories``: trajectory JSONL files (schema.py) read with
  ``schema.read_trajectories`` (rejected lines are counted, never silently dropped) into
  ``train`` / ``validation`` splits. Features: ``index`` (position in the input order), ``id``
  (task id), ``domain``, ``source``, ``n_steps``, ``score`` (float32), ``trajectory`` (the
  record as compact JSON, ``Trajectory.dumps()``).
- ``foresight_eval_tasks``: schema Tasks (e.g. from ``real_sources.load_eval_set``) in one
  split (``test`` by default). Features: ``index``, ``id``, ``domain``, ``question``,
  ``answers`` (JSON list), ``metadata`` (JSON of ``task.meta``, ``null`` when absent).

Both keep the input order (``disable_shuffling``: shuffle in the input pipeline) and store their
read reports in ``info.metadata`` (``metadata.json`` beside the data; restored by
``builder_from_directory``).

    b = build_trajectory_corpus(["a.jsonl"], data_dir, name="synth")   # writes
    trajs = read_trajectory_split(b.data_dir, "train")                 # reads back
    src = tfds.builder_from_directory(b.data_dir).as_data_source("train")
    decode_trajectory(src[0])                                          # -> Trajectory
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from foresight_jax.data.schema import ReadReport, Task, Trajectory, read_trajectories

FILE_FORMAT = "array_record"
_MAX_LISTED = 50  # problems / notes kept per file in the metadata


def config_name(name: str) -> str:
  """A TFDS-safe config name: lower case, characters outside [a-z0-9_] become '_'."""
  out = re.sub(r"[^a-z0-9_]", "_", name.strip().lower())
  if not out.strip("_"):
    raise ValueError(f"unusable corpus name {name!r}")
  return out


def _config(name: str) -> tfds.core.BuilderConfig:
  return tfds.core.BuilderConfig(name=config_name(name))


def report_dict(r: ReadReport) -> dict:
  return {"path": r.path, "read": r.read, "accepted": r.accepted, "rejected": r.rejected,
          "truncated": r.truncated, "blank": r.blank, "reasons": dict(sorted(r.reasons.items())),
          "problems": [str(p) for p in r.problems[:_MAX_LISTED]],
          "notes": list(r.notes[:_MAX_LISTED])}


def _text(v: Any) -> str:
  return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def _unit(seed: int, key: str) -> float:
  h = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
  return int.from_bytes(h[:8], "big") / 2.0 ** 64


def assign_splits(trajs: Sequence[Trajectory], val_fraction: float, seed: int
                  ) -> tuple[list[int], list[int], list[str]]:
  """Indices of train and validation trajectories, split by task id (all trajectories of one
  task land in the same split, so MC branches of a task never leak across splits).

  A task goes to validation when hash(seed, task id) < val_fraction. When that leaves a split
  empty and there are at least two tasks, the task nearest the boundary moves over (TFDS cannot
  write an empty split); with a single task everything is train. Notes say what happened.
  """
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction {val_fraction} outside [0, 1)")
  u = {t.task.id: _unit(seed, t.task.id) for t in trajs}
  val_ids = {k for k, x in u.items() if x < val_fraction}
  notes = []
  if val_fraction > 0 and len(u) >= 2:
    if not val_ids:
      k = min(u, key=u.get)
      val_ids = {k}
      notes.append(f"validation was empty by hash; moved task {k!r} there")
    elif len(val_ids) == len(u):
      k = max(u, key=u.get)
      val_ids.discard(k)
      notes.append(f"train was empty by hash; moved task {k!r} there")
  elif val_fraction > 0:
    notes.append("a single task: no validation split")
  train = [i for i, t in enumerate(trajs) if t.task.id not in val_ids]
  val = [i for i, t in enumerate(trajs) if t.task.id in val_ids]
  return train, val, notes


class _LocalCodePath:
  """Builders outside a TFDS dataset package: locate the code with ``inspect.getfile``.

  TFDS's own ``code_path`` probes ``importlib_resources.abc.Traversable`` for any builder whose
  module sits in a package, and that backport is not a dependency of tensorflow-datasets
  (ModuleNotFoundError without it). The path is only used to look for a checksums file, which
  these builders (no downloads) do not have.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:
    try:
      return epath.Path(inspect.getfile(cls))
    except (TypeError, OSError):
      return None


# ---------------------------------------------------------------------------------------------
# Trajectory corpus


class ForesightTrajectories(_LocalCodePath, tfds.core.GeneratorBasedBuilder):
  """Agent trajectories (schema.py JSONL) with train/validation splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Trajectory JSON + domain, source, n_steps, score; array_record."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="default")]

  def __init__(self, *, paths: Iterable[str | Path] | None = None,
               val_paths: Iterable[str | Path] | None = None, val_fraction: float = 0.1,
               seed: int = 0, max_steps: int | None = None, **kwargs):
    """paths: trajectory JSONL files (needed only to build; reading an existing corpus needs
    none). val_paths: explicit validation files; without them validation is a hash split of
    the task ids of `paths` (`assign_splits`). kwargs go to the TFDS builder (data_dir,
    config, ...)."""
    self._paths = None if paths is None else [Path(p) for p in paths]
    self._val_paths = None if val_paths is None else [Path(p) for p in val_paths]
    self._val_fraction, self._seed, self._max_steps = val_fraction, seed, max_steps
    self.read_reports: list[ReadReport] = []
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Agent trajectories in the foresight_jax JSONL schema (one JSON string "
                    "per example) with a few scalar features for filtering.",
        features=tfds.features.FeaturesDict({
            "index": tfds.features.Scalar(dtype=np.int64),
            "id": tfds.features.Text(),
            "domain": tfds.features.Text(),
            "source": tfds.features.Text(),
            "n_steps": tfds.features.Scalar(dtype=np.int32),
            "score": tfds.features.Scalar(dtype=np.float32),
            "trajectory": tfds.features.Text(),
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _read(self, paths: list[Path]) -> list[Trajectory]:
    out = []
    for p in paths:
      if not p.is_file():
        raise FileNotFoundError(f"trajectory file not found: {p}")
      trajs, rep = read_trajectories(p, max_steps=self._max_steps)
      self.read_reports.append(rep)
      out += trajs
    return out

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._paths is None:
      raise ValueError(f"{self.name}/{self.builder_config.name}: no prepared data in "
                       f"{self.data_dir} and no input files: pass paths=[...] to build")
    self.read_reports = []
    trajs = self._read(self._paths)
    notes = []
    if self._val_paths is not None:
      val = self._read(self._val_paths)
      splits = {"train": list(enumerate(trajs)),
                "validation": list(enumerate(val, start=len(trajs)))}
      rule = "files"
    else:
      tr, va, notes = assign_splits(trajs, self._val_fraction, self._seed)
      splits = {"train": [(i, trajs[i]) for i in tr], "validation": [(i, trajs[i]) for i in va]}
      rule = f"hash(task id), val_fraction={self._val_fraction}, seed={self._seed}"
    empty = [k for k, v in splits.items() if not v]
    splits = {k: v for k, v in splits.items() if v}
    if not splits:
      raise ValueError("no valid trajectories to write: " +
                       " | ".join(r.summary() for r in self.read_reports))
    if empty:
      notes.append(f"empty split(s) not written: {empty}")
    self.info.metadata.update({
        "reports": [report_dict(r) for r in self.read_reports],
        "rejected": sum(r.rejected for r in self.read_reports),
        "accepted": sum(r.accepted for r in self.read_reports),
        "split_rule": rule, "split_sizes": {k: len(v) for k, v in splits.items()},
        "split_notes": notes, "max_steps": self._max_steps})
    return {k: self._generate_examples(v) for k, v in splits.items()}

  def _generate_examples(self, items):
    for i, t in items:
      yield i, {"index": i, "id": t.task.id, "domain": t.task.domain, "source": t.source,
                "n_steps": len(t.steps), "score": float(t.score), "trajectory": t.dumps()}


def decode_trajectory(example: dict) -> Trajectory:
  """A data-source example -> Trajectory (validated again on the way in)."""
  return Trajectory.from_json(json.loads(_text(example["trajectory"])))


# ---------------------------------------------------------------------------------------------
# Eval set


class ForesightEvalTasks(_LocalCodePath, tfds.core.GeneratorBasedBuilder):
  """Evaluation tasks (questions + gold answers) of one eval set."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Task id, domain, question, answers JSON, metadata JSON."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="default")]

  def __init__(self, *, tasks: Iterable[Task] | None = None, split: str = "test",
               report: ReadReport | None = None, **kwargs):
    """tasks: the Tasks to write (needed only to build); report: the read report of their
    file, stored in the metadata."""
    self._tasks = None if tasks is None else list(tasks)
    self._split, self._report = split, report
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Evaluation tasks in the foresight_jax schema (task part only).",
        features=tfds.features.FeaturesDict({
            "index": tfds.features.Scalar(dtype=np.int64),
            "id": tfds.features.Text(),
            "domain": tfds.features.Text(),
            "question": tfds.features.Text(),
            "answers": tfds.features.Text(),    # JSON list of strings
            "metadata": tfds.features.Text(),   # JSON of task.meta ("null" when absent)
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._tasks is None:
      raise ValueError(f"{self.name}/{self.builder_config.name}: no prepared data in "
                       f"{self.data_dir} and no tasks: pass tasks=[...] to build")
    if not self._tasks:
      raise ValueError("no tasks to write")
    ids = [t.id for t in self._tasks]
    dups = len(ids) - len(set(ids))
    self.info.metadata.update({
        "n_tasks": len(self._tasks), "split": self._split, "duplicate_ids": dups,
        "domains": sorted({t.domain for t in self._tasks}),
        "report": None if self._report is None else report_dict(self._report)})
    return {self._split: self._generate_examples(self._tasks)}

  def _generate_examples(self, tasks):
    for i, t in enumerate(tasks):
      yield i, {"index": i, "id": t.id, "domain": t.domain, "question": t.question,
                "answers": json.dumps(list(t.answers), ensure_ascii=False),
                "metadata": json.dumps(t.meta, ensure_ascii=False, sort_keys=True)}


def decode_task(example: dict) -> Task:
  return Task(id=_text(example["id"]), domain=_text(example["domain"]),
              question=_text(example["question"]),
              answers=list(json.loads(_text(example["answers"]))),
              meta=json.loads(_text(example["metadata"])))


# ---------------------------------------------------------------------------------------------
# Build / read helpers


def _prepare(make, overwrite: bool):
  """make() -> a builder; prepared (written) unless its directory already holds this
  name/version, which ``overwrite`` deletes first (TFDS cannot regenerate in place: a builder
  that found prepared files has its DatasetInfo, file format included, frozen)."""
  builder = make()
  if overwrite and epath.Path(builder.data_dir).exists():
    epath.Path(builder.data_dir).rmtree()
    builder = make()
  builder.download_and_prepare(file_format=FILE_FORMAT)
  return builder


def build_trajectory_corpus(paths: Iterable[str | Path], data_dir: str | Path,
                            name: str = "default", val_fraction: float = 0.1, seed: int = 0,
                            val_paths: Iterable[str | Path] | None = None,
                            max_steps: int | None = None, overwrite: bool = False
                            ) -> ForesightTrajectories:
  """Write trajectory JSONL files as ``<data_dir>/foresight_trajectories/<name>/1.0.0``.

  An existing prepared corpus of the same name is reused as is unless ``overwrite``. The
  returned builder's ``read_reports`` (when it built) and ``info.metadata`` account for every
  input line."""
  paths = list(paths)
  val_paths = None if val_paths is None else list(val_paths)
  return _prepare(lambda: ForesightTrajectories(
      paths=paths, val_paths=val_paths, val_fraction=val_fraction, seed=seed,
      max_steps=max_steps, data_dir=str(data_dir), config=_config(name)), overwrite)


def build_eval_set(tasks: Iterable[Task], data_dir: str | Path, name: str,
                   split: str = "test", report: ReadReport | None = None,
                   overwrite: bool = False) -> ForesightEvalTasks:
  """Write Tasks as ``<data_dir>/foresight_eval_tasks/<name>/1.0.0`` (one split)."""
  tasks = list(tasks)
  return _prepare(lambda: ForesightEvalTasks(
      tasks=tasks, split=split, report=report, data_dir=str(data_dir), config=_config(name)),
      overwrite)


def build_registered_eval_set(name: str, path: str | Path | None, data_dir: str | Path,
                              overwrite: bool = False) -> ForesightEvalTasks:
  """``real_sources.load_eval_set(name, path)`` written with ``build_eval_set``."""
  from foresight_jax.data.real_sources import load_eval_set, resolve_eval_set
  tasks, report = load_eval_set(name, path)
  return build_eval_set(tasks, data_dir, resolve_eval_set(name).name, report=report,
                        overwrite=overwrite)


def _source(where, split: str):
  if isinstance(where, tfds.core.DatasetBuilder):
    return where.as_data_source(split=split)
  return tfds.builder_from_directory(str(where)).as_data_source(split=split)


def read_trajectory_split(where, split: str = "train") -> list[Trajectory]:
  """All trajectories of a split, in input order. ``where``: a builder, or the prepared
  directory (``.../foresight_trajectories/<name>/1.0.0``)."""
  src = _source(where, split)
  return [decode_trajectory(src[i]) for i in range(len(src))]


def read_eval_split(where, split: str = "test") -> list[Task]:
  src = _source(where, split)
  return [decode_task(src[i]) for i in range(len(src))]
