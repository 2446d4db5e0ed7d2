"""Run-comparison table: rows are runs (e.g. "WM-AMT+FE-SFT" vs "standard mid-training+FE-SFT"),
columns the separately-reported figures, as plain text and as JSON.

Each column says which way is better, so a reader never has to remember that lower Brier wins
while higher grounding wins; the table also carries the counts behind the figures (episodes,
estimates), because a Brier over 12 estimates and one over 3000 are not the same evidence.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from foresight_jax.evals.bootstrap import separated


@dataclass(frozen=True)
class Column:
  key: str          # field of the metrics dict
  title: str
  better: str       # "lower" | "higher" | "" (counts)
  fmt: str = ".4f"


COLUMNS = (
    Column("held_out_loss", "held-out loss", "lower"),
    Column("format_turn", "format", "higher", ".3f"),
    Column("grounding", "grounding", "higher", ".3f"),
    Column("brier", "Brier", "lower"),
    Column("brier_skill", "skill", "higher", ".3f"),
    Column("ece", "ECE", "lower"),
    Column("accuracy", "accuracy", "higher", ".3f"),
    Column("n_episodes", "episodes", "", "d"),
    Column("n_estimates", "estimates", "", "d"),
)


def _as_dict(m: Any) -> dict:
  return dict(m.to_dict() if hasattr(m, "to_dict") else m)


def _cell(v: Any, fmt: str) -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return "-"  # not measured: never print a number that was not computed
  return format(v, fmt)


def comparison_rows(runs: Mapping[str, Any], columns: Sequence[Column] = COLUMNS) -> list[dict]:
  """[{"run": name, key: value, ...}] in the given order (runs: name -> EvalMetrics or dict)."""
  out = []
  for name, m in runs.items():
    d = _as_dict(m)
    out.append({"run": name, **{c.key: d.get(c.key) for c in columns}})
  return out


def best_runs(rows: Sequence[dict], columns: Sequence[Column] = COLUMNS) -> dict[str, list[str]]:
  """Per directional column, the run(s) with the best value (ties all listed)."""
  best = {}
  for c in columns:
    vals = [(r[c.key], r["run"]) for r in rows
            if c.better and r[c.key] is not None and not math.isnan(r[c.key])]
    if not vals:
      continue
    target = (min if c.better == "lower" else max)(v for v, _ in vals)
    best[c.key] = [n for v, n in vals if v == target]
  return best


def _interval(ci: Any, fmt: str) -> str:
  if not ci:
    return ""
  return f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def format_table(runs: Mapping[str, Any], columns: Sequence[Column] = COLUMNS,
                 mark_best: bool = True, intervals: Mapping[str, Mapping[str, Any]] | None = None) -> str:
  """Plain-text table; the best value of each column gets a `*` when several runs compete.
  `intervals` (run -> figure -> (lo, hi)) prints each figure's 95% interval after it."""
  rows = comparison_rows(runs, columns)
  best = best_runs(rows, columns) if mark_best and len(rows) > 1 else {}
  arrow = {"lower": " (↓)", "higher": " (↑)", "": ""}
  header = ["run"] + [c.title + arrow[c.better] for c in columns]
  ci = intervals or {}
  body = [[r["run"]] + [_cell(r[c.key], c.fmt) + ("*" if r["run"] in best.get(c.key, ()) else "")
                        + (_interval(ci.get(r["run"], {}).get(c.key), c.fmt) if r[c.key] is not None else "")
                        for c in columns] for r in rows]
  widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
            for i, h in enumerate(header)]
  line = lambda cells: "  ".join(  # noqa: E731
      (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(cells, widths)))
  sep = "  ".join("-" * w for w in widths)
  return "\n".join([line(header), sep] + [line(b) for b in body])


def comparison_json(runs: Mapping[str, Any], columns: Sequence[Column] = COLUMNS,
                    intervals: Mapping[str, Any] | None = None, differences: Mapping[str, Any] | None = None
                    ) -> dict:
  """The table's content plus each run's full metrics (and intervals, differences), for machines."""
  rows = comparison_rows(runs, columns)
  out = {"columns": [{"key": c.key, "title": c.title, "better": c.better} for c in columns],
         "rows": rows, "best": best_runs(rows, columns),
         "metrics": {name: _as_dict(m) for name, m in runs.items()}}
  if intervals is not None:
    out["intervals"] = {run: {k: list(v) if v else None for k, v in ci.items()} for run, ci in intervals.items()}
  if differences is not None:
    out["differences"] = differences
  return out


def format_differences(differences: Mapping[str, Mapping[str, Any]], fmt: str = "+.3f") -> str:
  """`A - B: figure +0.120 [0.05, 0.19] (separated)` lines from paired bootstrap differences."""
  lines = []
  for pair, per in differences.items():
    for key, d in per.items():
      if d is None:
        lines.append(f"{pair}: {key} not computed for both runs")
        continue
      diff, lo, hi = d
      verdict = "separated" if separated(d) else "inside the intervals (cannot tell apart)"
      lines.append(f"{pair}: {key} {format(diff, fmt)} [{format(lo, fmt)}, {format(hi, fmt)}] {verdict}")
  return "\n".join(lines)


def write_comparison(runs: Mapping[str, Any], json_path: str | Path,
                     text_path: str | Path | None = None,
                     columns: Sequence[Column] = COLUMNS, intervals: Mapping[str, Any] | None = None,
                     differences: Mapping[str, Any] | None = None) -> str:
  """Write the JSON (and optionally the text table); returns the text table."""
  text = format_table(runs, columns, intervals=intervals)
  if differences:
    text += "\n\npaired differences (95% bootstrap over the same tasks):\n" + format_differences(differences)
  # NaN is not JSON: a figure that could not be computed is written as null
  Path(json_path).write_text(json.dumps(_no_nan(comparison_json(runs, columns, intervals, differences)),
                                        indent=2, allow_nan=False) + "\n")
  if text_path is not None:
    Path(text_path).write_text(text + "\n")
  return text


def _no_nan(o):
  if isinstance(o, float) and not math.isfinite(o):
    return None
  if isinstance(o, dict):
    return {k: _no_nan(v) for k, v in o.items()}
  if isinstance(o, (list, tuple)):
    return [_no_nan(v) for v in o]
  return o
