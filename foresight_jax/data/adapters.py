"""Real-data adapters: external task files -> schema Tasks, with the same line-level report.

- FlashRAG / Search-R1 QA JSONL: {"id"?, "question": str, "golden_answers": [str] | str}
  (NQ, TriviaQA, PopQA, HotpotQA, 2Wiki, MuSiQue, Bamboogle in FlashRAG's preprocessing).
- AIME-style math, JSONL or a JSON array: {"id"?, "problem": str, "answer": int | "int"}.
  Key lookup is case-insensitive and accepts "question" for "problem" (AIME 2024 dumps use
  "Problem"/"Answer"/"ID"; AIME 2025 ones use "question"/"answer"). Answers must be integers in
  0..999 (AIME's range); anything else is reported, not coerced.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from foresight_jax.data.schema import Problem, ReadReport, Task, _utf8_ok, iter_json_lines


def _fold(obj: dict) -> dict:
  return {str(k).lower(): v for k, v in obj.items()}


def _task_id(obj: dict, prefix: str, lineno: int) -> str:
  v = obj.get("id")
  if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip():
    return str(v)
  return f"{prefix}-{lineno}"  # stable: the file name and the line the task came from


def read_qa_jsonl(path: str | Path, id_prefix: str | None = None
                  ) -> tuple[list[Task], ReadReport]:
  """FlashRAG QA lines -> search Tasks (answers = golden_answers)."""
  report = ReadReport(path=str(path))
  prefix = id_prefix or Path(path).stem
  tasks = []
  for lineno, obj in iter_json_lines(path, report):
    probs = []

    def bad(fld, kind, msg):
      probs.append(Problem(str(path), lineno, fld, kind, msg))

    if not isinstance(obj, dict):
      bad("<record>", "type", f"expected a JSON object, got {type(obj).__name__}")
    else:
      q = obj.get("question")
      if "question" not in obj:
        bad("question", "missing", "missing required field 'question'")
      elif not isinstance(q, str):
        bad("question", "type", f"expected string, got {type(q).__name__}")
      elif not q.strip():
        bad("question", "empty", "empty string")
      elif not _utf8_ok(q):
        bad("question", "encoding", "contains lone surrogate code points (not valid UTF-8)")
      golds = obj.get("golden_answers")
      if isinstance(golds, str):
        golds = [golds]  # some dumps store a single answer as a bare string
      if "golden_answers" not in obj:
        bad("golden_answers", "missing", "missing required field 'golden_answers'")
      elif not isinstance(golds, list):
        bad("golden_answers", "type", f"expected list of strings, got {type(golds).__name__}")
      else:
        if not golds:
          bad("golden_answers", "empty", "empty list of gold answers")
        for i, g in enumerate(golds):
          if not isinstance(g, str) or not g.strip():
            bad(f"golden_answers[{i}]", "type", f"expected non-empty string, got {g!r}")
    if probs:
      report.problems.extend(probs)
      report.rejected += 1
      continue
    tasks.append(Task(id=_task_id(obj, prefix, lineno), domain="search",
                      question=obj["question"].strip(), answers=[g.strip() for g in golds]))
    report.accepted += 1
  return tasks, report


def _json_array_items(path: Path, report: ReadReport) -> Iterator[tuple[int, Any]]:
  """(line, element) for each element of a top-level JSON array, with real line numbers.

  Decoding element by element (raw_decode) keeps the line of each record, so problems can be
  reported as file:line:field like the JSONL readers do.
  """
  raw = path.read_bytes()
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = raw.count(b"\n", 0, e.start) + 1
    report.problems.append(Problem(str(path), line, "<file>", "encoding",
                                   f"invalid UTF-8 byte 0x{raw[e.start]:02x}"))
    report.rejected += 1
    return
  dec = json.JSONDecoder()
  lineof = lambda pos: text.count("\n", 0, pos) + 1  # noqa: E731

  def fail(pos, msg):
    report.problems.append(Problem(str(path), lineof(pos), "<json>", "malformed_json", msg))
    report.rejected += 1

  pos = _skip_ws(text, 0)
  if pos >= len(text) or text[pos] != "[":
    # A single object or {"data": [...]}: decode whole and fall back to index-free lines.
    try:
      obj = json.loads(text)
    except json.JSONDecodeError as e:
      return fail(e.pos, f"malformed JSON: {e.msg}")
    items = obj.get("data") if isinstance(obj, dict) and isinstance(obj.get("data"), list) \
        else [obj]
    for it in items:
      report.read += 1
      yield 1, it
    return
  pos = _skip_ws(text, pos + 1)
  if pos < len(text) and text[pos] == "]":
    return
  while pos < len(text):
    report.read += 1
    try:
      obj, end = dec.raw_decode(text, pos)
    except json.JSONDecodeError as e:
      return fail(e.pos, f"malformed JSON: {e.msg}; rest of the file skipped")
    yield lineof(pos), obj
    pos = _skip_ws(text, end)
    if pos < len(text) and text[pos] == ",":
      pos = _skip_ws(text, pos + 1)
    elif pos < len(text) and text[pos] == "]":
      return
    else:
      return fail(pos, "malformed JSON: expected ',' or ']'; rest of the file skipped")


def _skip_ws(text: str, pos: int) -> int:
  while pos < len(text) and text[pos] in " \t\r\n":
    pos += 1
  return pos


def read_math(path: str | Path, id_prefix: str | None = None
              ) -> tuple[list[Task], ReadReport]:
  """AIME-style problems (JSONL, or a .json array) -> math Tasks with answers ["<int>"]."""
  path = Path(path)
  report = ReadReport(path=str(path))
  prefix = id_prefix or path.stem
  items = (_json_array_items(path, report) if path.suffix == ".json"
           else iter_json_lines(path, report))
  tasks = []
  for lineno, obj in items:
    probs = []

    def bad(fld, kind, msg):
      probs.append(Problem(str(path), lineno, fld, kind, msg))

    if not isinstance(obj, dict):
      bad("<record>", "type", f"expected a JSON object, got {type(obj).__name__}")
      obj = {}
    o = _fold(obj)
    pkey = "problem" if "problem" in o else "question"
    problem = o.get(pkey)
    if obj and pkey not in o:
      bad("problem", "missing", "missing required field 'problem'")
    elif obj and (not isinstance(problem, str) or not problem.strip()):
      bad(pkey, "type", f"expected non-empty string, got {problem!r:.40}")
    ans = o.get("answer")
    value = None
    if obj and "answer" not in o:
      bad("answer", "missing", "missing required field 'answer'")
    elif obj:
      if isinstance(ans, int) and not isinstance(ans, bool):
        value = ans
      elif isinstance(ans, str) and ans.strip().lstrip("+-").isdigit():
        value = int(ans.strip())
      else:
        bad("answer", "type", f"expected an integer, got {ans!r:.40}")
      if value is not None and not 0 <= value <= 999:
        bad("answer", "range", f"answer {value} outside AIME range 0..999")
    if probs:
      report.problems.extend(probs)
      report.rejected += 1
      continue
    tasks.append(Task(id=_task_id(o, prefix, lineno), domain="math", question=problem.strip(),
                      answers=[str(value)]))
    report.accepted += 1
  return tasks, report
