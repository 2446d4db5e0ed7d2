"""Audit receipts (design.md §4): one JSON object per agent step, one per episode, as JSONL.

Step receipt (``"kind": "step"``)::

  {"kind": "step", "receipt_version": 1, "run": "...", "task_id": "w3-q17", "step": 1,
   "text": "<think> ... </search>",            # the whole generated turn (format is rechecked)
   "stop_reason": "stop" | "eos" | "length",
   "forecast": "1. search \\"q\\" -> ...",      # raw <rollout> body, null without one
   "success": 0.64 | null,                      # the turn's success estimate
   "action": {"tool": "search", "arg": "q"} | null, "invalid": false,
   "observation": "Doc 1(Title: ...) ..." | null,   # truncated to max_obs_chars
   "observation_chars": 812, "observation_sha256": "...",  # of the FULL observation
   "grounding": 0.31 | null,                    # token precision; null after an answer (nothing followed)
   "grounding_f1": 0.12 | null,                 # the secondary figure (token-F1 vs the whole observation)
   "format_ok": true, "format_problems": []}

Episode receipt (``"kind": "episode"``), written after its steps::

  {"kind": "episode", "receipt_version": 1, "run": "...", "task_id": "...", "domain": "search",
   "question": "...", "answers": [...gold...], "answer": "..." | null, "outcome": 1.0,
   "success_estimates": [0.64, 0.81], "n_steps": 2, "ended": "answer" | "max_turns",
   "format_ok": true, "format_spec": {"variant": "full", "horizon": 3, ...},
   "answer_match": "any" | "all"}            # "all": every gold string must occur (list answers)

`foresight-jax eval` (evals/suites.py) adds to each episode receipt, through ``extra``::

  {"suite": "fanoutqa", "sample": 0,           # which of the k samples of this task
   "em": 1.0, "f1": 1.0,                       # evals/qa.py (SQuAD EM / token F1, max over golds;
                                               #  for "all": every gold found / fraction found)
   "boxed_match": 1.0 | null,                  # math: the boxed-integer check (null for search)
   "math_verify": true | false | null,         # math: math-verify's verdict, null where it does not
                                               #  parse the answer or the gold, or is not installed
   "free_text_f1": 0.4 | null,                 # the best F1 of any turn's text, tags removed (null:
                                               #  math): the answer known without the <answer> format
   "judge": {"name": "http:gpt-4o-mini", "verdict": true | false | null,
             "reason": "..."} | null}           # the LLM judge (evals/judge.py); null: no judge set.
                                               #  verdict null: the judge failed or answered off
                                               #  format; the reason says which (never the API key)

Why the turn text is stored whole although the design lists only the forecast: format adherence
must be recomputable, and it is a property of the whole turn. Why the observation keeps its full
length and hash: a reader can tell a complete observation (grounding recomputable from the text)
from a truncated one (the stored grounding is then the figure of record), and can check an
observation against the environment without storing it.

This module only builds and moves dicts; it imports nothing from the agent or the metrics so
both can use it.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable

RECEIPT_VERSION = 1
_ROLLOUT_RE = re.compile(r"<rollout>(.*?)</rollout>", re.S)


def sha256(text: str) -> str:
  return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def rollout_body(text: str) -> str | None:
  """The raw text inside the turn's first <rollout> ... </rollout> (None when absent)."""
  m = _ROLLOUT_RE.search(text)
  return m.group(1).strip() if m else None


