"""PNG figures of the audit report (matplotlib, Agg canvas: no display, no global pyplot state).

Each function returns PNG bytes. Figures are built on `matplotlib.figure.Figure` with an Agg
canvas rather than through pyplot, so the report can be made from any thread or process
without choosing or switching a backend. The PNG "Software" text chunk (which names a web
address) is dropped: the report must hold no external reference, not even inside an image.
"""
from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLORS = {"format": "#4c72b0", "grounding": "#dd8452", "accuracy": "#55a868"}


def _png(fig: Figure) -> bytes:
  FigureCanvasAgg(fig)
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
  return buf.getvalue()


def reliability_png(bins: Sequence[dict], title: str) -> bytes:
  """Reliability diagram: observed success frequency against mean estimate per equal-width bin
  (calibration.reliability_bins), the diagonal of perfect calibration, and the count per bin."""
  fig = Figure(figsize=(4.2, 4.2))
  top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
  width = bins[0]["hi"] - bins[0]["lo"] if bins else 0.1
  full = [b for b in bins if b["n"]]
  top.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfect calibration")
  top.bar([b["lo"] + width / 2 for b in full], [b["frequency"] for b in full], width=width * 0.9,
          color="#4c72b0", alpha=0.6, label="observed success rate")
  top.plot([b["mean_estimate"] for b in full], [b["frequency"] for b in full], "o", color="#c44e52",
           label="(mean estimate, rate)")
  top.set_xlim(0, 1)
  top.set_ylim(0, 1)
  top.set_ylabel("success frequency")
  top.set_title(title, fontsize=9)
  top.legend(fontsize=7, loc="upper left")
  bottom.bar([b["lo"] + width / 2 for b in bins], [b["n"] for b in bins], width=width * 0.9, color="gray")
  bottom.set_xlabel("success estimate")
  bottom.set_ylabel("count")
  fig.tight_layout()
  return _png(fig)


def grounding_hist_png(groundings: Mapping[str, Sequence[float]], bins: int = 10) -> bytes:
  """One histogram panel per run of its turns' grounding scores (precision in [0, 1])."""
  names = list(groundings)
  cols = min(4, max(1, len(names)))  # rows of four panels: many runs stay readable
  nrows = -(-max(1, len(names)) // cols)
  fig = Figure(figsize=(3.2 * cols, 2.8 * nrows))
  axes = fig.subplots(nrows, cols, squeeze=False).ravel()
  for ax in axes[len(names):]:
    ax.set_visible(False)
  for ax, name in zip(axes, names):
    vals = list(groundings[name])
    ax.hist(vals, bins=bins, range=(0, 1), color=COLORS["grounding"], edgecolor="white")
    ax.set_title(f"{name}\n(n={len(vals)})", fontsize=8)
    ax.set_xlabel("grounding (token precision)")
    ax.set_xlim(0, 1)
    ax.set_ylabel("turns")
  fig.tight_layout()
  return _png(fig)


def gap_png(rows: Sequence[dict]) -> bytes:
  """Format, grounding and accuracy side by side per run, runs grouped by stage (rows:
  [{stage, run, format_turn, grounding, accuracy}] in display order); unmeasured bars are absent."""
  keys = (("format_turn", "format"), ("grounding", "grounding"), ("accuracy", "accuracy"))
  fig = Figure(figsize=(max(4.0, 1.7 * len(rows) + 1.5), 3.8))
  ax = fig.subplots()
  w = 0.8 / len(keys)
  for j, (key, label) in enumerate(keys):
    xs = [i + (j - 1) * w for i, r in enumerate(rows) if r.get(key) is not None]
    ys = [r[key] for r in rows if r.get(key) is not None]
    bars = ax.bar(xs, ys, width=w, color=COLORS[label], label=label)
    ax.bar_label(bars, fmt="%.2f", fontsize=6)  # a 0.00 bar is invisible without its number
  ax.set_xticks(range(len(rows)))
  ax.set_xticklabels([f"{r['stage']}\n{textwrap.fill(r['run'], 16)}" for r in rows], fontsize=7)
  ax.set_ylim(0, 1.1)
  ax.set_ylabel("fraction")
  ax.legend(fontsize=7, ncols=3, loc="upper right")
  ax.set_title("format vs capability per stage", fontsize=9)
  fig.tight_layout()
  return _png(fig)


def per_turn_png(per_run: Mapping[str, Mapping[int, dict]], key: str = "brier",
                 label: str = "Brier") -> bytes:
  """A per-turn figure (calibration.per_turn) against the turn index, one line per run."""
  fig = Figure(figsize=(4.6, 3.0))
  ax = fig.subplots()
  for name, turns in per_run.items():
    pts = [(t, f[key]) for t, f in sorted(turns.items()) if f.get(key) is not None]
    if pts:
      ax.plot([t for t, _ in pts], [v for _, v in pts], "o-", label=name)
  ax.set_xlabel("turn index")
  ax.set_ylabel(label)
  ax.set_ylim(0, 1)  # the figures plotted here live on [0, 1]: a zoomed axis would inflate gaps
  ax.set_title(f"{label} per turn", fontsize=9)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=7, loc="lower left")
  fig.tight_layout()
  return _png(fig)
