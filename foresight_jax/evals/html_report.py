"""`foresight-jax report`: one self-contained HTML audit of one or more runs' receipts.

The file works offline and references nothing outside itself: figures are PNGs embedded as
base64 `data:` URIs, the style sheet is inline, there is no script, and every piece of text from
the receipts is HTML-escaped (a model's output is untrusted text). Sections: the comparison table
across runs; the format-capability gap per stage (format, grounding and accuracy side by side for
FE-SFT, FC-RL and outcome-only GRPO runs); calibration per run (reliability diagram, figures per
turn index, confidence update); grounding histograms; planning-theater flags; and a drill-down per
episode keeping each step's forecast, confidence, tool call, observation and grounding together
with the outcome and the sequence of confidence updates.

Runs are the distinct "run" fields of the receipt files (the file name where the field is
empty); a RUN_DIR contributes every `receipts*.jsonl` in it, and its `comparison.json` (written
by the demo) supplies the held-out loss, which receipts cannot.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foresight_jax.evals import bootstrap, report, theater
from foresight_jax.evals import calibration as cal
from foresight_jax.evals import metrics as M
from foresight_jax.evals import receipts as rc

STAGES = ("FE-SFT", "FC-RL", "GRPO", "other")
# the demo's run names ("WM-AMT+FE-SFT", "FC-RL (reward=fc)", "GRPO (reward=outcome)") and its
# receipt file names (receipts_2_fcrl.jsonl), lower-cased with only letters kept; RL runs first,
# since they start from an FE-SFT model and may say so in their names
_STAGE_KEYS = (("FC-RL", ("fcrl", "rewardfc")), ("GRPO", ("grpo", "rewardoutcome")), ("FE-SFT", ("fesft",)))
EXTRA_COLUMNS = (
    report.Column("ece_adaptive", "adaptive ECE", "lower"),
    report.Column("auroc", "AUROC", "higher", ".3f"),
    report.Column("theater_turn_rate", "theater turns", "lower", ".3f"),
    report.Column("theater_episode_rate", "confident failures", "lower", ".3f"),
)


@dataclass(frozen=True)
class ReportSettings:
  """Everything configs/audit.py can set (that file is built from these defaults)."""
  theater: theater.TheaterThresholds = field(default_factory=theater.TheaterThresholds)
  n_bins: int = 10               # equal-width bins: ECE and the reliability diagram
  adaptive_bins: int = 10        # equal-mass bins: adaptive ECE
  bootstrap_resamples: int = 1000  # 95% intervals in the comparison table; 0: none
  max_episodes: int = 0          # drill-down episodes per run, flagged first; 0: all

  @classmethod
  def from_config(cls, cfg: Any) -> ReportSettings:
    c, r = cfg.get("calibration", {}), cfg.get("report", {})
    d = cls()
    return cls(theater=theater.TheaterThresholds.from_config(cfg.get("theater", {})),
               n_bins=c.get("n_bins", d.n_bins), adaptive_bins=c.get("adaptive_bins", d.adaptive_bins),
               bootstrap_resamples=r.get("bootstrap_resamples", d.bootstrap_resamples),
               max_episodes=r.get("max_episodes", d.max_episodes))


@dataclass
class Run:
  name: str               # as shown: the receipts' run name, prefixed where two runs share it
  source: str
  receipts: list[dict]
  held_out_loss: float | None = None
  stage: str = "other"    # from the unprefixed name (a directory's name says nothing of the stage)


def stage_of(name: str) -> str:
  key = re.sub(r"[^a-z]", "", name.lower())
  return next((stage for stage, keys in _STAGE_KEYS if any(k in key for k in keys)), "other")


def _natural(p: Path) -> list:
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def load_runs(paths: list[str]) -> list[Run]:
  """Runs of RUN_DIRs and/or receipt files, in the order given (files naturally sorted). A name
  seen twice (the same demo run in two directories) is prefixed with its directory's name."""
  runs: list[Run] = []
  for path in map(Path, paths):
    files = sorted(path.glob("receipts*.jsonl"), key=_natural) if path.is_dir() else [path]
    if not files:
      raise FileNotFoundError(f"{path}: no receipts*.jsonl found")
    table = path / "comparison.json" if path.is_dir() else path.parent / "comparison.json"
    losses = json.loads(table.read_text()).get("metrics", {}) if table.is_file() else {}
    for f in files:
      by_run: dict[str, list[dict]] = {}
      for r in rc.read_receipts(f):
        by_run.setdefault(r.get("run") or f.stem, []).append(r)
      for name, recs in by_run.items():
        runs.append(Run(name, str(f), recs, (losses.get(name) or {}).get("held_out_loss"), stage_of(name)))
  for prefix in (lambda r: Path(r.source).parent.name, lambda r: Path(r.source).stem):
    count = collections.Counter(r.name for r in runs)
    for r in runs:
      if count[r.name] > 1:
        r.name = f"{prefix(r)}/{r.name}"
  return runs