def step_receipt(task_id: str, turn: Any, run: str = "", max_obs_chars: int = 2000) -> dict:
  """Receipt of one turn (`turn`: an agent TurnRecord, duck-typed)."""
  obs = turn.observation
  return {
      "kind": "step", "receipt_version": RECEIPT_VERSION, "run": run, "task_id": task_id,
      "step": turn.step, "text": turn.text, "stop_reason": turn.stop_reason,
      "forecast": rollout_body(turn.text), "success": turn.success,
      "action": None if turn.action is None else {"tool": turn.action[0], "arg": turn.action[1]},
      "invalid": turn.invalid,
      "observation": None if obs is None else obs[:max_obs_chars],
      "observation_chars": None if obs is None else len(obs),
      "observation_sha256": None if obs is None else sha256(obs),
      "grounding": turn.grounding, "grounding_f1": getattr(turn, "grounding_f1", None),
      "format_ok": turn.format_ok,
      "format_problems": list(turn.format_problems),
  }


def episode_receipt(episode: Any, format_spec: dict, run: str = "", extra: dict | None = None) -> dict:
  """Closing receipt of an episode (`episode`: an agent Episode, duck-typed); `extra` fields
  (the eval command's, see the module docstring) are appended."""
  t = episode.task
  return {
      "kind": "episode", "receipt_version": RECEIPT_VERSION, "run": run, "task_id": t.id,
      "domain": t.domain, "question": t.question, "answers": list(t.answers),
      "answer": episode.answer, "outcome": episode.score,
      "success_estimates": list(episode.success_estimates), "n_steps": len(episode.turns),
      "ended": episode.ended, "format_ok": episode.format_ok, "format_spec": dict(format_spec),
      "answer_match": (t.meta or {}).get("answer_match", "any"), **(extra or {}),
  }


def episode_receipts(episode: Any, format_spec: dict, run: str = "",
                     max_obs_chars: int = 2000, extra: dict | None = None) -> list[dict]:
  steps = [step_receipt(episode.task.id, tr, run, max_obs_chars) for tr in episode.turns]
  return steps + [episode_receipt(episode, format_spec, run, extra)]


def write_receipts(path: str | Path, episodes: Iterable[Any], format_spec: dict, run: str = "",
                   max_obs_chars: int = 2000, append: bool = False,
                   extras: Iterable[dict] | None = None) -> int:
  """Write every episode's receipts as JSONL; returns the number of lines written. `extras`:
  one dict per episode, appended to its episode receipt."""
  n = 0
  episodes = list(episodes)
  extras = [None] * len(episodes) if extras is None else list(extras)
  if len(extras) != len(episodes):
    raise ValueError(f"{len(extras)} extras for {len(episodes)} episodes")
  with open(path, "a" if append else "w", encoding="utf-8") as f:
    for ep, extra in zip(episodes, extras):
      for r in episode_receipts(ep, format_spec, run, max_obs_chars, extra):
        f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
  return n


def read_receipts(path: str | Path) -> list[dict]:
  """All receipts of a JSONL file, in order (blank lines skipped; bad JSON raises with its line)."""
  out = []
  with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{i}: malformed receipt: {e.msg}") from e
  return out


def group_episodes(receipts: Iterable[dict], run: str | None = None
                   ) -> list[tuple[list[dict], dict]]:
  """[(step receipts, episode receipt)] in file order; an episode's steps are the step
  receipts of the same (run, task_id) seen since that key's previous episode receipt.

  Steps without a closing episode receipt (a run cut short) are an error rather than silently
  dropped: their outcome is unknown, so they cannot enter calibration or accuracy.
  """
  pending: dict[tuple, list[dict]] = {}
  out = []
  for r in receipts:
    if run is not None and r.get("run", "") != run:
      continue
    key = (r.get("run", ""), r["task_id"])
    if r["kind"] == "step":
      pending.setdefault(key, []).append(r)
    elif r["kind"] == "episode":
      steps = sorted(pending.pop(key, []), key=lambda s: s["step"])
      if len(steps) != r["n_steps"]:
        raise ValueError(f"episode {key}: {len(steps)} step receipts, expected {r['n_steps']}")
      out.append((steps, r))
    else:
      raise ValueError(f"unknown receipt kind {r['kind']!r}")
  if pending:
    raise ValueError(f"step receipts without an episode receipt: {sorted(pending)[:5]}")
  return out
