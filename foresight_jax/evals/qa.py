"""Answer checks of the eval command (`foresight-jax eval`): SQuAD EM / token F1 for QA, the
boxed-integer check and math-verify for math.

- ``em``: SQuAD normalisation (lowercase, drop ASCII punctuation, drop a/an/the, collapse
  whitespace: `scoring.normalize_answer`, the same function the RL reward's gold tables are built
  with), exact match against ANY gold. It is the EM of Search-R1 / verl
  (`verl/utils/reward_score/search_r1_like_qa_em.py`, `em_check`); tests/test_evals_qa.py checks
  the two agree on >= 200 (prediction, gold) pairs.
- ``f1``: SQuAD token F1 (`metrics.token_f1`), the max over golds.
- a reference that is a list or a table (FanOutQA, ``answer_match == "all"``): EM is 1 iff every
  gold string occurs in the answer as whole words, F1 is the fraction that does (FanOutQA's loose
  accuracy); token F1 against one element of a list would reward naming any one of them.
- math: ``boxed_match`` is the project's own check (the last ``\\boxed{}`` holds an integer equal
  to the gold: `scoring.math_match`, the outcome); ``math_verify`` is HuggingFace math-verify's
  verdict next to it (symbolic equivalence), None where math-verify cannot parse the prediction
  or the gold (or is not installed): no verdict is better than a guessed one.
"""
from __future__ import annotations

import threading
from typing import Sequence

from foresight_jax.data.scoring import exact_match, found_fraction, math_match
from foresight_jax.evals.metrics import token_f1


def em(pred: str, golds: Sequence[str]) -> float:
  """SQuAD exact match against any gold (0.0 / 1.0)."""
  return exact_match(pred, list(golds))


def f1(pred: str, golds: Sequence[str]) -> float:
  """SQuAD token F1, the max over golds (0.0 without golds)."""
  return max((token_f1(pred, g) for g in golds), default=0.0)


_TAG_RE = __import__("re").compile(r"</?[a-z_]+>")


def free_text_f1(text: str, golds: Sequence[str]) -> float:
  """F1 of a turn's whole text, tags removed, against the golds: whether the model knows the answer
  even where it never wrote <answer> (a small instruct model often replies in plain prose). The
  reverse of the format-capability gap: capability without the format."""
  return f1(_TAG_RE.sub(" ", text), golds)


def qa_scores(pred: str | None, golds: Sequence[str], match: str = "any") -> dict[str, float]:
  """{"em", "f1"} of a search answer (`match` "all": see the module docstring); no answer: 0."""
  if pred is None:
    return {"em": 0.0, "f1": 0.0}
  if match == "all":
    frac = found_fraction(pred, list(golds))
    return {"em": float(frac == 1.0), "f1": frac}
  return {"em": em(pred, golds), "f1": f1(pred, golds)}


def math_verify_match(pred: str, golds: Sequence[str]) -> bool | None:
  """math-verify's verdict: does `pred` equal any gold? None when it cannot judge (a side that
  does not parse, or math-verify not installed)."""
  try:
    from math_verify import parse, verify
  except ImportError:
    return None
  # math-verify times out with SIGALRM, which only the main thread may set
  timeout = 5 if threading.current_thread() is threading.main_thread() else None
  p = parse(pred, parsing_timeout=timeout)
  if not p:
    return None
  parsed = [g for g in (parse(f"${g}$", parsing_timeout=timeout) for g in golds) if g]
  if not parsed:
    return None
  return any(verify(g, p, timeout_seconds=timeout) for g in parsed)


def answer_checks(domain: str, pred: str | None, golds: Sequence[str], match: str = "any") -> dict:
  """Every check of one answer, as the eval receipts store them: em, f1, boxed_match, math_verify.

  Math: em is the boxed-integer outcome (the figure of record, as in training), f1 None."""
  if domain != "math":
    return {**qa_scores(pred, golds, match), "boxed_match": None, "math_verify": None}
  if pred is None:
    return {"em": 0.0, "f1": None, "boxed_match": 0.0, "math_verify": False}
  boxed = math_match(pred, list(golds))
  return {"em": boxed, "f1": None, "boxed_match": boxed,
          "math_verify": math_verify_match(pred, golds)}


__all__ = ["answer_checks", "em", "f1", "math_verify_match", "qa_scores"]