def analyse(run: Run, s: ReportSettings) -> dict:
  """Every figure of one run, from its receipts alone (plus the held-out loss it was given)."""
  eps = cal.audit_episodes(run.receipts)
  units = [e.figures for e in eps]
  pooled = cal.pooled(eps, s.n_bins, s.adaptive_bins)
  th = theater.theater_summary(eps, s.theater).get(eps[0].run if eps else "", {})
  metrics = {**M.aggregate(units, s.n_bins).to_dict(), "held_out_loss": run.held_out_loss,
             "ece_adaptive": pooled["ece_adaptive"], "auroc": pooled["auroc"],
             "theater_turn_rate": th.get("turn_rate"), "theater_episode_rate": th.get("episode_rate")}
  ci = bootstrap.intervals(units, n_resamples=s.bootstrap_resamples) if s.bootstrap_resamples and units else {}
  p = [x for e in eps for _, x in e.turns()]
  y = [e.outcome for e in eps for _ in e.turns()]
  return {"run": run, "stage": run.stage, "episodes": eps, "metrics": metrics, "intervals": ci,
          "pooled": pooled, "per_turn": cal.per_turn(eps, s.n_bins, s.adaptive_bins), "theater": th,
          "reliability": cal.reliability_bins(p, y, s.n_bins),
          "groundings": [g for u in units for g in u.groundings]}


# ---------------------------------------------------------------------------------------------
# HTML pieces


def esc(x: Any) -> str:
  """HTML-escaped text. '://' is written with an entity so that text quoting a web address is
  shown as written yet the file never contains one (a grep for external references finds none)."""
  return html.escape(str(x)).replace("://", ":&#47;&#47;")


def _num(v: Any, fmt: str = ".3f") -> str:
  return report._cell(v, fmt)  # "-" for a figure that was not computed, as in the text table


