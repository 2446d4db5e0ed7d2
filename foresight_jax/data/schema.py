"""Trajectory schema: one JSON object per line (JSONL), one agent trajectory per object.

```
{
  "task": {
    "id": "w3-q17",                      # str, non-empty
    "domain": "search" | "math",
    "question": "...",                   # key "problem" is accepted (and written) for math
    "answers": ["Brelland"],             # non-empty list of str (math: integer strings)
    "meta": {...}                        # optional, free-form (world plan, hop count, ...)
  },
  "steps": [                             # non-empty list
    {
      "thought": "...",                  # str (may be empty)
      "action": {"tool": "search", "query": "..."}      # non-empty query
              | {"tool": "calc", "expr": "391 % 7"}      # math tool (see below)
              | {"tool": "answer", "answer": "..."},     # math: "\\boxed{6}"
      "observation": "Doc 1(Title: ...) ...",            # non-empty str after search/calc,
                                                         # null after answer
      "foresight": {"rollout": ["search \\"q\\" -> salient", ...],   # optional; unnumbered
                    "success": 0.64 | null},                       # null for variant "state"
      "meta": {...}                      # optional, free-form (policy state for MC branching)
    }
  ],
  "outcome": {"score": 1.0},             # number in [0, 1]
  "source": "synthetic-world/seed=3/policy=mild",   # str
  "meta": {...}                          # optional, free-form
}
```

Rules beyond types: an answer step is the last step (nothing follows it); a trajectory may end
without an answer (ran out of turns) and then scores 0 by convention. Unknown keys are ignored
(forward compatibility) but never emitted by ``to_json``.

Math uses a ``calc`` tool whose observation is the intermediate result: that gives math
trajectories real observations, so rollouts can be grounded the same way as search ones.
It needs a ``<calc> </calc>`` tag pair beside the design's search tags (render.py).

``read_trajectories`` never drops a line silently: each rejected line yields one or more
``file:line:field: message`` problems, truncations are noted, and valid lines still come back.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

TOOLS = ("search", "calc", "answer")
DOMAINS = ("search", "math")
ARG_KEY = {"search": "query", "calc": "expr", "answer": "answer"}


@dataclass
class Task:
  id: str
  domain: str
  question: str
  answers: list[str]
  meta: dict | None = None

  def to_json(self) -> dict:
    d = {"id": self.id, "domain": self.domain,
         ("problem" if self.domain == "math" else "question"): self.question,
         "answers": list(self.answers)}
    if self.meta is not None:
      d["meta"] = self.meta
    return d


@dataclass
class Action:
  tool: str  # one of TOOLS
  arg: str   # the query, the calc expression, or the answer text

  def to_json(self) -> dict:
    return {"tool": self.tool, ARG_KEY[self.tool]: self.arg}


@dataclass
class Foresight:
  rollout: list[str]            # unnumbered step lines: 'search "q" -> salient'
  success: float | None = None  # None for the state-only variant

  def to_json(self) -> dict:
    return {"rollout": list(self.rollout), "success": self.success}


@dataclass
class Step:
  thought: str
  action: Action
  observation: str | None
  foresight: Foresight | None = None
  meta: dict | None = None

  def to_json(self) -> dict:
    d = {"thought": self.thought, "action": self.action.to_json(), "observation": self.observation}
    if self.foresight is not None:
      d["foresight"] = self.foresight.to_json()
    if self.meta is not None:
      d["meta"] = self.meta
    return d


@dataclass
class Trajectory:
  task: Task
  steps: list[Step]
  score: float  # outcome.score
  source: str
  meta: dict | None = None

  def to_json(self) -> dict:
    d = {"task": self.task.to_json(), "steps": [s.to_json() for s in self.steps],
         "outcome": {"score": self.score}, "source": self.source}
    if self.meta is not None:
      d["meta"] = self.meta
    return d

  def dumps(self) -> str:
    return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))

  @staticmethod
  def from_json(obj: Any) -> "Trajectory":
    problems = validate_record(obj)
    if problems:
      raise ValueError("; ".join(str(p) for p in problems))
    return _build(obj)

  @property
  def final_answer(self) -> str | None:
    if self.steps and self.steps[-1].action.tool == "answer":
      return self.steps[-1].action.arg
    return None


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class Problem:
  file: str
  line: int
  field: str
  kind: str  # malformed_json | encoding | missing | type | empty | unknown_tool | range | ...
  message: str

  def __str__(self) -> str:
    return f"{self.file}:{self.line}:{self.field}: {self.message}"


class _Checker:
  """Collects every problem of one record instead of stopping at the first."""

  def __init__(self, file: str, line: int):
    self.file, self.line, self.problems = file, line, []

  def add(self, fld: str, kind: str, msg: str) -> None:
    self.problems.append(Problem(self.file, self.line, fld, kind, msg))

  def get(self, obj: dict, key: str, path: str, types, tname: str, required: bool = True,
          nullable: bool = False):
    """obj[key] if it has one of `types` (bools never count as numbers), else report + None."""
    if key not in obj:
      if required:
        self.add(path, "missing", f"missing required field '{key}'")
      return None
    v = obj[key]
    if v is None and nullable:
      return None
    if isinstance(v, bool) and bool not in types or not isinstance(v, types):
      self.add(path, "type", f"expected {tname}, got {_tname(v)}")
      return None
    return v

  def text(self, obj: dict, key: str, path: str, nonempty: bool = True, required: bool = True):
    v = self.get(obj, key, path, (str,), "string", required=required)
    if v is None:
      return None
    if nonempty and not v.strip():
      self.add(path, "empty", "empty string")
    if not _utf8_ok(v):
      # JSON "\udc80" escapes decode to lone surrogates that cannot be re-encoded as UTF-8.
      self.add(path, "encoding", "contains lone surrogate code points (not valid UTF-8)")
    return v


def _tname(v: Any) -> str:
  return "null" if v is None else {bool: "bool", int: "int", float: "number", str: "string",
                                   list: "list", dict: "object"}.get(type(v), type(v).__name__)


def _utf8_ok(s: str) -> bool:
  try:
    s.encode("utf-8")
    return True
  except UnicodeEncodeError:
    return False


def validate_record(obj: Any, file: str = "<memory>", line: int = 0) -> list[Problem]:
  """Every problem of one decoded JSON record (empty list = valid)."""
  c = _Checker(file, line)
  if not isinstance(obj, dict):
    c.add("<record>", "type", f"expected a JSON object, got {_tname(obj)}")
    return c.problems
  _check_task(c, obj)
  _check_steps(c, obj)
  outcome = c.get(obj, "outcome", "outcome", (dict,), "object")
  if outcome is not None:
    score = c.get(outcome, "score", "outcome.score", (int, float), "number")
    if score is not None and not (math.isfinite(score) and 0.0 <= score <= 1.0):
      c.add("outcome.score", "range", f"score {score!r} outside [0, 1]")
  c.text(obj, "source", "source", nonempty=False)
  c.get(obj, "meta", "meta", (dict,), "object", required=False, nullable=True)
  return c.problems


def _check_task(c: _Checker, obj: dict) -> None:
  task = c.get(obj, "task", "task", (dict,), "object")
  if task is None:
    return
  c.text(task, "id", "task.id")
  domain = c.text(task, "domain", "task.domain")
  if domain is not None and domain not in DOMAINS:
    c.add("task.domain", "unknown_domain", f"unknown domain {domain!r} (expected {DOMAINS})")
  qkey = "question" if "question" in task or "problem" not in task else "problem"
  c.text(task, qkey, f"task.{qkey}")
  answers = c.get(task, "answers", "task.answers", (list,), "list of strings")
  if answers is not None:
    if not answers:
      c.add("task.answers", "empty", "empty list of gold answers")
    for i, a in enumerate(answers):
      if not isinstance(a, str):
        c.add(f"task.answers[{i}]", "type", f"expected string, got {_tname(a)}")
  c.get(task, "meta", "task.meta", (dict,), "object", required=False, nullable=True)


def _check_steps(c: _Checker, obj: dict) -> None:
  steps = c.get(obj, "steps", "steps", (list,), "list")
  if steps is None:
    return
  if not steps:
    c.add("steps", "empty", "no steps")
  for i, step in enumerate(steps):
    p = f"steps[{i}]"
    if not isinstance(step, dict):
      c.add(p, "type", f"expected object, got {_tname(step)}")
      continue
    c.text(step, "thought", f"{p}.thought", nonempty=False)
    tool = None
    action = c.get(step, "action", f"{p}.action", (dict,), "object")
    if action is not None:
      tool = c.get(action, "tool", f"{p}.action.tool", (str,), "string")
      if tool is not None and tool not in TOOLS:
        c.add(f"{p}.action.tool", "unknown_tool", f"unknown tool {tool!r} (expected {TOOLS})")
        tool = None
      if tool is not None:
        key = ARG_KEY[tool]
        c.text(action, key, f"{p}.action.{key}", nonempty=tool != "answer")
    if "observation" not in step:
      c.add(f"{p}.observation", "missing", "missing required field 'observation'")
    elif tool == "answer":
      if step["observation"] is not None:
        c.add(f"{p}.observation", "type", "observation must be null after an answer")
      if i != len(steps) - 1:
        c.add(p, "order", f"answer at step {i} is followed by {len(steps) - 1 - i} more step(s)")
    elif tool is not None:
      c.text(step, "observation", f"{p}.observation")  # non-empty string after search/calc
    fs = c.get(step, "foresight", f"{p}.foresight", (dict,), "object", required=False,
               nullable=True)
    if fs is not None:
      roll = c.get(fs, "rollout", f"{p}.foresight.rollout", (list,), "list of strings")
      for j, r in enumerate(roll or []):
        if not isinstance(r, str):
          c.add(f"{p}.foresight.rollout[{j}]", "type", f"expected string, got {_tname(r)}")
      s = c.get(fs, "success", f"{p}.foresight.success", (int, float), "number", required=False,
                nullable=True)
      if s is not None and not (math.isfinite(s) and 0.0 <= s <= 1.0):
        c.add(f"{p}.foresight.success", "range", f"success {s!r} outside [0, 1]")
    c.get(step, "meta", f"{p}.meta", (dict,), "object", required=False, nullable=True)


def _build(obj: dict) -> Trajectory:
  """Dataclasses from a record that already passed validate_record."""
  t = obj["task"]
  task = Task(id=t["id"], domain=t["domain"], question=t.get("question", t.get("problem")),
              answers=list(t["answers"]), meta=t.get("meta"))
  steps = []
  for s in obj["steps"]:
    a = s["action"]
    fs = s.get("foresight")
    steps.append(Step(
        thought=s["thought"], action=Action(a["tool"], a[ARG_KEY[a["tool"]]]),
        observation=s["observation"],
        foresight=None if fs is None else Foresight(list(fs["rollout"]), fs.get("success")),
        meta=s.get("meta")))
  return Trajectory(task, steps, float(obj["outcome"]["score"]), obj["source"], obj.get("meta"))


# ---------------------------------------------------------------------------------------------
# Reading and writing


@dataclass
class ReadReport:
  path: str
  read: int = 0      # non-blank lines seen
  blank: int = 0     # blank lines (not records; counted so nothing disappears unexplained)
  accepted: int = 0
  rejected: int = 0
  truncated: int = 0  # accepted but cut to max_steps
  problems: list[Problem] = field(default_factory=list)
  notes: list[str] = field(default_factory=list)  # truncations, BOM, ...

  @property
  def reasons(self) -> Counter:
    return Counter(p.kind for p in self.problems)

  def summary(self) -> str:
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
    return (f"{self.path}: read={self.read} accepted={self.accepted} rejected={self.rejected} "
            f"truncated={self.truncated} blank={self.blank}; problems: {reasons}")


def iter_json_lines(path: str | Path, report: ReadReport):
  """Yields (line_no, decoded object) for each parseable line; problems go to `report`."""
  name = str(path)
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, 1):
      if not raw.strip():
        report.blank += 1
        continue
      report.read += 1
      try:
        text = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        report.problems.append(Problem(name, lineno, "<line>", "encoding",
                                       f"invalid UTF-8 byte 0x{raw[e.start]:02x} at column "
                                       f"{e.start + 1}"))
        report.rejected += 1
        continue
      if lineno == 1 and text.startswith("\ufeff"):
        text = text[1:]
        report.notes.append(f"{name}:1: UTF-8 byte-order mark ignored")
      try:
        obj = json.loads(text)
      except json.JSONDecodeError as e:
        report.problems.append(Problem(name, lineno, "<json>", "malformed_json",
                                       f"malformed JSON: {e.msg} at column {e.colno}"))
        report.rejected += 1
        continue
      yield lineno, obj


def read_trajectories(path: str | Path, max_steps: int | None = None
                      ) -> tuple[list[Trajectory], ReadReport]:
  """All valid trajectories of a JSONL file, plus a report that accounts for every line.

  Records longer than `max_steps` are kept, cut to their first `max_steps` steps, counted in
  `truncated`, noted, and marked with meta["truncated_from"]; their outcome stays the outcome of
  the full trajectory (what the prefix actually led to).
  """
  report = ReadReport(path=str(path))
  out: list[Trajectory] = []
  for lineno, obj in iter_json_lines(path, report):
    problems = validate_record(obj, str(path), lineno)
    if problems:
      report.problems.extend(problems)
      report.rejected += 1
      continue
    rec = _build(obj)
    if max_steps is not None and len(rec.steps) > max_steps:
      n = len(rec.steps)
      rec = dataclasses.replace(rec, steps=rec.steps[:max_steps],
                                meta={**(rec.meta or {}), "truncated_from": n})
      report.truncated += 1
      report.notes.append(f"{path}:{lineno}:steps: truncated from {n} to {max_steps} steps")
    report.accepted += 1
    out.append(rec)
  return out, report


def write_trajectories(path: str | Path, trajectories: Iterable[Trajectory]) -> int:
  n = 0
  with open(path, "w", encoding="utf-8") as f:
    for t in trajectories:
      f.write(t.dumps() + "\n")
      n += 1
  return n
