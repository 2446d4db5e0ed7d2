"""Mutation audit: does the suite catch a wrong formula? Each mutant below changes one line of the
RL loss, the rewards, the evaluation figures (a sign, a clip bound, an estimator, an average, a bin
edge, the pairing of a bootstrap) or the LM stages (which tokens are trained on, packing, the loss,
the attention mask); the audit applies it to a checkout, runs the tests that
cover that file, and reports the mutant killed (a test failed) or survived. Not a test itself
(pytest does not collect this file); BUILD_NOTES.md, "Mutation audit", holds the last results.

It writes into the checkout it is given, so give it a throwaway one, never the tree you edit:
  git worktree add --detach /tmp/mut HEAD
  .venv/bin/python tests/mutation_audit.py --checkout /tmp/mut            # every mutant
  .venv/bin/python tests/mutation_audit.py --checkout /tmp/mut clip_max   # some
  git worktree remove --force /tmp/mut
Two checkouts split the mutants over two cores (`--every 2 --offset 0|1`). The default test run
(slow tests deselected) is what it measures; `--pytest-args "-m slow"` and `--tests` narrow it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

G, RW, ST = "foresight_jax/rl/grpo.py", "foresight_jax/rl/rewards.py", "foresight_jax/rl/step.py"
EM, DC, BS = "foresight_jax/evals/metrics.py", "foresight_jax/data/calibration.py", "foresight_jax/evals/bootstrap.py"

# (id, file, exact text (must occur once), replacement)
MUTANTS = [
    ("adv_no_std", G, "return ((r - mean) / (std + eps)).reshape(-1)", "return (r - mean).reshape(-1)"),
    ("clip_max", G, "per_token = -jnp.minimum(ratio * adv, clipped * adv)", "per_token = -jnp.maximum(ratio * adv, clipped * adv)"),
    ("clip_unclipped", G, "per_token = -jnp.minimum(ratio * adv, clipped * adv)", "per_token = -ratio * adv"),
    ("clip_lo_wide", G, "jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)", "jnp.clip(ratio, 1.0 - 2 * cfg.clip_eps, 1.0 + cfg.clip_eps)"),
    ("pg_sign", G, "per_token = -jnp.minimum(", "per_token = jnp.minimum("),
    ("kl_reverse", G, "  d = ref_logp - logp\n", "  d = logp - ref_logp\n"),
    ("kl_k2", G, "return jnp.exp(d) - d - 1.0", "return 0.5 * d * d"),
    ("kl_minus", G, "per_token = per_token + cfg.beta * kl", "per_token = per_token - cfg.beta * kl"),
    ("kl_x2", G, "per_token = per_token + cfg.beta * kl", "per_token = per_token + 2 * cfg.beta * kl"),
    ("tokmean_size", G, "return (per_token * m).sum() / jnp.maximum(m.sum(), 1.0)", "return (per_token * m).sum() / m.size"),
    ("seqmean_all_rows", G, "return (rows * has).sum() / jnp.maximum(has.sum(), 1.0)", "return rows.mean()"),
    ("seqmean_as_token", G, '"sequence_mean": sequence_mean}', '"sequence_mean": token_mean}'),
    ("clipfrac_2eps", G, "(jnp.abs(ratio - 1.0) > cfg.clip_eps)", "(jnp.abs(ratio - 1.0) > 2 * cfg.clip_eps)"),
    ("entropy_wrong", G, "entropy = logz - jnp.sum(", "entropy = jnp.sum("),
    ("logp_no_logz", G, "return gold - logz, entropy", "return gold, entropy"),
    ("mask_not_pad", G, "  mask = kind == KIND_GEN\n", "  mask = kind != KIND_PAD\n"),
    ("calib_abs", RW, "sq = (value - jnp.asarray(y, _F32)[:, None]) ** 2", "sq = jnp.abs(value - jnp.asarray(y, _F32)[:, None])"),
    ("calib_no_valid", RW, "return jnp.where(jnp.any(valid, -1), 1. - episode_mean(sq, valid), 0.).astype(_F32)",
     "return (1. - episode_mean(sq, valid)).astype(_F32)"),
    ("epmean_sum", RW, "jnp.sum(jnp.where(valid, x, 0.), -1) / jnp.maximum(n, 1)", "jnp.sum(jnp.where(valid, x, 0.), -1)"),
    ("combine_outcome_w0", RW, 'weights.get("outcome", 1.0)', 'weights.get("outcome", 0.0)'),
    ("brier_no_square", ST, "brier = (m * (s - yy) ** 2).sum() / n", "brier = (m * jnp.abs(s - yy)).sum() / n"),
    ("ece_no_abs", ST, "gap = jnp.abs((onehot * s[..., None]).sum((0, 1)) - (onehot * yy[..., None]).sum((0, 1)))",
     "gap = (onehot * s[..., None]).sum((0, 1)) - (onehot * yy[..., None]).sum((0, 1))"),
    ("failed_not_zeroed", ST, "r = jnp.where(failed, 0.0, r)", "r = r"),
    # equivalent while the config's adv_eps equals the function's default (both 1e-4)
    ("adv_eps_ignored", ST, "grpo.group_advantages(r, rlcfg.group_size, rlcfg.grpo.adv_eps)", "grpo.group_advantages(r, rlcfg.group_size)"),
    ("skill_inverted", EM, 'skill = 1.0 - cal["brier"] / base if base > 0 else None', 'skill = base / cal["brier"] - 1.0 if base > 0 else None'),
    ("skill_base_half", EM, "base = float(np.mean((y - y.mean()) ** 2))", "base = float(np.mean(y) / 2)"),
    ("brier_abs", DC, "return float(np.mean((p - y) ** 2))", "return float(np.mean(np.abs(p - y)))"),
    ("ece_unweighted", DC, "total += m.sum() * abs(p[m].mean() - y[m].mean())", "total += abs(p[m].mean() - y[m].mean())"),
    ("bin_one_wraps", DC, "return np.minimum((np.asarray(p, float) * n_bins).astype(int), n_bins - 1)",
     "return (np.asarray(p, float) * n_bins).astype(int) % n_bins"),
    ("ci_tail_wide", BS, "tail = 100 * (1 - level) / 2", "tail = 100 * (1 - level)"),
    ("paired_unpaired", BS, "va, vb = _resampled(a, idx, keys), _resampled(b, idx, keys)",
     "va, vb = _resampled(a, idx, keys), _resampled(b, idx[::-1], keys)"),
    ("separated_one_side", BS, "return diff is not None and (diff[1] > 0 or diff[2] < 0)", "return diff is not None and diff[1] > 0"),
]

# the LM stages: which tokens are trained on (FE-SFT: assistant tokens only), packing, the loss, the mask
TK, PK = "foresight_jax/data/pipeline_tokenize.py", "foresight_jax/data/pipeline_pack.py"
LS, LY = "foresight_jax/train/losses.py", "foresight_jax/models/layers.py"
MUTANTS += [
    ("sft_trains_prompt", TK, '"sft": {"prompt": 0,', '"sft": {"prompt": 1,'),
    ("sft_trains_obs", TK, '"sft": {"prompt": 0, "assistant": 1, "observation": 0', '"sft": {"prompt": 0, "assistant": 1, "observation": 1'),
    ("mid_trains_obs", TK, '"mid_training": {"prompt": 1, "assistant": 1, "observation": 0', '"mid_training": {"prompt": 1, "assistant": 1, "observation": 1'),
    ("eos_untrained", TK, "mask[pos] = table[segs[-1].role]", "mask[pos] = 0"),
    ("pack_cross_doc", PK, "has_next[:-1] = (seg[1:] == seg[:-1]) & (seg[:-1] != 0)", "has_next[:-1] = seg[:-1] != 0"),
    ("pack_mask_unshifted", PK, "nxt_m[:-1] = m[1:]", "nxt_m[:-1] = m[:-1]"),
    ("ce_unmasked", LS, "return ((logz - gold) * mask).sum() / n, n", "return (logz - gold).mean(), n"),
    ("ce_chunk_unmasked", LS, "return total + ((logz - gold) * mc).sum(), None", "return total + (logz - gold).sum(), None"),
    ("attn_no_segment", LY, "return causal & same & (k_seg[:, None, :] != 0)", "return causal & (k_seg[:, None, :] != 0)"),
    ("attn_strict_causal", LY, "causal = k_slot[None, None, :] <= q_slot[None, :, None]", "causal = k_slot[None, None, :] < q_slot[None, :, None]"),
]

# the device search tool's BM25 and the sampler's temperature and nucleus
DS, SC = "foresight_jax/rl/device_search.py", "foresight_jax/sampling/core.py"
MUTANTS += [
    ("bm25_idf", DS, "idf = np.log1p((n - df + 0.5) / (df + 0.5))", "idf = np.log1p(n / (df + 0.5))"),
    ("bm25_no_length_norm", DS, "norm = k1 * (1.0 - b + b * lens / avgdl)", "norm = k1 * np.ones_like(lens, float)"),
    ("bm25_raw_tf", DS, "vals = tfs * (k1 + 1.0) / (tfs + norm[rows])", "vals = tfs * 1.0"),
    ("top_p_drops_crossing_token", SC, "keep = mass_before < top_p[:, None]", "keep = jnp.cumsum(probs, axis=-1) < top_p[:, None]"),
    ("temperature_ignored", SC, "scaled = logits / jnp.where(temperature > 0, temperature, 1.0)[:, None]", "scaled = logits"),
]

_RL = ["tests/test_rl_grpo.py", "tests/test_rl_step.py", "tests/test_rl_arith.py"]
_EVALS = ["tests/test_evals_bootstrap.py", "tests/test_evals.py", "tests/test_evals_audit.py"]
TESTS = {G: _RL, RW: ["tests/test_rl_rewards.py"] + _RL, ST: _RL + ["tests/test_rl_train.py"],
         EM: _EVALS + ["tests/test_evals_qa.py", "tests/test_evals_model.py"],
         DC: _EVALS + ["tests/test_data_foresight.py", "tests/test_cli_data.py"], BS: _EVALS,
         TK: ["tests/test_data_pipeline.py", "tests/test_data_slips.py", "tests/test_train_stages.py", "tests/test_cli_data.py"],
         PK: ["tests/test_data_pipeline.py", "tests/test_train_stages.py"],
         LS: ["tests/test_kernels.py", "tests/test_train.py", "tests/test_model.py"],
         LY: ["tests/test_model.py", "tests/test_kernels.py", "tests/test_checkpoint_parity.py"],
         DS: ["tests/test_rl_device_search.py", "tests/test_retrieval_bm25.py"], SC: ["tests/test_sampling.py"]}


def run_mutant(checkout: str, mid: str, path: str, old: str, new: str, tests, pytest_args) -> dict:
  full = os.path.join(checkout, path)
  src = open(full).read()
  if src.count(old) != 1:
    raise SystemExit(f"{mid}: the text to mutate occurs {src.count(old)} times in {full} (want 1): update MUTANTS")
  tests = [t for t in (tests or TESTS[path]) if os.path.exists(os.path.join(checkout, t.split("::")[0]))]
  t0 = time.time()
  open(full, "w").write(src.replace(old, new))
  try:  # -x: the first failing test kills the mutant; PYTHONPATH: import the checkout, not the install
    p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *pytest_args, *tests],
                       cwd=checkout, env={**os.environ, "PYTHONPATH": checkout}, capture_output=True, text=True)
  finally:
    open(full, "w").write(src)
  lines = p.stdout.strip().splitlines()
  return {"id": mid, "file": path, "killed": p.returncode == 1, "rc": p.returncode, "seconds": round(time.time() - t0),
          "by": [ln.split()[1] for ln in lines if ln.startswith("FAILED ")][:1], "summary": lines[-1] if lines else ""}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("ids", nargs="*", help="mutant ids (default: all; --list shows them)")
  ap.add_argument("--checkout", help="a throwaway checkout of the repository to mutate (it is written to)")
  ap.add_argument("--list", action="store_true", help="print the mutants and exit")
  ap.add_argument("--tests", default="", help='test files or node ids to run instead of the file\'s own list, '
                  'space-separated in one argument ("tests/a.py tests/b.py::test_x")')
  ap.add_argument("--pytest-args", default="", help='extra pytest arguments, e.g. "-m slow"')
  ap.add_argument("--every", type=int, default=1, help="take every N-th selected mutant (split over checkouts)")
  ap.add_argument("--offset", type=int, default=0, help="starting at this one")
  a = ap.parse_args(argv)
  chosen = [m for m in MUTANTS if not a.ids or m[0] in a.ids][a.offset::a.every]
  unknown = set(a.ids) - {m[0] for m in MUTANTS}
  if unknown:
    ap.error(f"unknown mutant ids {sorted(unknown)}")
  if a.list:
    for mid, path, old, new in chosen:
      print(f"{mid:20s} {path}: {old.strip()!r} -> {new.strip()!r}")
    return 0
  if not a.checkout or not os.path.isdir(os.path.join(a.checkout, "foresight_jax")):
    ap.error(f"--checkout {a.checkout!r} is not a checkout of this repository (see --help)")
  if os.path.samefile(a.checkout, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))):
    ap.error("--checkout must name a throwaway checkout, not this one (see --help)")
  killed = 0
  for mid, path, old, new in chosen:
    rec = run_mutant(a.checkout, mid, path, old, new, a.tests.split(), a.pytest_args.split())
    killed += rec["killed"]
    print(json.dumps(rec), flush=True)
  print(f"{killed} of {len(chosen)} mutants killed", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
