"""`foresight-jax report`: the self-contained HTML audit of runs' receipts."""
from __future__ import annotations

import argparse
import json


def cmd_report(args) -> int:
  from foresight_jax.evals import html_report
  settings = None
  if args.config or args.set:
    from foresight_jax import configs
    if not args.config:
      raise SystemExit("report: --set needs --config (e.g. --config configs/audit.py)")
    settings = html_report.ReportSettings.from_config(configs.load(args.config, args.set))
  print(json.dumps(html_report.write_report(args.run_dirs, args.out, settings)))
  return 0


def add_parsers(sub) -> None:
  p = sub.add_parser("report", help="self-contained HTML audit of runs' receipts",
                     formatter_class=argparse.RawDescriptionHelpFormatter, description=(
      "Write one HTML file that works offline (embedded PNG figures, no scripts, no external\n"
      "references) from the receipts of one or more runs: the comparison table across runs; format,\n"
      "grounding and accuracy side by side per stage (FE-SFT, FC-RL, outcome-only GRPO); a reliability\n"
      "diagram, Brier / ECE / adaptive ECE / AUROC and the confidence update per turn index for each\n"
      "run; grounding histograms; planning-theater flags (thresholds in configs/audit.py); and a\n"
      "drill-down per episode. RUN_DIR: a directory with receipts*.jsonl (a demo run directory), or\n"
      "one receipts JSONL file. Prints {out, runs, bytes} as one JSON line."))
  p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory or receipts JSONL file")
  p.add_argument("--out", default="report.html", help="output HTML path (default report.html)")
  p.add_argument("--config", default=None, help="an ml-collections file, e.g. configs/audit.py "
                 "(default: the same settings built in)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a --config field, e.g. --set theater.grounding=0.3 (repeatable)")
  p.set_defaults(fn=cmd_report)