def _img(png: bytes, alt: str) -> str:
  return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
  """Cells are HTML already (callers escape text)."""
  head = "".join(f"<th>{h}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
  return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _anchor(ri: int, ei: int) -> str:
  return f"r{ri}-e{ei}"


def comparison_section(res: list[dict]) -> str:
  cols = report.COLUMNS + EXTRA_COLUMNS
  rows = report.comparison_rows({r["run"].name: r["metrics"] for r in res}, cols)
  best = report.best_runs(rows, cols) if len(rows) > 1 else {}
  arrow = {"lower": " &darr;", "higher": " &uarr;", "": ""}
  body = []
  for r, a in zip(rows, res):
    cells = [esc(r["run"]), esc(a["stage"])]
    for c in cols:
      v, ci = r[c.key], a["intervals"].get(c.key)
      cell = esc(_num(v, c.fmt)) + (" *" if r["run"] in best.get(c.key, ()) else "")
      if ci and v is not None:
        cell += f'<br><small>[{esc(format(ci[0], c.fmt))}, {esc(format(ci[1], c.fmt))}]</small>'
      cells.append(cell)
    body.append(cells)
  return ("<h2>Comparison across runs</h2><p>* best of the runs; [lo, hi]: 95% bootstrap interval over "
          "episodes. Figures are recomputed from the receipts; held-out loss comes from the run "
          "directory's comparison.json.</p>"
          + _table(["run", "stage"] + [esc(c.title) + arrow[c.better] for c in cols], body))


def gap_section(res: list[dict]) -> str:
  from foresight_jax.evals import plots
  rows = sorted(({"stage": r["stage"], "run": r["run"].name, **{k: r["metrics"][k] for k in
                 ("format_turn", "grounding", "accuracy")}} for r in res), key=lambda d: STAGES.index(d["stage"]))
  body = [[esc(d["stage"]), esc(d["run"]), _num(d["format_turn"]), _num(d["grounding"]), _num(d["accuracy"]),
           _num(None if d["format_turn"] is None or d["accuracy"] is None else d["format_turn"] - d["accuracy"], "+.3f")]
          for d in rows]
  return ("<h2>Format vs capability per stage</h2><p>A model can learn the block format without the "
          "capability: format adherence next to forecast grounding and task accuracy.</p>"
          + _img(plots.gap_png(rows), "format, grounding and accuracy per stage")
          + _table(["stage", "run", "format", "grounding", "accuracy", "format &minus; accuracy"], body))


def calibration_section(res: list[dict], s: ReportSettings) -> str:
  from foresight_jax.evals import plots
  parts = [("<h2>Calibration</h2><p>Success estimates against outcomes, per turn index and pooled. "
            "Update: the move from an episode's previous estimate to this one, toward the outcome "
            "(|prev &minus; y| &minus; |this &minus; y| &gt; 0), away, or flat (unchanged).</p>"),
           _img(plots.per_turn_png({r["run"].name: r["per_turn"] for r in res}), "Brier per turn")]
  head = ["turn", "n", "mean estimate", "base rate", "Brier", f"ECE ({s.n_bins} bins)",
          f"adaptive ECE ({s.adaptive_bins})", "AUROC", "updates", "toward", "flat", "away", "mean move"]
  for r in res:
    rows = []
    for t, f in list(r["per_turn"].items()) + [("all", {**r["pooled"], **r["pooled"]["update"]})]:
      rows.append([esc(t), esc(f["n"]), _num(f["mean_estimate"]), _num(f["base_rate"]), _num(f["brier"], ".4f"),
                   _num(f["ece"], ".4f"), _num(f["ece_adaptive"], ".4f"), _num(f["auroc"]), esc(f["n_updates"]),
                   _num(f["toward_rate"]), _num(f["flat_rate"]), _num(f["away_rate"]), _num(f["mean_move"], "+.3f")])
    up = r["pooled"]["update"]
    parts.append(f'<div class="run"><h3>{esc(r["run"].name)}</h3>'
                 + _img(plots.reliability_png(r["reliability"], r["run"].name), f"reliability diagram {r['run'].name}")
                 + _table(head, rows)
                 + f"<p>Episodes with two or more estimates: {esc(up['n_episodes'])}; ending closer to the "
                 f"outcome than they started: {esc(_num(up['episodes_closer_rate']))}.</p></div>")
  return "".join(parts)


def grounding_section(res: list[dict]) -> str:
  from foresight_jax.evals import plots
  return ("<h2>Grounding</h2><p>Token precision of each tool turn's step-1 expectation against the "
          "observation that followed (0 for a missing block).</p>"
          + _img(plots.grounding_hist_png({r["run"].name: r["groundings"] for r in res}), "grounding histograms"))


def theater_section(res: list[dict], s: ReportSettings) -> str:
  t = s.theater
  parts = [(f"<h2>Planning theater</h2><p>Thresholds: confidence &ge; {esc(t.confidence)} with grounding &lt; "
            f"{esc(t.grounding)} (confident_ungrounded); fewer than {esc(t.min_content_tokens)} predicted "
            f"word(s) beyond the action (restates_action); failed with every estimate &ge; "
            f"{esc(t.episode_confidence)} (confident_through_failure).</p>")]
  for ri, r in enumerate(res):
    th = r["theater"]
    if not th:
      continue
    rows = [[f'<a href="#{_anchor(ri, f["episode"])}">{esc(f["task_id"])}</a>', esc("-" if f["step"] is None else f["step"]),
             esc(f["reason"]), _num(f["success"], ".2f"), _num(f["grounding"]), esc(f["detail"])] for f in th["flagged"]]
    parts.append(f'<div class="run"><h3>{esc(r["run"].name)}</h3><p>flagged turns {th["n_flagged_turns"]} of '
                 f'{th["n_checked_turns"]} checked ({esc(_num(th["turn_rate"]))}); confident failures '
                 f'{th["n_flagged_episodes"]} of {th["n_episodes"]} episodes ({esc(_num(th["episode_rate"]))}); '
                 f'episodes with any flag {esc(_num(th["any_rate"]))}</p>'
                 + (f"<details><summary>{len(rows)} flagged receipts</summary>"
                    + _table(["task", "step", "reason", "estimate", "grounding", "detail"], rows) + "</details>"
                    if rows else "<p>none flagged</p>") + "</div>")
  return "".join(parts)


def judge_section(res: list[dict]) -> str:
  """The LLM judge's verdicts next to EM, and every episode it gave no verdict on (a timeout, an
  HTTP error, a reply that was neither CORRECT nor INCORRECT), named with the judge's reason."""
  parts = []
  for ri, r in enumerate(res):
    judged = [(i, e.receipt) for i, e in enumerate(r["episodes"]) if e.receipt.get("judge")]
    if not judged:
      continue
    verdicts = [ep["judge"]["verdict"] for _, ep in judged]
    none = [(i, ep) for i, ep in judged if ep["judge"]["verdict"] is None]
    agree = [v == bool(ep.get("em", ep.get("outcome", 0.0)) >= 0.5) for (_, ep), v in zip(judged, verdicts)
             if v is not None]
    rows = [[f'<a href="#{_anchor(ri, i)}">{esc(ep["task_id"])}</a>', esc(ep["judge"].get("name", "")),
             esc(ep["judge"].get("reason") or "")] for i, ep in none]
    parts.append(f'<div class="run"><h3>{esc(r["run"].name)}</h3><p>judged {len(judged)} episodes: '
                 f'{sum(v is True for v in verdicts)} correct, {sum(v is False for v in verdicts)} incorrect, '
                 f'<span class="flag">{len(none)} no verdict</span>; agreement with EM '
                 f'{esc(_num(sum(agree) / len(agree) if agree else None))}</p>'
                 + (_table(["task", "judge", "why no verdict"], rows) if rows else "") + "</div>")
  if not parts:
    return ""
  return "<h2>LLM judge</h2><p>Verdicts next to exact match; episodes without a verdict are listed.</p>" + "".join(parts)


def _episode_html(ri: int, ei: int, e: cal.AuditEpisode, flags: list[dict]) -> str:
  ep = e.receipt
  by_step: dict = {}
  for f in flags:
    by_step.setdefault(f["step"], []).append(f["reason"])
  rows = []
  for st, est, g in zip(e.steps, e.estimates, e.groundings):
    act = st.get("action")
    call = "-" if act is None else f'{act["tool"]}: {act["arg"]}'
    obs = st["observation"]
    obs_html = "-" if obs is None else (f"<pre>{esc(obs)}</pre>" + ("" if len(obs) == st["observation_chars"]
                                        else f"<small>(truncated; {esc(st['observation_chars'])} chars)</small>"))
    rows.append([esc(st["step"]), f'<pre>{esc(st["forecast"] or "-")}</pre>', _num(est, ".2f"), f"<pre>{esc(call)}</pre>",
                 obs_html, _num(g), "yes" if st["format_ok"] else "no", esc(", ".join(by_step.get(st["step"], [])))])
  upd = cal.episode_updates(e)
  seq = " &rarr; ".join(f"{s:.2f}" for _, s in upd["turns"]) or "-"
  moves = ", ".join(f"turn {t}: {'toward' if m > cal.FLAT else 'away' if m < -cal.FLAT else 'flat'} {m:+.2f}"
                    for t, m in upd["moves"]) or "-"
  ok = "success" if e.outcome >= cal.SUCCESS_CUTOFF else "failure"
  tags = sorted({r for rs in by_step.values() for r in rs})
  return (f'<details id="{_anchor(ri, ei)}"><summary>{esc(e.task_id)}: {ok}, estimates {seq}'
          + (f' <span class="flag">{esc(", ".join(tags))}</span>' if tags else "") + "</summary>"
          f'<p>question: {esc(ep.get("question", ""))}<br>answer: {esc("-" if ep.get("answer") is None else ep["answer"])}; gold: '
          f'{esc(" | ".join(map(str, ep.get("answers", []))))}; outcome {esc(e.outcome)}; ended: {esc(ep.get("ended"))}</p>'
          + _table(["step", "forecast", "confidence", "tool call", "observation", "grounding", "format", "flags"], rows, "steps")
          + f"<p>confidence updates: {seq} (outcome {esc(e.outcome)}); {esc(moves)}</p></details>")


def drilldown_section(res: list[dict], s: ReportSettings) -> str:
  parts = [("<h2>Episodes</h2><p>Each step's forecast, confidence, tool call and observation, with the "
            "outcome and the sequence of confidence updates.</p>")]
  for ri, r in enumerate(res):
    flags: dict[int, list[dict]] = {}
    for f in r["theater"].get("flagged", []):
      flags.setdefault(f["episode"], []).append(f)
    order = sorted(range(len(r["episodes"])), key=lambda i: i not in flags)  # flagged first, stable
    if s.max_episodes:
      order = sorted(order[:s.max_episodes])
    parts.append(f'<div class="run"><h3>{esc(r["run"].name)} ({len(order)} of {len(r["episodes"])} episodes)</h3>'
                 + "".join(_episode_html(ri, i, r["episodes"][i], flags.get(i, [])) for i in order) + "</div>")
  return "".join(parts)


STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px;vertical-align:top;text-align:right}
td:first-child,th:first-child,table.steps td{text-align:left}pre{white-space:pre-wrap;max-height:12em;overflow:auto;
margin:0;font-size:11px;max-width:40em}.flag{color:#b00}details{margin:.3em 0}.run{margin:1em 0}img{max-width:100%}"""


def build_html(runs: list[Run], settings: ReportSettings | None = None) -> str:
  s = settings or ReportSettings()
  res = [analyse(r, s) for r in runs]
  sources = "".join(f"<li>{esc(r.name)}: {esc(r.source)}</li>" for r in runs)
  return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>foresight_jax audit report</title>"
          f"<style>{STYLE}</style></head><body><h1>foresight_jax audit report</h1><ul>{sources}</ul>"
          + comparison_section(res) + gap_section(res) + calibration_section(res, s) + grounding_section(res)
          + theater_section(res, s) + judge_section(res) + drilldown_section(res, s)
          + f"<p><small>settings: {esc(json.dumps(dataclasses.asdict(s)))}</small></p></body></html>\n")


def write_report(paths: list[str], out: str | Path, settings: ReportSettings | None = None) -> dict:
  """Write the report for RUN_DIRs / receipt files; returns {out, runs, bytes}."""
  runs = load_runs(list(paths))
  text = build_html(runs, settings)
  Path(out).parent.mkdir(parents=True, exist_ok=True)
  Path(out).write_text(text, encoding="utf-8")
  return {"out": str(out), "runs": [r.name for r in runs], "bytes": len(text.encode("utf-8"))}
