"""Audit report settings (ml-collections), read by `foresight-jax report --config configs/audit.py`.

    foresight-jax report runs/demo-X --out report.html --config configs/audit.py \
        --set theater.grounding=0.3 --set report.bootstrap_resamples=0

The values are the code's own defaults (evals/theater.py TheaterThresholds, where each threshold
is explained; evals/html_report.py ReportSettings), so a report made without --config and one
made with this file unchanged are the same report. Edit a copy, or override with --set.
"""
import dataclasses

import ml_collections

from foresight_jax.evals import html_report


def get_config() -> ml_collections.ConfigDict:
  d = html_report.ReportSettings()
  cfg = ml_collections.ConfigDict()
  # planning theater: confidence, grounding, episode_confidence, min_content_tokens
  cfg.theater = ml_collections.ConfigDict(dataclasses.asdict(d.theater))
  # equal-width bins (ECE, reliability diagram) and equal-mass bins (adaptive ECE)
  cfg.calibration = ml_collections.ConfigDict({"n_bins": d.n_bins, "adaptive_bins": d.adaptive_bins})
  # bootstrap_resamples: 95% intervals in the table (0: none); max_episodes: drill-down per run (0: all)
  cfg.report = ml_collections.ConfigDict({"bootstrap_resamples": d.bootstrap_resamples,
                                          "max_episodes": d.max_episodes})
  return cfg
