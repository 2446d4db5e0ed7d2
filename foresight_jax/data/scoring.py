"""Answer scoring shared by data generation, the builder and the RL reward (design.md §3).

- search: SQuAD-style normalisation (lowercase, drop punctuation and articles, collapse
  whitespace), exact match against any gold answer; for a question whose reference is a list
  or a table (FanOutQA's ``answer_match == "all"``), every reference string must occur in the
  answer as whole words (``found_fraction`` == 1).
- math: integer equality of the last ``\\boxed{...}`` in the prediction.
"""
from __future__ import annotations

import re
import string

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
  """SQuAD normalisation, in SQuAD's order: lower -> drop punctuation -> articles -> spaces."""
  s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
  return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(pred: str, golds: list[str] | tuple[str, ...]) -> float:
  p = normalize_answer(pred)
  return float(any(p == normalize_answer(g) for g in golds))


def extract_boxed(text: str) -> str | None:
  """Content of the LAST ``\\boxed{...}`` (nested braces allowed), or None."""
  start = text.rfind("\\boxed{")
  if start < 0:
    return None
  i, depth = start + len("\\boxed{"), 1
  for j in range(i, len(text)):
    if text[j] == "{":
      depth += 1
    elif text[j] == "}":
      depth -= 1
      if depth == 0:
        return text[i:j]
  return None  # unbalanced: treat as no answer rather than guessing


def parse_int(text: str | None) -> int | None:
  """Integer in a short answer string ("1,024", "$12$", " 7 "); None when it is not one."""
  if text is None:
    return None
  t = text.strip().strip("$").replace(",", "").replace(" ", "")
  if re.fullmatch(r"[+-]?\d+", t):
    return int(t)
  return None


def math_match(pred: str, golds: list[str] | tuple[str, ...], require_boxed: bool = True) -> float:
  """1.0 iff the boxed integer equals any gold integer (golds are plain integer strings)."""
  inner = extract_boxed(pred)
  if inner is None and not require_boxed:
    inner = pred
  value = parse_int(inner)
  if value is None:
    return 0.0
  return float(any(parse_int(g) == value for g in golds))


def found_fraction(pred: str, golds: list[str] | tuple[str, ...]) -> float:
  """Fraction of the (non-empty after normalisation) gold strings found in `pred` as whole words,
  both SQuAD-normalised: FanOutQA's "loose accuracy" (FanOutQA also lemmatises with spacy; we
  do not). 0 when no gold survives normalisation."""
  cand = f" {normalize_answer(pred)} "
  norm = [g for g in (normalize_answer(g) for g in golds) if g]
  return sum(f" {g} " in cand for g in norm) / len(norm) if norm else 0.0


def score_answer(domain: str, pred: str, golds: list[str] | tuple[str, ...], match: str = "any") -> float:
  """The outcome y of an answer. `match`: "any" (one gold suffices: exact match / boxed
  integer) or "all" (search only: every gold string must be found, see `found_fraction`)."""
  if domain == "math":
    return math_match(pred, golds)
  if match == "all":
    return float(found_fraction(pred, golds) == 1.0)
  if match != "any":
    raise ValueError(f"answer match must be 'any' or 'all', got {match!r}")
  return exact_match(pred, golds)
