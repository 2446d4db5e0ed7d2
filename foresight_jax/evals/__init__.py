"""Evaluation: a host-level multi-turn agent loop, audit receipts, the four separate figures
(format, grounding, calibration, accuracy) plus held-out loss, and the run-comparison report.

Submodules are imported explicitly (``from foresight_jax.evals import agent``):

- ``agent``    run_agent / evaluate (generate function and tools injectable), model_generate_fn
- ``receipts`` one JSON object per agent step plus one per episode (design.md §4)
- ``metrics``  figures from live episodes or recomputed from receipts alone; held_out_loss
- ``report``   comparison table (text + JSON) across runs
"""
