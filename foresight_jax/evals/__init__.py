"""Evaluation: a host-level multi-turn agent loop, audit receipts, the four separate figures
(format, grounding, calibration, accuracy) plus held-out loss, and the run-comparison report.

Submodules are imported explicitly (``from foresight_jax.evals import agent``):

- ``agent``    run_agent / evaluate (generate function and tools injectable), model_generate_fn
- ``receipts`` one JSON object per agent step plus one per episode (design.md §4)
- ``metrics``  figures from live episodes or recomputed from receipts alone; held_out_loss
- ``report``   comparison table (text + JSON) across runs
- ``calibration`` Brier, ECE (fixed and adaptive bins), AUROC, confidence update, per turn index
- ``theater``  planning-theater flags (confident yet ungrounded, restated plans, confident failures)
- ``html_report`` the offline HTML audit (`foresight-jax report`); ``plots`` its PNG figures
- ``qa``       answer checks of `foresight-jax eval`: SQuAD EM / F1, boxed integer, math-verify
- ``judge``    the pluggable LLM judge (local model through our sampler, or OpenAI-compatible HTTP)
- ``suites``   the eval suites (world, fanoutqa, champ, registered sets) and their figures;
               ``runner`` runs them, ``device_agent`` on FC-RL's device tool path,
               ``eval_config`` every key with its default
"""
