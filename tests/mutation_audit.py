"""Mutation audit: does the suite catch a wrong formula? Each mutant below changes one line of the
RL loss, the rewards (in-graph and their host oracles), the rollout's tool loop, the optimizer and
the update's bookkeeping, resume and data order, the block grammar, the evaluation figures (a sign,
a clip bound, an estimator, an average, a bin edge, the pairing of a bootstrap), the LM stages
(which tokens are trained on, packing, the loss, the attention mask), the model's hand-written
kernels, the sampler, the retrievers, the host-tool path, checkpoint import and export, the
synthetic world, the evaluation's record of a device rollout, the tokenizer, the answer checks and
the judge, the receipts, training checkpoints, the RL task tables, the arithmetic peer's reward,
the calculator, the trajectory schema's input checks, the Search-R1 server, the eval suites'
figures, FE-SFT's chat data, the decoder and its attention variants, param declarations, HF
layouts, the planning-theater detector, the metric sinks, the real-data adapters and packaged
sources, the data policies, the arithmetic GRPO step, a checkpoint's chat template, the FLOP count,
the mesh rules, the stage plan, the trajectory sources, the eval runner, sentencepiece training,
the command lines, the HTML report, the TFDS builders, the train state, the config loader, the eval
config or the synthetic token source; the audit applies it to a checkout, runs the tests that cover
that file, and reports the mutant killed (a test failed) or survived. Not a test itself (pytest
does not collect this file); BUILD_NOTES.md, "Mutation audit", holds the last results.

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

# the rewards' grammar and parsers (both sides), the rollout's tool loop, the optimizer, the
# update's bookkeeping, the data's success estimates and answer scoring
RH, RO, OP = "foresight_jax/evals/rewards_host.py", "foresight_jax/rl/rollout.py", "foresight_jax/train/optim.py"
TS, DF, SR = "foresight_jax/train/step.py", "foresight_jax/data/foresight.py", "foresight_jax/data/scoring.py"
MUTANTS += [
    ("fmt_answer_anywhere", RW, "ok &= ((act != OPEN[\"answer\"]) | (t == tr.n_turns[:, None] - 1)) & (t < tr.n_turns[:, None])",
     "ok &= (t < tr.n_turns[:, None])"),
    ("fmt_empty_rollout", RW, "    ok &= _tany(tr, text & (cnt == roll_at))", "    ok &= ok"),
    ("fmt_success_unchecked", RW, "    ok &= succ_valid", "    ok &= ok"),
    ("fmt_stray_text", RW, "ok &= ~_tany(tr, text & ~jnp.isin(cnt, jnp.array(text_at)))", "ok &= ok"),
    ("succ_two_dots", RW, "(_tsum(tr, ndot) <= 1)", "(_tsum(tr, ndot) <= 2)"),
    ("succ_above_one", RW, "((big == 0) | ((big == 1) & (nz == 0)))", "(big <= 1)"),
    ("outcome_no_cap", RW, "answered = (ac < s) & (ac - ao - 1 <= spec.max_answer_tokens)", "answered = (ac < s)"),
    ("outcome_any_turn", RW, "last = tr.gen & (tr.turn == tr.n_turns[:, None] - 1)", "last = tr.gen"),
    ("ground_unclipped", RW, "jnp.minimum(want, have) / jnp.maximum(want, 1)", "have / jnp.maximum(want, 1)"),
    ("ground_every_turn", RW, "return _b(prec), _b(oo < s)", "return _b(prec), _b(oo >= 0)"),
    ("ground_reads_action", RW, "(start >= arrow_end[:, None])", "(start >= 0)"),
    ("host_calib_abs", RH, "sum((s - y) ** 2 for s in estimates)", "sum(abs(s - y) for s in estimates)"),
    ("host_ground_unclipped", RH, "sum(min(c, have[k]) for k, c in Counter(keys).items())",
     "sum(c for k, c in Counter(keys).items() if have[k])"),
    ("host_success_above_one", RH, "return float(s) if Decimal(s) <= 1 else None", "return float(s)"),
    ("host_answer_not_last", RH, 'if p.action is not None and p.action[0] == "answer" and not is_last:', "if False:"),
    ("stopwords_content", RH, "return not is_markup and bool(key) and not key.isdigit() and key not in STOPWORDS",
     "return not is_markup and bool(key) and not key.isdigit()"),
    ("rollout_obs_as_gen", RO, "kind = _put(kind, jnp.where(is_obs, KIND_OBS, KIND_PAD), off)",
     "kind = _put(kind, jnp.where(is_obs, KIND_GEN, KIND_PAD), off)"),
    ("rollout_answer_continues", RO, "alive = alive & (glen > 0) & ~is_answer", "alive = alive & (glen > 0)"),
    ("rollout_blank_query", RO, "return mask, jnp.any(mask & ~tools.blank[gen], axis=1)", "return mask, jnp.any(mask, axis=1)"),
    ("rollout_query_has_tag", RO, "mask = (j > open_pos[:, None])", "mask = (j >= open_pos[:, None])"),
    ("decay_everything", OP, "return not any(s in name for s in NO_DECAY_KEYS)", "return True"),
    ("clip_always", OP, "scale = jnp.where(g_norm < clip, 1.0, clip / g_norm)", "scale = clip / g_norm"),
    ("adam_no_bias_corr1", OP, "bc1, bc2 = 1 - b1 ** count_inc, 1 - b2 ** count_inc",
     "bc1, bc2 = 1.0 + 0.0 * count_inc, 1 - b2 ** count_inc"),
    ("decay_sign", OP, "u = u + wd * p", "u = u - wd * p"),
    ("warmup_ignored", OP, "warmup = min(ocfg.warmup_steps, ocfg.total_steps)", "warmup = 0"),
    ("end_lr_zero", OP, "end_value=peak * ocfg.end_lr_ratio", "end_value=0.0"),
    ("accum_unweighted", TS, "    w = _token_weight(mb, aux)\n", "    w = jnp.float32(1.0)\n"),
    ("lr_metric_ignores_skips", TS, "schedule(state.step - state.skipped)", "schedule(state.step)"),
    ("guard_ignores_grads", TS, "finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)", "finite = jnp.isfinite(loss)"),
    ("rng_reused", TS, "rng=jax.random.key_data(rng), skipped=skipped)", "rng=state.rng, skipped=skipped)"),
    ("rl_ref_is_policy", ST, "jax.lax.stop_gradient(state.ref_params), ro.tokens", "jax.lax.stop_gradient(state.params), ro.tokens"),
    ("mc_no_smoothing", DF, 'return (sum(scores) + 1.0) / (len(scores) + 2.0), "mc"', 'return sum(scores) / len(scores), "mc"'),
    ("prior_ignores_outcome", DF, 'return (y * (t + 1) + b * m) / (t + 1 + m), "prior"', 'return b, "prior"'),
    ("em_keeps_articles", SR, 'return " ".join(_ARTICLES.sub(" ", s).split())', 'return " ".join(s.split())'),
    ("boxed_first", SR, 'start = text.rfind("\\\\boxed{")', 'start = text.find("\\\\boxed{")'),
    ("int_keeps_commas", SR, '.strip("$").replace(",", "")', '.strip("$")'),
]

# the model's hand-written kernels (RoPE, the SwiGLU and attention backward passes, Llama-3 RoPE
# scaling) and the sampler's positions across decode and extend
MUTANTS += [
    ("rope_sign", LY, "x2f * c + x1f * s", "x2f * c - x1f * s"),
    ("llama3_smooth", LY, "smooth = (old_ctx / wavelen - low) / (high - low)", "smooth = (old_ctx / wavelen - low) / high"),
    ("swiglu_bwd_dgate", LY, "(1.0 + g * (1.0 - sg))", "(1.0 + g * sg)"),
    ("attn_bwd_no_delta", LY, "ds = (p * (dp - delta) * scale)", "ds = (p * dp * scale)"),
    ("attn_unscaled", LY, 'jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale',
     'jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32)'),
    ("decode_pos_all_rows", SC, "positions=st.positions + live, slot=st.slot + 1", "positions=st.positions + 1, slot=st.slot + 1"),
    ("extend_pos_shift", SC, "pos = state.positions[:, None] + j\n", "pos = state.positions[:, None] + j + 1\n"),
    ("extend_pos_after", SC, "positions=state.positions + feed_len, slot", "positions=state.positions + e + 1, slot"),
    ("extend_reads_wrong_pos", SC, "jnp.maximum(feed_len - 1, 0)[:, None, None]", "jnp.maximum(feed_len - 2, 0)[:, None, None]"),
]

# the audit report's calibration figures (issue 11): AUROC, equal-mass ECE, confidence updates
EV = "foresight_jax/evals/calibration.py"
MUTANTS += [
    ("auroc_ties_low_rank", EV, "ranks[order[i:j + 1]] = (i + j) / 2 + 1", "ranks[order[i:j + 1]] = i + 1"),
    ("auroc_u_offset", EV, "(ranks[pos].sum() - n_pos * (n_pos + 1) / 2)", "(ranks[pos].sum() - n_pos * n_pos / 2)"),
    ("ece_mass_splits_ties", EV, "while 0 < c < n and p[c] == p[c - 1]:", "while False:"),
    ("ece_mass_unweighted", EV, "total += (hi - lo) * abs(p[lo:hi].mean() - y[lo:hi].mean())",
     "total += abs(p[lo:hi].mean() - y[lo:hi].mean()) * n / len(cuts + [n])"),
    ("update_move_sign", EV, "abs(prev - outcome) - abs(cur - outcome)", "abs(cur - outcome) - abs(prev - outcome)"),
]

# resume and data order: the LM loop's data state, the RL prompt schedule, host shards, and the
# host agent's stop strings
LP, RT = "foresight_jax/train/loop.py", "foresight_jax/rl/train.py"
PL, EA = "foresight_jax/data/pipeline.py", "foresight_jax/evals/agent.py"
MUTANTS += [
    ("resume_restarts_data", LP, "      data_iter.set_state(data_state)\n", "      pass\n"),
    ("rl_resume_restarts_prompts", RT, 'self.k = int(s["k"])', "self.k = 0"),
    ("rl_same_order_every_epoch", RT, "default_rng([self.seed, epoch])", "default_rng([self.seed, 0])"),
    ("shards_overlap", PL, "ds = ds[index::count]", "ds = ds[0::count]"),
    ("stop_cut_before", EA, "return text[:j + len(s)]", "return text[:j]"),
    ("stop_latest", EA, "j, s = min(hits)", "j, s = max(hits)"),
]

# the evaluation table's host figures (evals/metrics.py): grounding precision and F1, episode
# format, the estimates paired with outcomes, pass@k
MUTANTS += [
    ("prec_unclipped", EM, "sum((Counter(p) & Counter(normalize_answer(ref).split())).values()) / len(p)",
     "sum(1 for w in p if w in normalize_answer(ref).split()) / len(p)"),
    ("prec_counts_stopwords", EM, "if w not in STOPWORDS and not w.isdigit()]", "if not w.isdigit()]"),
    ("f1_is_precision", EM, "return 2 * prec * rec / (prec + rec)", "return prec"),
    ("episode_ok_no_final_answer", EM, "require_final_answer=True, strict_decimals", "require_final_answer=False, strict_decimals"),
    ("first_estimate_only", EM, "est = [(s, u.outcome) for u in units for s in u.estimates]",
     "est = [(s, u.outcome) for u in units for s in u.estimates[:1]]"),
    ("pass_at_k_off_by_one", EM, "np.arange(n - c + 1, n + 1, dtype=np.float64)", "np.arange(n - c, n + 1, dtype=np.float64)"),
]

# the block grammar the evaluation's format figure applies (data/render.py: parse_turn, check_format)
RD = "foresight_jax/data/render.py"
MUTANTS += [
    ("grammar_text_in_foresight", RD, 'if between.strip() and (not stack or stack[-1][0] == "foresight"):',
     "if between.strip() and not stack:"),
    ("grammar_info_allowed", RD, 'if name == "information":', "if False:"),
    ("grammar_empty_action", RD, 'if name != "answer" and not body.strip():', "if False:"),
    ("grammar_success_range", RD, "if v is None or not 0.0 <= v <= 1.0:", "if v is None:"),
    ("grammar_two_decimals_off", RD, 'if strict_decimals and not re.fullmatch(r"[01]\.\d\d", s):', "if False:"),
    ("grammar_numbering_off", RD, "if k != len(steps) + 1:", "if False:"),
    ("grammar_horizon_plus_one", RD, "if len(steps) > horizon:", "if len(steps) > horizon + 1:"),
    ("grammar_token_cap_doubled", RD, "if n_tok > max_tokens:", "if n_tok > 2 * max_tokens:"),
    ("grammar_block_after_action", RD, 'if actions and top.index("foresight") > actions[0]:', "if False:"),
    ("grammar_early_answer", RD, 'if p.action and p.action[0] == "answer" and i < len(turns) - 1:', "if False:"),
]

# the demo's verdicts: its three bars, and the difference lines of its report
DM = "foresight_jax/demo.py"
MUTANTS += [
    ("bar_format_loose", DM, '(m.get("format_turn") or 0) >= FORMAT_BAR', '(m.get("format_turn") or 0) >= FORMAT_BAR - 0.1'),
    ("bar_accuracy_zero_passes", DM, '(m.get("accuracy") or 0) > 0', '(m.get("accuracy") or 0) >= 0'),
    ("bar_skill_negative_passes", DM, '(m.get("brier_skill") or 0) > 0]', '(m.get("brier_skill") or -1) > -1]'),
]
# group 11: cuDNN's packed layout of segment ids (the GPU kernel itself runs only on the device)
KN = "foresight_jax/models/kernels.py"
MUTANTS += [
    ("runs_fit_strict", KN, "jnp.all(count <= m)", "jnp.all(count < m)"),
    ("runs_start_after_padding_only", KN, "start = live & (segment_ids != prev)", "start = live & (prev == 0)"),
    ("runs_count_padding", KN, "(run, live.astype(jnp.int32))", "(run, jnp.ones_like(run))"),
    ("runs_overflow_offset_kept", KN, "  starts = starts.at[:, m].set(-1)\n", ""),
    ("runs_unused_zero", KN, "lengths = jnp.where(jnp.arange(m) < count[:, None], lengths, -1)", "lengths = lengths"),
]
# group 12: the in-graph readers of the reward tables (answer normalisation, the boxed integer,
# UTF-8, gold matching) and the tables themselves
VT = "foresight_jax/rl/vocab_tables.py"
MUTANTS += [
    ("vt_squad_keeps_punct", VT, "keep = (jnp.arange(x.shape[-1]) < n[:, None]) & ((info & CP_PUNCT) == 0)",
     "keep = jnp.arange(x.shape[-1]) < n[:, None]"),
    ("vt_squad_no_lower", VT, 'y, n = compact(cp_lookup(tables, x, "cp_lower"), keep)', "y, n = compact(x, keep)"),
    ("vt_article_an_half", VT, "art = (is_a | is_an | shift_right(is_an, 1, False) | is_the", "art = (is_a | is_an | is_the"),
    ("vt_boxed_first", VT, "  last = row_last(box)\n", "  last = jnp.where(jnp.any(box, -1), row_first(box), -1)\n"),
    ("vt_boxed_no_depth", VT, 'end = row_first(after & (x == ord("}")) & (depth == 0))', 'end = row_first(after & (x == ord("}")))'),
    ("vt_boxed_keeps_commas", VT, 'keep = inner & (x != ord(",")) & (x != ord(" "))', 'keep = inner & (x != ord(" "))'),
    ("vt_boxed_leading_zeros", VT, "emit = body & (idx >= nzp)", "emit = body"),
    ("vt_boxed_minus_zero", VT, 'pre = (jnp.any(sign & (x == ord("-")), axis=-1) & ~zero)', 'pre = jnp.any(sign & (x == ord("-")), axis=-1)'),
    ("vt_utf8_overlong", VT, "need = jnp.where(between(s, 0xC2, 0xDF)", "need = jnp.where(between(s, 0xC0, 0xDF)"),
    ("vt_utf8_surrogates", VT, "hi2 = jnp.where(s == 0xED, 0x9F,", "hi2 = jnp.where(s == 0xED, 0xBF,"),
    ("vt_utf8_fffd_per_byte", VT, "span = 1 + got  #", "span = jnp.where(valid, 1 + got, 1)  #"),
    ("vt_gold_prefix", VT, "return jnp.any(same & (gl == length[:, None]), axis=-1)", "return jnp.any(same & (gl >= 0), axis=-1)"),
    ("vt_canon_per_id", VT, "canon[i] = first.setdefault(key, i)", "canon[i] = i"),
    ("vt_special_content", VT, "if host.is_content(key, i in tags or i in special):", "if host.is_content(key, i in tags):"),
    ("vt_squeeze_braces", VT, 'c for c in string.punctuation.encode() if c not in b"{}"))', "c for c in string.punctuation.encode()))"),
    ("vt_lead_ws_off", VT, "    if nonws[0] > 0:\n", "    if nonws[0] > 1:\n"),
    ("vt_math_gold_squad", VT, "norm = [canonical_int(a) for a in answers] if m else", "norm = [normalize_answer(a) for a in answers] if m else"),
]
# group 13: the built-in chat renderers and the template detection (transformers is the oracle)
CH = "foresight_jax/tokenizer/chat.py"
MUTANTS += [
    ("chatml_default_system_always", CH, 'and msgs[0][0] != "system":\n    parts.append(f"<|im_start|>system',
     ':\n    parts.append(f"<|im_start|>system'),
    ("llama3_no_strip", CH, '{content.strip()}<|eot_id|>"', '{content}<|eot_id|>"'),
    ("youtu_assistant_no_eos", CH, 'parts.append(f"<|Assistant|>{content}<|end_of_text|>")', 'parts.append(f"<|Assistant|>{content}")'),
    ("plain_no_generation_prompt", CH, 'parts.append("<|assistant|>\\n")', 'parts.append("")'),
    ("chatml_gen_prompt_role", CH, 'parts.append("<|im_start|>assistant\\n")', 'parts.append("<|im_start|>assistant")'),
    ("detect_system_escaped_newline", CH, r"system(?:\\n|\n)(", r"system(?:\n)("),
    ("detect_plain_as_none", CH, '  if "<|user|>" in jinja and "<|end|>" in jinja and "<|assistant|>" in jinja:\n    return "plain", None\n', ""),
]
# group 14: retrieval: the host BM25 (the Search-R1 server's and the evaluation's), the dense
# index's two-stage top-k, the encoder's pooling
BM, DN, EN = "foresight_jax/retrieval/bm25.py", "foresight_jax/retrieval/dense.py", "foresight_jax/retrieval/encoder.py"
MUTANTS += [
    ("bm25h_classic_idf", BM, "idf = np.log1p((n - df + 0.5) / (df + 0.5))", "idf = np.log((n - df + 0.5) / (df + 0.5))"),
    ("bm25h_qtf_once", BM, "index.weights[s:e] * np.float32(c)", "index.weights[s:e] * np.float32(1)"),
    ("bm25h_title_once", BM, "tokenize(title, stop) * title_weight", "tokenize(title, stop)"),
    ("bm25h_ties_high_index", BM, "order = np.lexsort((cand, -scores[cand]))[:k]", "order = np.lexsort((-cand, -scores[cand]))[:k]"),
    ("bm25h_candidates_strict", BM, "cand = np.flatnonzero(scores >= kth)", "cand = np.flatnonzero(scores > kth)"),
    ("bm25h_case_sensitive", BM, "toks = _TOKEN.findall(text.lower())", "toks = _TOKEN.findall(text)"),
    ("bm25h_avgdl_first_doc", BM, "avgdl = max(float(lens.mean()), 1e-9)", "avgdl = max(float(lens[0]), 1e-9)"),
    ("dense_padding_can_win", DN, "s = jnp.where(rows[None] < n_valid, s, -jnp.inf)", "s = s + 0.0 * rows[None]"),
    ("dense_local_ids", DN, "return v, (i + row0).astype(jnp.int32)", "return v, i.astype(jnp.int32)"),
    ("dense_candidate_ids", DN, "return v2, jnp.take_along_axis(i, j, axis=1)", "return v2, j"),
    ("dense_shard_offset", DN, "jax.lax.axis_index(axes) * per", "0 * per"),
    ("enc_mean_counts_padding", EN, "out = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)", "out = hidden.mean(1)"),
    ("enc_no_normalize", EN, "  if cfg.normalize:  # torch", "  if False:  # torch"),
]
# group 15: the host-tool path (tools that cannot run on the device)
HT = "foresight_jax/rl/host_tools.py"
MUTANTS += [
    ("ht_arg_first_open", HT, "arg = gen[opens[-1] + 1:-1] if opens else []", "arg = gen[opens[0] + 1:-1] if opens else []"),
    ("ht_blank_call_accepted", HT, "      if any(not blank[t] for t in arg):\n", "      if True:\n"),
    ("ht_cut_drops_close", HT, "ids = ids[:obs_w - len(suf)] + list(suf)", "ids = ids[:obs_w]"),
    ("ht_failed_row_goes_on", HT, "failed[r], alive[r] = True, False", "failed[r] = True"),
    ("ht_no_affixes", HT, "ids = list(pre) + [int(x) for x in got] + list(suf)", "ids = [int(x) for x in got]"),
    ("ht_timeout_ignored", HT, "got = fut.result(timeout=max(0.0, deadline - time.monotonic()))", "got = fut.result()"),
    ("ht_timeout_per_row", HT, "got = fut.result(timeout=max(0.0, deadline - time.monotonic()))", "got = fut.result(timeout=timeout_s)"),
    # equivalent in outcome: the deadline scales with the waves of workers, so fewer threads change
    # only how long a turn with many calls waits (a speed property, not a test's)
    ("ht_eight_workers", HT, "workers = max(1, min(b, MAX_WORKERS))", "workers = 8"),
    ("ht_searches_uncounted", HT, "        searches[r] += 1\n", ""),
    ("ht_invalid_uncounted", HT, "          n_invalid[r] += 1\n", ""),
    ("ht_obs_as_gen", HT, "kinds[r] += [KIND_OBS] * k", "kinds[r] += [KIND_GEN] * k"),
    ("ht_key_reused", HT, "key, k_turn = jax.random.split(key)", "k_turn = key"),
    ("ht_tags_open_only", HT, "if len(o) == 1 and len(c) == 1:", "if len(o) == 1:"),
    ("ht_answer_goes_on", HT, "answered[r], alive[r] = True, False", "answered[r] = True"),
]
# group 16: checkpoints: GGUF's rope row permutation and column blocks, the HF config mapping
GG, HC = "foresight_jax/models/checkpoint/gguf_io.py", "foresight_jax/models/checkpoint/hf.py"
MUTANTS += [
    ("gguf_no_unpermute", GG, "      w = _unpermute(w, (b - a) // hd)[r0 - a:r1 - a]\n", "      w = w[r0 - a:r1 - a]\n"),
    ("gguf_k_heads_as_q", GG, 'hd = t.data.shape[0] // (self.n_head if ".attn_q." in name else self.n_kv_head)',
     "hd = t.data.shape[0] // self.n_head"),
    ("gguf_unpermute_pairs", GG, "w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1)", "w.reshape(n_head, 2, dim, *w.shape[1:])"),
    ("gguf_col_block_ignored", GG, "      w = w[:, ranges[1][0]:ranges[1][1]]\n", "      pass\n"),
    ("hf_kv_heads_default_one", HC, 'num_kv_heads=d.get("num_key_value_heads") or H', 'num_kv_heads=d.get("num_key_value_heads") or 1'),
    ("hf_tie_default_true", HC, 'tie_embeddings=bool(d.get("tie_word_embeddings", _TIE_DEFAULT[family]))',
     'tie_embeddings=bool(d.get("tie_word_embeddings", True))'),
    ("hf_export_first_eos", HC, "eos_token_id=None if not eos else eos[0] if len(eos) == 1 else eos",
     "eos_token_id=None if not eos else eos[0]"),
    ("hf_export_no_llama3", HC, "  if cfg.rope_llama3_scaling is not None:\n    fa, lo", "  if False:\n    fa, lo"),
    ("hf_head_dim_ignored", HC, 'head_dim=d.get("head_dim") or D // H', "head_dim=D // H"),
]
# group 17: the synthetic world: its search, reading objects back out of passages, question chains
WD = "foresight_jax/data/world.py"
MUTANTS += [
    ("world_title_once", WD, "tf = Counter(_tokens(title) * 2 + _tokens(text))", "tf = Counter(_tokens(title) + _tokens(text))"),
    ("world_ties_later_doc", WD, "ranked = sorted(scores, key=lambda i: (-scores[i], i))[:k]",
     "ranked = sorted(scores, key=lambda i: (-scores[i], -i))[:k]"),
    ("world_no_fill", WD, "      if i not in scores:\n        ranked.append(i)\n", "      pass\n"),
    ("world_query_tf", WD, "for t in dict.fromkeys(_tokens(query)):", "for t in _tokens(query):"),
    ("world_extract_any_subject", WD, 'if s == subject or s.endswith(" " + subject):', "if True:"),
    ("world_extract_unordered", WD, "return [o for _, o in sorted(found)]", "return [o for _, o in found]"),
    ("world_chain_revisits", WD, "options = [r for r in KIND_RELATIONS[e.kind] if e.rel.get(r) not in path]",
     "options = [r for r in KIND_RELATIONS[e.kind]]"),
    ("world_who_for_things", WD, 'wh = "Who is" if RELATIONS[rels[-1]].target == "person" else "What is"', 'wh = "Who is"'),
]
# group 18: the sampler's stop bookkeeping and token choice (core), and the host's stop sequences
HS = "foresight_jax/sampling/host.py"
MUTANTS += [
    ("samp_stop_before_eos", SC, "reason = jnp.where(is_eos, STOP_EOS, jnp.where(is_stop, STOP_SEQUENCE,",
     "reason = jnp.where(is_stop, STOP_SEQUENCE, jnp.where(is_eos, STOP_EOS,"),
    ("samp_len_one_more", SC, "is_len = (i + 1) >= limit", "is_len = i >= limit"),
    ("samp_row_limit_ignored", SC, "return jnp.minimum(jnp.asarray(stop.max_new_tokens_per_row, jnp.int32), max_new_tokens)",
     "return jnp.full_like(jnp.asarray(stop.max_new_tokens_per_row, jnp.int32), max_new_tokens)"),
    ("samp_done_rows_emit", SC, "tok = jnp.where(active, tok, state.pad_id)  #", "tok = tok  #"),
    ("samp_done_rows_logprob", SC, "jnp.where(active, logprob, 0.0)[:, None], (0, i))", "logprob[:, None], (0, i))"),
    ("samp_top_token_not_kept", SC, "return keep.at[:, 0].set(True)", "return keep"),
    ("samp_top_k_ignores_top_p", SC, "vals = jnp.where(_top_p_keep_sorted(vals, top_p), vals, -jnp.inf)", "vals = vals"),
    ("samp_greedy_rows_sampled", SC, "return jnp.where(temperature > 0, sampled, greedy)", "return sampled"),
    ("samp_argmax_last", SC, "return jnp.min(jnp.where(x == m, jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape[-1]), axis=-1)",
     "return jnp.max(jnp.where(x == m, jnp.arange(x.shape[-1], dtype=jnp.int32), -1), axis=-1)"),
    ("stops_left_aligned", HS, "arr[r, j, s_len - len(v):] = v", "arr[r, j, :len(v)] = v"),
    ("stops_no_merge_prefix", HS, "tail = tuple(int(t) for t in ids[n:])", "tail = tuple(int(t) for t in ids[len(base):])"),
    ("stops_token_ids_dropped", HS, "      if (int(t),) not in seqs:\n        seqs.append((int(t),))\n", "      pass\n"),
    ("stops_first_row_for_all", HS, "for s in (stop_strings_per_row[r] if", "for s in (stop_strings_per_row[0] if"),
]
# group 19: the evaluation's record of a device rollout (the demo's table is read from it)
DA = "foresight_jax/evals/device_agent.py"
MUTANTS += [
    ("da_obs_wrapper_kept", DA, "    return text[len(pre):len(text) - len(suf)]\n", "    return text\n"),
    ("da_unanswered_last_is_answer", DA, "last = bool(answered[b]) and t == int(n_turns[b]) - 1", "last = t == int(n_turns[b]) - 1"),
    ("da_eos_as_stop", DA, '    return "eos"\n', '    return "stop"\n'),
    ("da_length_never", DA, 'return "length" if len(gen) >= budget else "stop"', 'return "stop"'),
    ("da_invalid_never", DA, "invalid = obs is not None and obs == invalid_message(task.domain)", "invalid = False"),
    ("da_answer_unstripped", DA, '("answer", (answer_body(text) or "").strip())', '("answer", answer_body(text) or "")'),
    ("da_success_dropped", DA, "parsed.success, action, invalid, obs, spec))", "None, action, invalid, obs, spec))"),
    ("da_eos_in_text", DA, "text = tokenizer.decode(gen[:-1] if gen and gen[-1] in eos_ids else gen)", "text = tokenizer.decode(gen)"),
]
# groups 20-24 (nineteenth session): tokenizer, answer checks and judge, receipts, training checkpoints,
# the RL task tables and the arithmetic peer's reward, the calculator
TZ, GV = "foresight_jax/tokenizer/core.py", "foresight_jax/tokenizer/gguf_vocab.py"
MUTANTS += [
    ("tz_eot_not_eos", TZ, "    eos += [i for i in (backend.token_to_id(t) for t in END_OF_TURN_TOKENS) if i is not None]\n", ""),
    ("tz_pad_default_zero", TZ, "self._pad = pad_id if pad_id is not None else (self._eos[0] if self._eos else 0)",
     "self._pad = pad_id if pad_id is not None else 0"),
    ("tz_sp_skip_ignored", TZ, "        if not skip_special:\n", "        if True:\n"),
    ("tz_bos_always", TZ, "return [self._bos] + ids if add_bos and self._bos is not None else ids",
     "return [self._bos] + ids if self._bos is not None else ids"),
    ("tz_chat_double_bos", TZ, "add_bos = self.default_add_bos and not self.chat_template_writes_bos(text)",
     "add_bos = self.default_add_bos"),
    ("tz_vocab_no_added", TZ, "return max(self.tk.get_vocab_size(with_added_tokens=True), max(added, default=-1) + 1)",
     "return self.tk.get_vocab_size(with_added_tokens=False)"),
    ("tz_save_first_eos_only", TZ, '"foresight_eos_tokens": [tok(i) for i in self._eos],',
     '"foresight_eos_tokens": [tok(i) for i in self._eos[:1]],'),
    ("tz_added_special_swapped", TZ, "(self.tk.add_special_tokens if special else self.tk.add_tokens)(added)",
     "(self.tk.add_tokens if special else self.tk.add_special_tokens)(added)"),
    ("tz_piece_any_id", TZ, "return i if self.sp.id_to_piece(i) == token else None", "return i"),
    ("gv_repeat_first_id", GV, "    vocab[spelled] = i  #", "    vocab.setdefault(spelled, i)  #"),
    ("gv_no_respell", GV, 'spelled = tok if set(tok) <= alphabet else "".join(spelling[b] for b in tok.encode("utf-8"))',
     "spelled = tok"),
    # both halves: add_special_tokens makes any token special, add_tokens keeps the token's own flag
    ("gv_control_plain", GV, "control = [AddedToken(t, special=True, normalized=False)\n"
     "             for t, ty in zip(tokens, types) if ty == _CONTROL and set(t) <= alphabet]\n"
     "  if control:\n    tk.add_special_tokens(control)\n",
     "control = [AddedToken(t, special=False, normalized=False)\n"
     "             for t, ty in zip(tokens, types) if ty == _CONTROL and set(t) <= alphabet]\n"
     "  if control:\n    tk.add_tokens(control)\n"),
    ("gv_qwen_digits3", GV, r'''\p{L}+|\p{N}"''', r'''\p{L}+|\p{N}{1,3}"'''),
    ("gv_mislabel_kept", GV, "if ty == _CONTROL and set(t) <= alphabet]", "if ty == _CONTROL]"),
]
QA, JD, RC = "foresight_jax/evals/qa.py", "foresight_jax/evals/judge.py", "foresight_jax/evals/receipts.py"
MUTANTS += [
    ("qa_all_any", QA, 'return {"em": float(frac == 1.0), "f1": frac}', 'return {"em": float(frac > 0), "f1": frac}'),
    ("qa_f1_first_gold", QA, "return max((token_f1(pred, g) for g in golds), default=0.0)",
     "return token_f1(pred, golds[0]) if golds else 0.0"),
    ("qa_free_text_tags_kept", QA, 'return f1(_TAG_RE.sub(" ", text), golds)', "return f1(text, golds)"),
    ("qa_mv_all_golds", QA, "return any(verify(g, p, timeout_seconds=timeout) for g in parsed)",
     "return all(verify(g, p, timeout_seconds=timeout) for g in parsed)"),
    ("qa_math_em_is_verify", QA, 'return {"em": boxed, "f1": None, "boxed_match": boxed,',
     'return {"em": float(bool(math_verify_match(pred, golds))), "f1": None, "boxed_match": boxed,'),
    ("jd_period_kept", JD, 'word = word[:-1] if word.endswith(".") else word', "word = word"),
    ("jd_prefix_verdict", JD, 'if word.upper() in ("CORRECT", "INCORRECT"):', 'if word.upper().startswith(("CORRECT", "INCORRECT")):'),
    ("jd_key_not_masked", JD, 'reason = reason.replace(key, "***")', "reason = reason"),
    ("jd_no_auth_header", JD, '**({"Authorization": f"Bearer {key}"} if key else {})', "**{}"),
    ("jd_no_shots", JD, "for q, golds, answer, verdict in SHOTS:", "for q, golds, answer, verdict in SHOTS[:0]:"),
    ("jd_first_gold_only", JD, 'golds=" | ".join(item.golds)', "golds=item.golds[0]"),
    ("rc_obs_chars_cut", RC, '"observation_chars": None if obs is None else len(obs),',
     '"observation_chars": None if obs is None else len(obs[:max_obs_chars]),'),
    ("rc_sha_cut", RC, '"observation_sha256": None if obs is None else sha256(obs),',
     '"observation_sha256": None if obs is None else sha256(obs[:max_obs_chars]),'),
    ("rc_steps_unsorted", RC, 'steps = sorted(pending.pop(key, []), key=lambda s: s["step"])', "steps = pending.pop(key, [])"),
    ("rc_count_unchecked", RC, 'if len(steps) != r["n_steps"]:', "if False:"),
    ("rc_orphans_ignored", RC, "  if pending:\n", "  if False:\n"),
    ("rc_run_filter_ignored", RC, 'if run is not None and r.get("run", "") != run:', "if False:"),
    ("rc_append_ignored", RC, 'open(path, "a" if append else "w", encoding="utf-8")', 'open(path, "w", encoding="utf-8")'),
    ("rc_rollout_last", RC, "m = _ROLLOUT_RE.search(text)", "m = ([*_ROLLOUT_RE.finditer(text)] or [None])[-1]"),
]
CK = "foresight_jax/train/checkpoint.py"
MUTANTS += [
    ("ck_params_not_first", CK, 'for name in sorted(want, key=lambda n: (not n.startswith("params/"), n)):', "for name in sorted(want):"),
    ("ck_unexpected_ignored", CK, "    if unexpected:\n", "    if False:\n"),
    ("ck_dtype_ignored", CK, "return {k: (tuple(v.shape), str(v.dtype))", 'return {k: (tuple(v.shape), "")'),
    ("ck_config_tuples", CK, "  current = json.loads(json.dumps(current))  #", "  current = current  #"),
    ("ck_data_state_dropped", CK, 'return type(abstract).from_dict(out["state"]), data.get("iterator"),',
     'return type(abstract).from_dict(out["state"]), None,'),
    ("ck_no_reload", CK, "    self.manager.reload()\n    return self.manager.latest_step()", "    return self.manager.latest_step()"),
]
TE, AT, MT = "foresight_jax/rl/tasks.py", "foresight_jax/rl/arith_task.py", "foresight_jax/data/math_tasks.py"
MUTANTS += [
    ("te_one_world", TE, 'groups = np.asarray([by_seed[t.meta["world_seed"]] for t in tasks], np.int32)',
     "groups = np.zeros(len(tasks), np.int32)"),
    ("te_groups_tiled", TE, "idx = np.repeat(np.asarray(indices, np.int64), group_size)", "idx = np.tile(np.asarray(indices, np.int64), group_size)"),
    ("te_right_pad", TE, "    arr[i, width - len(r):] = r\n", "    arr[i, :len(r)] = r\n"),
    ("te_invalid_no_affix", TE, "invalid = tokenizer.encode(pre) + tokenizer.encode(invalid_message(domain)) + tokenizer.encode(suf)",
     "invalid = tokenizer.encode(invalid_message(domain))"),
    ("te_stop_no_eos", TE, 'stop = [_single(tokenizer, f"</{a}>") for a in ACTION_TAGS] + list(tokenizer.eos_ids)',
     'stop = [_single(tokenizer, f"</{a}>") for a in ACTION_TAGS]'),
    ("te_blank_unstripped", TE, "blank = np.array([not tokenizer.decode([i]).strip()", "blank = np.array([not tokenizer.decode([i])"),
    ("at_unk_empty", AT, "        texts.append(sp.decode([i]))\n", '        texts.append("")\n'),
    ("at_space_dropped", AT, '.replace("\\u2581", " ")', '.replace("\\u2581", "")'),
    ("at_stream_gaps", AT, "  stream = jnp.pad(stream, ((0, 0), (0, lg)), constant_values=NONE)",
     "  stream = jnp.pad(flat, ((0, 0), (0, lg)), constant_values=NONE)"),
    ("at_gold_len_ignored", AT, "hit &= (k >= gold_len[:, None]) | (", "hit &= (k < 0) | ("),
    ("at_valid_ignored", AT, "chars = jnp.where(valid[..., None], table.chars[tokens], NONE)", "chars = table.chars[tokens]"),
    ("at_prompt_right_pad", AT, "    out[i, width - len(ids):] = ids\n", "    out[i, :len(ids)] = ids\n"),
    ("mt_caret_kept", MT, 'ast.parse(expr.replace("^", "**"), mode="eval")', 'ast.parse(expr, mode="eval")'),
    ("mt_usub_ignored", MT, "return -v if isinstance(node.op, ast.USub) else v", "return v"),
    ("mt_negative_power", MT, "(b < 0 or b > 200 or abs(a) > 10 ** 6)", "(b > 200 or abs(a) > 10 ** 6)"),
    ("mt_no_limit", MT, "  if abs(out) > _LIMIT:\n", "  if False:\n"),
    # the evaluation reads a repeated rollout / success the way the rewards do: the first
    ("rd_last_rollout", RD, "    if first:\n      out.rollout = steps\n", "    out.rollout = steps\n"),
    ("rd_last_success", RD, "      if first:\n        out.success = v\n", "      out.success = v\n"),
]
# groups 25-26 (nineteenth session): the trajectory schema's input checks, the Search-R1 server
SH = "foresight_jax/data/schema.py"
MUTANTS += [
    ("sh_bool_as_number", SH, "if isinstance(v, bool) and bool not in types or not isinstance(v, types):",
     "if not isinstance(v, types):"),
    ("sh_empty_answers_ok", SH, "    if not answers:\n", "    if False:\n"),
    ("sh_answer_type_ok", SH, "      if not isinstance(a, str):\n", "      if False:\n"),
    ("sh_answer_not_last_ok", SH, "      if i != len(steps) - 1:\n", "      if False:\n"),
    ("sh_obs_after_answer_ok", SH, '      if step["observation"] is not None:\n', "      if False:\n"),
    ("sh_surrogates_ok", SH, "    if not _utf8_ok(v):\n", "    if False:\n"),
    ("sh_bom_kept", SH, 'if lineno == 1 and text.startswith("\\ufeff"):', "if False:"),
    ("sh_truncation_unmarked", SH, 'meta={**(rec.meta or {}), "truncated_from": n})', "meta=rec.meta)"),
    ("sh_empty_query_ok", SH, 'c.text(action, key, f"{p}.action.{key}", nonempty=tool != "answer")',
     'c.text(action, key, f"{p}.action.{key}", nonempty=False)'),
    ("sh_success_range_ok", SH, "if s is not None and not (math.isfinite(s) and 0.0 <= s <= 1.0):", "if False:"),
    ("sh_problem_line_zero", SH, "problems = validate_record(obj, str(path), lineno)", "problems = validate_record(obj, str(path), 0)"),
    ("sh_byte_column_0based", SH, 'f"{e.start + 1}"))', 'f"{e.start}"))'),
    ("sh_score_range_ok", SH, '      c.add("outcome.score", "range",', '      (lambda *a: None)("outcome.score", "range",'),
]
SV, RF = "foresight_jax/retrieval/server.py", "foresight_jax/retrieval/format.py"
MUTANTS += [
    ("sv_topk_bool_ok", SV, "if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:",
     "if not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:"),
    ("sv_default_topk_1", SV, "    topk = DEFAULT_TOPK\n", "    topk = 1\n"),
    ("sv_scores_by_default", SV, 'scores = req.get("return_scores", False)', 'scores = req.get("return_scores", True)'),
    ("sv_no_query_cap", SV, "  if len(queries) > MAX_QUERIES:\n", "  if False:\n"),
    ("sv_row_ids_not_doc_ids", SV, 'doc = {"id": doc_ids[i] if doc_ids is not None else str(i),', 'doc = {"id": str(i),'),
    ("sv_trailing_slash_404", SV, 'if self.path.rstrip("/") != "/retrieve":', 'if self.path != "/retrieve":'),
    ("rf_contents_unquoted", RF, "  return f'\"{title}\"\\n{text}'", "  return f'{title}\\n{text}'"),
    ("rf_quotes_kept", RF, "    title = title[1:-1]\n", "    pass\n"),
]
# group 27 (nineteenth session): the eval command's suites and figures
SU = "foresight_jax/evals/suites.py"
MUTANTS += [
    ("su_sample_unordered", SU, 'keep = sorted(random.Random(f"eval:{seed}").sample(range(len(tasks)), n))',
     'keep = random.Random(f"eval:{seed}").sample(range(len(tasks)), n)'),
    ("su_multihop_any_evidence", SU, 'all(found(t) for t in q.meta["evidence_titles"])', 'any(found(t) for t in q.meta["evidence_titles"])'),
    ("su_subquestions_repeated", SU, 'if not found(s["evidence_title"]) or not golds or s["question"] in seen:',
     'if not found(s["evidence_title"]) or not golds:'),
    ("su_list_answers_any", SU, '"answer_match": "any" if scalar else "all",', '"answer_match": "any",'),
    ("su_pass_at_1", SU, "M.pass_at_k(len(v), int(sum(v)), k)", "M.pass_at_k(len(v), int(sum(v)), 1)"),
    ("su_f1_none_as_zero", SU, '"f1": _mean([c["f1"] for c in checks if c["f1"] is not None]),',
     '"f1": _mean([c["f1"] or 0.0 for c in checks]),'),
    ("su_judge_agreement_flipped", SU, 'float(c["judge"]["verdict"] == (c["em"] == 1.0))', 'float(c["judge"]["verdict"] != (c["em"] == 1.0))'),
    ("su_unanswered_judged", SU, "asked = [i for i, ep in enumerate(episodes) if ep.answer is not None]",
     "asked = list(range(len(episodes)))"),
    ("su_free_text_math", SU, 'return None if domain == "math" else max(', "return max("),
    ("su_recorded_judge_dropped", SU, '"judge": e.get("judge")} for steps, e in grouped]', '"judge": None} for steps, e in grouped]'),
    ("su_corpus_contents_ignored", SU, 'docs.append(from_contents(obj["contents"]) if "contents" in obj else (obj["title"], obj["text"]))',
     'docs.append((obj["title"], obj["text"]))'),
    ("su_tool_k_fixed", SU, "return format_results(search(arg, k))", "return format_results(search(arg, 3))"),
]
# group 28 (nineteenth session): FE-SFT's chat data (which tokens of a conversation are trained)
SD = "foresight_jax/train/stages_data.py"
MUTANTS += [
    ("sd_youtu_tool_role", SD, 'obs_role = "user" if template == "youtu" else "tool"', 'obs_role = "tool"'),
    ("sd_variant_always_full", SD, 'v = variant or ("none" if not fs else "full" if fs[0].success is not None else "state")',
     'v = variant or "full"'),
    ("sd_slip_trained", SD, '{"role": "assistant", "content": slips[i], "train": False}', '{"role": "assistant", "content": slips[i], "train": True}'),
    ("sd_obs_unwrapped", SD, 'msgs.append({"role": obs_role, "content": f"<information>{step.observation}</information>"})',
     'msgs.append({"role": obs_role, "content": step.observation})'),
    ("sd_header_trained", SD, 'Segment("prompt", piece[:j])', "Segment(body_role, piece[:j])"),
    ("sd_tail_trained", SD, 'Segment("prompt", tail)]', "Segment(body_role, tail)]"),
    ("sd_first_user_as_obs", SD, 'segs.append(Segment("prompt" if i == 0 else "observation", piece))', 'segs.append(Segment("observation", piece))'),
    ("sd_double_bos", SD, "bos = tok.bos_id if tok.default_add_bos and not tok.chat_template_writes_bos(text) else None",
     "bos = tok.bos_id if tok.default_add_bos else None"),
    ("sd_bos_trained", SD, "ids, mask = ([bos], [0]) if bos is not None else ([], [])", "ids, mask = ([bos], [1]) if bos is not None else ([], [])"),
]

# group 29 (twentieth session): the decoder, attention variants, param declarations, HF layouts
TR, AN = "foresight_jax/models/transformer.py", "foresight_jax/models/attention.py"
PM, LO = "foresight_jax/models/params.py", "foresight_jax/models/checkpoint/layout.py"
MUTANTS += [
    ("tr_mlp_norm_is_attn_norm", TR, 'h = layers.rms_norm(x, lp["mlp_norm"], cfg.rms_norm_eps)', 'h = layers.rms_norm(x, lp["attn_norm"], cfg.rms_norm_eps)'),
    ("tr_no_final_norm", TR, 'return layers.rms_norm(x, params["final_norm"], cfg.rms_norm_eps), cache', "return x, cache"),
    ("tr_cache_segment_at_0", TR, "segment_ids.astype(jnp.int32), (0, cache_index))", "segment_ids.astype(jnp.int32), (0, 0))"),
    ("tr_unstack_first_layer", TR, "tuple(jax.tree.map(lambda a, i=i: a[i], stacked)", "tuple(jax.tree.map(lambda a, i=i: a[0], stacked)"),
    ("tr_fused_kv_swapped", TR, 'for n in ("q", "k", "v")], axis=1)', 'for n in ("q", "v", "k")], axis=1)'),
    ("tr_fused_bias_swapped", TR, 'for n in ("q", "k", "v")])', 'for n in ("q", "v", "k")])'),
    ("tr_fused_gate_up_swapped", TR, 'jnp.concatenate([mlp.pop("gate"), mlp.pop("up")], axis=1)', 'jnp.concatenate([mlp.pop("up"), mlp.pop("gate")], axis=1)'),
    ("tr_logits_bwd_no_dw", TR, 'jnp.einsum(f"{hs},{out}->{ws}", h, g)', "jnp.zeros_like(w)"),
    ("an_k_norm_is_q_norm", AN, 'k = layers.rms_norm(k, p["k_norm"], cfg.rms_norm_eps)', 'k = layers.rms_norm(k, p["q_norm"], cfg.rms_norm_eps)'),
    ("an_v_bias_dropped", AN, 'v + p["v_bias"].astype(dtype)', "v"),
    ("an_mla_cached_no_rope", AN, '+ jnp.einsum("bthd,bsd->bhts", q_rot, r_all, preferred_element_type=jnp.float32)) * scale',
     ") * scale"),
    ("an_mla_qa_norm_eps", AN, "qa = layers.rms_norm(qa_raw, p[\"q_a_norm\"], MLA_NORM_EPS)", "qa = layers.rms_norm(qa_raw, p[\"q_a_norm\"], 1e-2)"),
    ("an_mla_uv_from_uk", AN, 'o = jnp.einsum("bthr,rhv->bthv", o_lat, kv_b[..., dn:])', 'o = jnp.einsum("bthr,rhv->bthv", o_lat, kv_b[..., :dn])'),
    ("pm_branch_std_unscaled", PM, "return cfg.initializer_range / (2 * cfg.num_layers) ** 0.5", "return cfg.initializer_range"),
    ("pm_same_key_every_tensor", PM, "zlib.crc32(path_str(p).encode()) & 0x7FFFFFFF", "0"),
    ("pm_untruncated", PM, "jax.random.truncated_normal(key, -2.0, 2.0, spec.shape, jnp.float32)", "jax.random.normal(key, spec.shape, jnp.float32)"),
    ("lo_always_contiguous", LO, "if all(s == (0, d) for s, d in zip(ss[1:], dims[1:])):", "if True:"),
    ("lo_chunk_one_layer", LO, "for j, layer in enumerate(range(*layers)):", "for j, layer in enumerate(range(layers[0], layers[0] + 1)):"),
]

# group 30 (twentieth session): the planning-theater detector, the metric sinks, the real-data adapters
TH, ME, AD = "foresight_jax/evals/theater.py", "foresight_jax/train/metrics.py", "foresight_jax/data/adapters.py"
MUTANTS += [
    ("th_confidence_strict", TH, "if est is not None and est >= th.confidence and", "if est is not None and est > th.confidence and"),
    ("th_grounding_inclusive", TH, "and measurable and g < th.grounding:", "and measurable and g <= th.grounding:"),
    ("th_unmeasurable_flagged", TH, "and measurable and g < th.grounding:", "and g < th.grounding:"),
    ("th_call_not_said", TH, 'said = set(_predicted_words(" ".join([first.action, act.get("tool") or "", act.get("arg") or ""])))',
     'said = set(_predicted_words(first.action))'),
    ("th_digits_not_predictions", TH, "return [w for w in normalize_answer(text).split() if w not in STOPWORDS]",
     "return [w for w in normalize_answer(text).split() if w not in STOPWORDS and not w.isdigit()]"),
    ("th_turn_counted_per_flag", TH, 'n_turns += len({f["step"] for f in turn_flags})', "n_turns += len(turn_flags)"),
    ("th_any_rate_episode_only", TH, "n_any += bool(turn_flags) or ep_flag is not None", "n_any += ep_flag is not None"),
    ("th_episode_max_estimate", TH, "or min(est) < th.episode_confidence:", "or max(est) < th.episode_confidence:"),
    ("th_answer_turns_checked", TH, 'beyond = None if s["observation"] is None else words_beyond_action(s, ep.spec)',
     "beyond = words_beyond_action(s, ep.spec)"),
    ("me_truncate_drops_last", ME, 'if isinstance(rec, dict) and rec.get("step", math.inf) <= last_step:',
     'if isinstance(rec, dict) and rec.get("step", math.inf) < last_step:'),
    ("me_no_purge", ME, "purge_step=start_step + 1)", "purge_step=None)"),
    ("me_measured_peak_times_devices", ME, "  return measure_peak_flops()\n", "  return measure_peak_flops() * n_devices\n"),
    ("me_configured_per_mesh", ME, "return float(configured_per_device) * n_devices", "return float(configured_per_device)"),
    ("me_no_flush", ME, "      self._fh.flush()", "      pass"),
    ("me_bool_as_float", ME, 'return int(a) if a.dtype.kind in "iub" else float(a)', 'return int(a) if a.dtype.kind in "iu" else float(a)'),
    ("ad_bare_gold_rejected", AD, "        golds = [golds]  # some dumps", "        pass  # some dumps"),
    ("ad_bool_id", AD, "if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip():",
     "if isinstance(v, (str, int)) and str(v).strip():"),
    ("ad_golds_unstripped", AD, "answers=[g.strip() for g in golds]))", "answers=list(golds)))"),
    ("ad_bool_answer", AD, "if isinstance(ans, int) and not isinstance(ans, bool):", "if isinstance(ans, int):"),
    ("ad_negative_as_type", AD, 'ans.strip().lstrip("+-").isdigit()', "ans.strip().isdigit()"),
    ("ad_data_key_ignored", AD, 'items = obj.get("data") if isinstance(obj, dict) and isinstance(obj.get("data"), list) \\\n        else [obj]',
     "items = [obj]"),
    ("ad_array_bom", AD, 'text = raw.decode("utf-8-sig")', 'text = raw.decode("utf-8")'),
    ("ad_question_key_only_problem", AD, 'pkey = "problem" if "problem" in o else "question"', 'pkey = "problem"'),
]

# group 31 (twentieth session): the packaged real data (Wikipedia leads, FanOutQA, CHAMP) and the data policies
RS, PO = "foresight_jax/data/real_sources.py", "foresight_jax/data/policies.py"
MUTANTS += [
    ("rs_bool_answer_as_text", RS, '    return ["yes" if ans else "no"]', '    return [str(ans)]'),
    ("rs_dict_keys_dropped", RS, "out += answer_strings(k) + answer_strings(v)", "out += answer_strings(v)"),
    ("rs_golds_not_deduplicated", RS, 'golds = _dedup(answer_strings(q.get("answer")))', 'golds = answer_strings(q.get("answer"))'),
    ("rs_subquestion_depth_flat", RS, '_flatten_subquestions(s.get("decomposition") or [], s["id"], depth + 1, out)',
     '_flatten_subquestions(s.get("decomposition") or [], s["id"], depth, out)'),
    ("rs_list_answer_any", RS, '"answer_match": "any" if kind == "scalar" else "all",', '"answer_match": "any",'),
    ("rs_title_key_case", RS, 'return " ".join(title.replace("_", " ").casefold().split())', 'return " ".join(title.replace("_", " ").split())'),
    ("rs_coverage_all_as_any", RS, "all(title_key(t) in idx for t in ts) for task in tasks)", "any(title_key(t) in idx for t in ts) for task in tasks)"),
    ("rs_champ_strict_default", RS, "hi: int | None = 999, lenient: bool = True", "hi: int | None = 999, lenient: bool = False"),
    ("rs_champ_hi_exclusive", RS, "(hi is not None and value > hi)", "(hi is not None and value >= hi)"),
    ("rs_filters_counted_rejected", RS, "rejected=sum(v for k, v in rep.skipped.items() if k not in FILTER_REASONS))",
     "rejected=sum(rep.skipped.values()))"),
    ("rs_empty_extract_kept", RS, "    if not text:\n      continue\n    docs.append(", "    docs.append("),
    ("rs_eval_set_untagged", RS, 't.meta = {**(t.meta or {}), "eval_set": src.name}', "t.meta = t.meta"),
    ("rs_dashed_names_unknown", RS, 'key = name.strip().lower().replace("-", "_")', "key = name.strip().lower()"),
    ("po_terminal_branch_zero", PO, "return [traj.score] * n  # terminal", "return [0.0] * n  # terminal"),
    ("po_branch_before_step", PO, "prefix = traj.steps[: t + 1]", "prefix = traj.steps[: t]"),
    ("po_branches_one_seed", PO, 'random.Random(f"{seed}:{traj.task.id}:{t}:{b}")', 'random.Random(f"{seed}:{traj.task.id}:{t}")'),
    ("po_one_retry_fewer", PO, 'state["retries"] > self.max_retries', 'state["retries"] >= self.max_retries'),
    ("po_recorded_noise_ignored", PO, "  if isinstance(n, dict):\n", "  if False:\n"),
    ("po_no_forced_answer", PO, "force_answer=len(steps) == max_steps - 1)", "force_answer=False)"),
    ("po_stop_early_at_start", PO, "hop >= 1 and rng.random() < nz.stop_early", "rng.random() < nz.stop_early"),
    ("po_wrong_answer_may_be_right", PO, 'titles = [x for x in doc_titles(last_obs or "") if x != ent]', 'titles = doc_titles(last_obs or "")'),
]

# group 32 (twentieth session): the arithmetic GRPO step that is benchmarked against Tunix
AR = "foresight_jax/rl/arith.py"
MUTANTS += [
    ("ar_eos_counted", AR, "return (ro.lengths - (ro.stop_reason == sampling.STOP_EOS)).sum()", "return ro.lengths.sum()"),
    ("ar_logprob_offset", AR, "logits = transformer.lm_head(cfg, params, h[:, p - 1:-1])", "logits = transformer.lm_head(cfg, params, h[:, p:])"),
    # (every row samples at least one token, so counting all rows instead would be equivalent)
    ("ar_seqmean_by_tokens", AR, "return (gen.sum(axis=1) > 0).sum().astype(jnp.float32)", "return gen.sum().astype(jnp.float32)"),
    ("ar_chunk_unweighted", AR, "w = _agg_weight(gcfg.aggregation, k == KIND_GEN) / total", "w = 1.0 / acfg.update_chunks"),
    ("ar_ref_is_policy", AR, "ref_logp = completion_logprobs(cfg, jax.lax.stop_gradient(ref_params), r) if gcfg.beta else None",
     "ref_logp = completion_logprobs(cfg, jax.lax.stop_gradient(params), r) if gcfg.beta else None"),
    ("ar_kl_metric_unweighted", AR, 'return g, loss, {"kl": aux["kl"] * n_tok,', 'return g, loss, {"kl": aux["kl"],'),
    ("ar_fixed_rollout_key", AR, "ro = rollout(cfg, acfg, state.params, batch, k_roll)", "ro = rollout(cfg, acfg, state.params, batch, jax.random.key(0))"),
    ("ar_one_group", AR, "adv = grpo.group_advantages(r, acfg.group_size)", "adv = grpo.group_advantages(r, r.shape[0])"),
    ("ar_rows_tiled", AR, "prompts = jnp.repeat(jnp.asarray(batch.prompts, jnp.int32), g, axis=0)",
     "prompts = jnp.tile(jnp.asarray(batch.prompts, jnp.int32), (g, 1))"),
    ("ar_temperature_one", AR, "sp = sampling.SamplingParams(temperature=acfg.temperature, top_p=1.0)", "sp = sampling.SamplingParams(temperature=1.0, top_p=1.0)"),
]

# group 33 (twentieth session): a checkpoint's chat template, the FLOP count behind every MFU, the mesh rules
JJ, MC, SHD = "foresight_jax/tokenizer/jinja.py", "foresight_jax/models/config.py", "foresight_jax/sharding.py"
MUTANTS += [
    ("jj_no_trim_blocks", JJ, "trim_blocks=True, lstrip_blocks=True, extensions=", "trim_blocks=False, lstrip_blocks=True, extensions="),
    ("jj_tojson_ascii", JJ, "def tojson(x, ensure_ascii=False,", "def tojson(x, ensure_ascii=True,"),
    ("jj_tojson_unsorted", JJ, "separators=separators, sort_keys=sort_keys)", "separators=separators, sort_keys=False)"),
    ("jj_none_fields_kept", JJ, "msg = {k: _plain(v) for k, v in m.items() if v is not None}", "msg = {k: _plain(v) for k, v in m.items()}"),
    ("jj_reasoning_not_copied", JJ, 'msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}', "msg = msg"),
    ("jj_specials_win", JJ, "context = _plain({**(special_tokens or {}), **variables})", "context = _plain({**variables, **(special_tokens or {})})"),
    ("jj_underscore_allowed", JJ, 'if isinstance(name, str) and name.startswith("_"):', "if False:"),
    ("jj_generation_dropped", JJ, "      return caller()\n", '      return ""\n'),
    ("mc_lm_head_uncounted", MC, "  n += cfg.vocab_size * cfg.hidden_size  # the LM head", "  n += 0  # the LM head"),
    ("mc_attention_not_causal", MC, "attn = 2 * seq_len * att_dim * cfg.num_layers / 2", "attn = 2 * seq_len * att_dim * cfg.num_layers"),
    ("mc_mla_v_as_qk", MC, "att_dim = cfg.num_heads * (cfg.qk_head_dim + cfg.v_head_dim)", "att_dim = cfg.num_heads * 2 * cfg.qk_head_dim"),
    ("mc_count_includes_head", MC, 'if not include_embeddings and path[0] in ("embed", "lm_head"):', 'if not include_embeddings and path[0] == "embed":'),
    ("shd_indivisible_kept", SHD, "out.append(ax if dim % size == 0 else None)", "out.append(ax)"),
    ("shd_batch_data_only", SHD, '("batch", ("data", "fsdp")),', '("batch", "data"),'),
    ("shd_vocab_replicated", SHD, '("vocab", "tensor"),', '("vocab", None),'),
    ("shd_two_inferred_sizes", SHD, "if sizes.count(-1) > 1:", "if sizes.count(-1) > 2:"),
    ("shd_every_host_first_rows", SHD, "return slice(i * per, (i + 1) * per)", "return slice(0, per)"),
]

# group 34 (twentieth session): the stage config's value checks (each error names its key)
CF = "foresight_jax/train/stages_config.py"
MUTANTS += [
    ("cf_forecast_noise_unchecked", CF, '_need(0.0 <= d.forecast_noise <= 1.0, "data.forecast_noise"', '_need(True, "data.forecast_noise"'),
    ("cf_slip_rate_unchecked", CF, '_need(0.0 <= d.slip_rate <= 1.0, "data.slip_rate"', '_need(True, "data.slip_rate"'),
    ("cf_eval_fraction_one_ok", CF, "_need(0.0 <= d.eval_fraction < 1.0,", "_need(0.0 <= d.eval_fraction <= 1.0,"),
    ("cf_seq_len_one_ok", CF, '_need(d.seq_len >= 2, "data.seq_len"', '_need(d.seq_len >= 1, "data.seq_len"'),
    ("cf_group_of_one_ok", CF, '_need(r.group_size >= 2, "rl.group_size"', '_need(r.group_size >= 1, "rl.group_size"'),
    ("cf_too_few_tasks_ok", CF, '_need(r.tasks >= r.prompts_per_step, "rl.tasks"', '_need(True, "rl.tasks"'),
    ("cf_hops_unbounded", CF, "all(isinstance(h, int) and 1 <= h <= 6 for h in r.hops)", "all(isinstance(h, int) and 1 <= h for h in r.hops)"),
    ("cf_temperature_zero_ok", CF, '_need(r.temperature > 0, "rl.temperature"', '_need(r.temperature >= 0, "rl.temperature"'),
    ("cf_search_url_with_device_tool", CF, '_need(not r.search_url or r.tool == "host", "rl.search_url"', '_need(True, "rl.search_url"'),
    ("cf_aggregation_unchecked", CF, '_need(r.aggregation in LOSS_AGGREGATIONS, "rl.aggregation"', '_need(True, "rl.aggregation"'),
    ("cf_small_vocab_ok", CF, "_need(d.vocab_size >= 300,", "_need(d.vocab_size >= 0,"),
    ("cf_tokenizer_path_unchecked", CF, '_need(os.path.exists(d.tokenizer), "data.tokenizer"', '_need(True, "data.tokenizer"'),
    ("cf_init_from_any_file", CF, '_need(path.endswith((".gguf", ".safetensors")), "model.init_from"', '_need(True, "model.init_from"'),
]

# group 35 (twentieth session): the comparison table (which way is better, the best marks, what is unmeasured)
RP = "foresight_jax/evals/report.py"
MUTANTS += [
    ("rp_brier_higher_better", RP, 'Column("brier", "Brier", "lower"),', 'Column("brier", "Brier", "higher"),'),
    ("rp_skill_lower_better", RP, 'Column("brier_skill", "skill", "higher", ".3f"),', 'Column("brier_skill", "skill", "lower", ".3f"),'),
    ("rp_best_always_max", RP, 'target = (min if c.better == "lower" else max)(v for v, _ in vals)', "target = max(v for v, _ in vals)"),
    ("rp_tie_first_only", RP, "best[c.key] = [n for v, n in vals if v == target]", "best[c.key] = [next(n for v, n in vals if v == target)]"),
    ("rp_nan_printed", RP, "if v is None or (isinstance(v, float) and math.isnan(v)):", "if v is None:"),
    ("rp_single_run_marked", RP, "best = best_runs(rows, columns) if mark_best and len(rows) > 1 else {}", "best = best_runs(rows, columns) if mark_best else {}"),
    ("rp_verdict_flipped", RP, 'verdict = "separated" if separated(d) else', 'verdict = "separated" if not separated(d) else'),
    ("rp_nan_in_json", RP, "  if isinstance(o, float) and not math.isfinite(o):\n    return None\n", ""),
    ("rp_counts_marked", RP, "if c.better and r[c.key] is not None and not math.isnan(r[c.key])]", "if r[c.key] is not None and not math.isnan(r[c.key])]"),
]

# group 36 (twentieth session): synthetic trajectory generation, and what a tokenizer directory's files say
GE, LD = "foresight_jax/data/generate.py", "foresight_jax/tokenizer/loaders.py"
MUTANTS += [
    ("ge_shards_restart", GE, 'rng = random.Random(f"gen:{cfg.seed}:{i}")', 'rng = random.Random(f"gen:{cfg.seed}:{i - start}")'),
    ("ge_worlds_ignore_seed", GE, "return [World(cfg.seed * 1000 + w, cfg.world) for w in range(cfg.n_worlds)]",
     "return [World(w, cfg.world) for w in range(cfg.n_worlds)]"),
    ("ge_math_fraction_flipped", GE, "if rng.random() < cfg.math_fraction:", "if rng.random() >= cfg.math_fraction:"),
    ("ge_policies_unweighted", GE, "policy = rng.choices(names, weights)[0]", "policy = rng.choice(names)"),
    ("ge_search_fn_dropped", GE, "yield rollout_search(world, task, policy, seed=cfg.seed, search_fn=search_fn)",
     "yield rollout_search(world, task, policy, seed=cfg.seed)"),
    ("ld_null_config_overrides_map", LD, "cfg.update({k: v for k, v in _read_json(tc).items() if v is not None or k not in cfg})",
     "cfg.update(_read_json(tc))"),
    ("ld_json_template_overrides", LD, 'elif os.path.isfile(json_file) and not cfg.get("chat_template"):', "elif os.path.isfile(json_file):"),
    ("ld_first_named_template", LD, 'value = named.get("default", next(iter(named.values()), None))', "value = next(iter(named.values()), None)"),
    ("ld_generation_eos_dropped", LD, 'eos_ids=[eos] + extra_eos + cfg.get("_generation_eos_ids", []),', "eos_ids=[eos] + extra_eos,"),
    ("ld_content_dict_ignored", LD, '  if isinstance(value, dict):\n    value = value.get("content")\n', ""),
    ("ld_unknown_special_ignored", LD, '      raise ValueError(f"{source!r}: {name} {tok!r} from the tokenizer config is not in the vocabulary")',
     "      return None"),
    ("ld_first_of_two_ggufs", LD, "if len(ggufs) == 1:", "if ggufs:"),
    ("ld_eos_guessed_over_config", LD, 'if eos is None and "eos_token" not in cfg:', "if eos is None:"),
]

SG, PS, RN = "foresight_jax/train/stages.py", "foresight_jax/data/pipeline_sources.py", "foresight_jax/evals/runner.py"
MUTANTS += [
    ("sg_grad_accum_dropped", SG, "grad_accum_steps=t.grad_accum)", "grad_accum_steps=1)"),
    ("sg_round_down", SG, "return -(-n // max(m, 1)) * max(m, 1)", "return (n // max(m, 1)) * max(m, 1)"),
    ("sg_vocab_grows_late", SG, "if tok_vocab > mcfg.vocab_size:", "if tok_vocab > 2 * mcfg.vocab_size:"),
    ("sg_specials_not_set", SG, "mcfg = mcfg.replace(bos_token_id=tok.bos_id, eos_token_ids=tuple(tok.eos_ids))", "pass"),
    ("sg_mesh_two_fill_axes", SG, "if sizes.count(-1) > 1 or any(", "if any("),
    ("sg_mesh_fill_all", SG, "sizes[sizes.index(-1)] = n // known", "sizes[sizes.index(-1)] = n"),
    ("sg_mesh_partial_multiproc", SG, "elif known != n and jax.process_count() > 1:", "elif False:"),
    ("sg_batch_ignores_accum", SG, "split = mesh[0] * mesh[1] * k", "split = mesh[0] * mesh[1]"),
    ("sg_batch_processes_unchecked", SG, "  if b % p:\n", "  if False:\n"),
    ("sg_mem_scores_always", SG, "scores = 4 * H / tensor if fused else 4 * 2 * H / tensor * T", "scores = 4 * 2 * H / tensor * T"),
    ("sg_mem_remat_full_ignored", SG, 'if remat == "full":', 'if remat == "full_":'),
    ("sg_mem_rows_no_accum", SG, "rows = cfg.data.batch_size / (data * fsdp) / cfg.train.grad_accum",
     "rows = cfg.data.batch_size / (data * fsdp)"),
    ("sg_mem_logits_uncapped", SG, "tensor * 4, losses.LOGITS_CHUNK_BYTES)}", 'tensor * 4, float("inf"))}'),
    ("sg_mem_one_moment", SG, '"optimizer": 2 * n * pb / shard', '"optimizer": n * pb / shard'),
    ("sg_mem_no_accum_buffer", SG, "* (2 if cfg.train.grad_accum > 1 else 1)", "* 1"),
    ("sg_limit_config_ignored", SG, "if cfg.train.memory_limit_gb > 0:", "if False:"),
    ("sg_limit_all_host_devices", SG,
     "used = min(jax.local_device_count(), max(1, (mesh_devices or jax.device_count()) // jax.process_count()))",
     "used = jax.local_device_count()"),
    ("sg_no_headroom", SG, 'if est["total"] > HEADROOM * limit:', 'if est["total"] > limit:'),
    ("sg_resize_mean_of_all", SG, "rows[jnp.asarray(ids)].mean(0) if ids else rows.mean(0) for ids in pieces",
     "rows.mean(0) for ids in pieces"),
    ("sg_resize_head_skipped", SG, 'if "lm_head" in params:', "if False:"),
    ("sg_resize_brackets_kept", SG, 'if tok is not None else "").strip("<>")', 'if tok is not None else "")'),
    ("sg_resume_reloads_init", SG, "if p.init_path and p.resume_step is None:", "if p.init_path:"),
    ("sg_export_without_tokenizer", SG, "    tok.save(result.export_dir)", "    pass"),
    ("ps_field_not_unwrapped", PS, "    record = record[field]\n", "    pass\n"),
    ("ps_numpy_scalar_kept", PS, "    record = record.item()\n", "    pass\n"),
    ("ps_jsonl_list_as_items", PS, 'str(s).endswith(".jsonl") for s in source', 'str(s).endswith(".json") for s in source'),
    ("ps_rejected_last_file", PS, "return sum(r.rejected for r in self.reports)", "return self.reports[-1].rejected"),
    ("ps_random_access_unchecked", PS, 'if not (hasattr(records, "__len__") and hasattr(records, "__getitem__")):', "if False:"),
    ("rn_temperature_single_sample", RN, "temperature = cfg.temperature if (cfg.samples or cfg.k) > 1 else 0.0",
     "temperature = cfg.temperature"),
    ("rn_device_refusal_ignored", RN, 'if cfg.tool_path == "device" and reason and has_search:', "if False:"),
    ("rn_device_error_swallowed", RN, '      if cfg.tool_path == "device":\n        raise', "      if False:\n        raise"),
    ("rn_host_episodes_reordered", RN, "    for i, ep in zip(host, eps):", "    for i, ep in zip(host[::-1], eps):"),
    ("rn_figures_file_empty", RN, '      f.write(line + "\\n")', "      pass"),
    ("rn_run_label_basename", RN, "run_name = os.path.normpath(model_path)", "run_name = os.path.basename(os.path.normpath(model_path))"),
]

TT, CT = "foresight_jax/tokenizer/train.py", "foresight_jax/train/cli_train.py"
MUTANTS += [
    ("tt_bad_model_type_accepted", TT, 'if model_type not in ("bpe", "unigram"):', "if False:"),
    ("tt_one_symbol_as_chars", TT, "    extra_symbols = [extra_symbols]\n", "    pass\n"),
    ("tt_chat_markers_dropped", TT, "symbols = list(dict.fromkeys([*extra_symbols, *PLAIN_CHAT_TOKENS]))",
     "symbols = list(dict.fromkeys(extra_symbols))"),
    ("tt_whitespace_symbol_ok", TT, "bad = [s for s in symbols if not s or any(c.isspace() for c in s)]",
     "bad = [s for s in symbols if not s]"),
    ("tt_non_string_skipped", TT, 'raise TypeError(f"texts must be strings, got {type(t).__name__}")', "continue"),
    ("tt_digits_not_split", TT, "split_digits=True, allow", "split_digits=False, allow"),
    ("tt_no_byte_fallback", TT, "byte_fallback=True, normal", "byte_fallback=False, normal"),
    ("tt_dummy_prefix", TT, "add_dummy_prefix=False", "add_dummy_prefix=True"),
    ("tt_whitespace_collapsed", TT, "remove_extra_whitespaces=False", "remove_extra_whitespaces=True"),
    ("tt_failure_unexplained", TT, 'raise ValueError(f"sentencepiece training failed: {e}") from e', "raise"),
    ("tt_prefix_dir_not_made", TT, 'os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)', "pass"),
    ("tt_chat_template_ignored", TT, "chat_template=chat_template, source=source)", 'chat_template="plain", source=source)'),
    ("ct_unknown_key_unchecked", CT, 'if not hasattr(node, "keys") or name not in node:', "if False:"),
    ("ct_no_prefix_unchecked", CT, r'r"--(?:no)?config\.([^=]+)"', r'r"--config\.([^=]+)"'),
    ("ct_missing_config_unexplained", CT, "  if spec is None:\n    raise", "  if False:\n    raise"),
    ("ct_load_error_raw", CT, 'raise ConfigError(f"--config {spec}: {e}") from None', "raise"),
    ("ct_flag_error_raw", CT, "raise ConfigError(str(e)) from None", "raise"),
    ("ct_nonfinite_rc_2", CT, "    return 3\n", "    return 2\n"),
    ("ct_mismatch_uncaught", CT, "except (ConfigError, CheckpointMismatchError, CheckpointError) as e:",
     "except (ConfigError, CheckpointError) as e:"),
    ("ct_help_only_bare", CT, 'if not argv or any(a in ("-h", "--help", "--helpfull") for a in argv):', "if not argv:"),
    ("ct_dry_run_silent", CT, "      print(json.dumps(out), flush=True)", "      pass"),
    ("ct_log_level_ignored", CT, "level=getattr(logging, level.upper(), logging.WARNING)", "level=logging.WARNING"),
]

CD, CL = "foresight_jax/cli_data.py", "foresight_jax/cli.py"
MUTANTS += [
    ("cd_not_atomic", CD, 'return open(path + ".partial", "w", encoding="utf-8")', 'return open(path, "w", encoding="utf-8")'),
    ("cd_weight_names_unstripped", CD, "out[name.strip()] = float(w)", "out[name] = float(w)"),
    ("cd_unknown_policy_ok", CD, "  if unknown:\n    raise SystemExit", "  if False:\n    raise SystemExit"),
    ("cd_search_k_zero_ok", CD, "if args.search_k < 1:", "if args.search_k < 0:"),
    ("cd_hops_ignored", CD, 'hops=tuple(int(h) for h in args.hops.split(","))', "hops=(1, 2, 3, 4)"),
    ("cd_start_ignored", CD, "generate(cfg, args.n, start=args.start, worlds=worlds)", "generate(cfg, args.n, worlds=worlds)"),
    ("cd_world_rate_median", CD, '"success_rate": round(statistics.fmean(scores), 4) if scores else None,\n                    "seconds"',
     '"success_rate": round(statistics.median(scores), 4) if scores else None,\n                    "seconds"'),
    ("cd_problems_all_shown", CD, "for p in report.problems[:args.show_problems]:", "for p in report.problems:"),
    ("cd_more_problems_silent", CD, "if len(report.problems) > args.show_problems:", "if False:"),
    ("cd_methods_not_counted", CD, "    methods[method] += 1\n", "    pass\n"),
    ("cd_augment_noise_dropped", CD, "forecast_noise=args.forecast_noise)", "forecast_noise=0.0)"),
    ("cd_stats_tokenizer_ignored", CD, "lengths.append(len(tok.encode(text)) if tok else len(text.split()))",
     "lengths.append(len(text.split()))"),
    ("cd_blocks_in_every_step", CD, "with_blocks += any(s.foresight is not None for s in traj.steps)",
     "with_blocks += all(s.foresight is not None for s in traj.steps)"),
    ("cd_p95_is_max", CD, '"p95": xs[min(len(xs) - 1, int(0.95 * len(xs)))]', '"p95": xs[-1]'),
    ("cd_p50_is_min", CD, '"p50": xs[len(xs) // 2]', '"p50": xs[0]'),
    ("cd_stats_calibration_dropped", CD, 'out["calibration"] = _calibration_json(trajs)', 'out["calibration"] = None'),
    ("cl_mesh_unknown_axis_ok", CL, "if k not in sharding.MESH_AXES:", "if False:"),
    ("cl_convert_tokenizer_skipped", CL, "      tok.save(args.out_dir)", "      pass"),
    ("cl_convert_dtype_ignored", CL, "cfg, params = load_pretrained(args.src, dtype=args.dtype)", "cfg, params = load_pretrained(args.src)"),
    ("cl_chat_system_dropped", CL, 'msgs = ([{"role": "system", "content": system}] if system else []) + ', "msgs = [] + "),
    ("cl_stop_ignored", CL, "stop=stop or None, key=seed)", "stop=None, key=seed)"),
    ("cl_compute_dtype_ignored", CL, "  cfg = cfg.replace(compute_dtype=args.compute_dtype)\n", "  pass\n"),
    ("cl_info_embeddings_counted", CL, "config_lib.param_count(cfg, include_embeddings=False)", "config_lib.param_count(cfg)"),
    ("cl_info_seq_ignored", CL, "config_lib.train_flops_per_token(cfg, args.seq)", "config_lib.train_flops_per_token(cfg, 4096)"),
    ("cl_info_set_ignored", CL, "loaded = configs.load(args.config, args.set)", "loaded = configs.load(args.config, [])"),
    ("cl_demo_no_rl_ignored", CL, "rl=not args.no_rl)", "rl=True)"),
]

HR, CE, CR = "foresight_jax/evals/html_report.py", "foresight_jax/cli_eval.py", "foresight_jax/cli_report.py"
MUTANTS += [
    ("hr_fe_sft_matched_first", HR, '_STAGE_KEYS = (("FC-RL", ("fcrl", "rewardfc")), ("GRPO", ("grpo", "rewardoutcome")), ("FE-SFT", ("fesft",)))',
     '_STAGE_KEYS = (("FE-SFT", ("fesft",)), ("FC-RL", ("fcrl", "rewardfc")), ("GRPO", ("grpo", "rewardoutcome")))'),
    ("hr_files_lexical", HR, 'sorted(path.glob("receipts*.jsonl"), key=_natural)', 'sorted(path.glob("receipts*.jsonl"))'),
    ("hr_loss_not_read", HR, '(losses.get(name) or {}).get("held_out_loss")', "None"),
    ("hr_same_names_kept", HR, "      if count[r.name] > 1:", "      if False:"),
    ("hr_config_bins_ignored", HR, 'n_bins=c.get("n_bins", d.n_bins)', "n_bins=d.n_bins"),
    ("hr_no_intervals", HR, "if s.bootstrap_resamples and units else {}", "if False else {}"),
    ("hr_urls_kept", HR, 'return html.escape(str(x)).replace("://", ":&#47;&#47;")', "return html.escape(str(x))"),
    ("hr_text_unescaped", HR, 'return html.escape(str(x)).replace("://"', 'return str(x).replace("://"'),
    ("hr_lone_run_best", HR, "best = report.best_runs(rows, cols) if len(rows) > 1 else {}", "best = report.best_runs(rows, cols)"),
    ("hr_gap_sign", HR, 'd["format_turn"] - d["accuracy"], "+.3f")', 'd["accuracy"] - d["format_turn"], "+.3f")'),
    ("hr_gap_by_run_name", HR, 'key=lambda d: STAGES.index(d["stage"]))', 'key=lambda d: d["run"])'),
    ("hr_flagged_last", HR, "key=lambda i: i not in flags)", "key=lambda i: i in flags)"),
    ("hr_max_episodes_ignored", HR, "    if s.max_episodes:\n", "    if False:\n"),
    ("hr_judge_agreement_inverted", HR, "agree = [v == bool(", "agree = [v != bool("),
    ("hr_truncation_never_noted", HR, '("" if len(obs) == st["observation_chars"]', '("" if True'),
    ("ce_set_ignored", CE, "      configs.apply_override(cfg, item)", "      pass"),
    ("ce_flags_ignored", CE, "      if value is not None:\n        cfg[key] = value", "      if False:\n        cfg[key] = value"),
    ("ce_judge_flag_ignored", CE, "      cfg.judge.kind = args.judge", "      pass"),
    ("ce_tool_path_flag_ignored", CE, "      cfg.tool_path = args.tool_path", "      pass"),
    ("ce_config_file_ignored", CE, "cfg = configs.load(args.config) if args.config else eval_config.default_config()",
     "cfg = eval_config.default_config()"),
    ("cr_set_without_config_ok", CR, "    if not args.config:\n      raise", "    if False:\n      raise"),
    ("cr_settings_ignored", CR, "    settings = html_report.ReportSettings.from_config(configs.load(args.config, args.set))",
     "    settings = None"),
    ("cr_set_ignored", CR, "configs.load(args.config, args.set)", "configs.load(args.config, [])"),
]

TB = "foresight_jax/data/tfds_builders.py"
MUTANTS += [
    ("tb_name_case_kept", TB, 'out = re.sub(r"[^a-z0-9_]", "_", name.strip().lower())', 'out = re.sub(r"[^a-z0-9_]", "_", name.strip())'),
    ("tb_empty_name_ok", TB, '  if not out.strip("_"):\n', "  if False:\n"),
    ("tb_val_fraction_one_ok", TB, "if not 0.0 <= val_fraction < 1.0:", "if not 0.0 <= val_fraction <= 1.0:"),
    ("tb_empty_val_kept", TB, "    if not val_ids:\n", "    if False:\n"),
    ("tb_empty_train_kept", TB, "    elif len(val_ids) == len(u):\n", "    elif False:\n"),
    ("tb_moves_the_far_task", TB, "      k = max(u, key=u.get)\n", "      k = min(u, key=u.get)\n"),
    ("tb_single_task_silent", TB, '    notes.append("a single task: no validation split")', "    pass"),
    ("tb_missing_file_ok", TB, "      if not p.is_file():\n", "      if False:\n"),
    ("tb_max_steps_ignored", TB, "trajs, rep = read_trajectories(p, max_steps=self._max_steps)", "trajs, rep = read_trajectories(p)"),
    ("tb_val_index_restarts", TB, "list(enumerate(val, start=len(trajs)))", "list(enumerate(val))"),
    ("tb_empty_split_silent", TB, '      notes.append(f"empty split(s) not written: {empty}")', "      pass"),
    ("tb_rejected_not_summed", TB, '"rejected": sum(r.rejected for r in self.read_reports)', '"rejected": 0'),
    ("tb_n_steps_zero", TB, '"n_steps": len(t.steps)', '"n_steps": 0'),
    ("tb_score_zero", TB, '"score": float(t.score)', '"score": 0.0'),
    ("tb_duplicates_uncounted", TB, "dups = len(ids) - len(set(ids))", "dups = 0"),
    ("tb_no_tasks_ok", TB, '    if not self._tasks:\n      raise ValueError("no tasks to write")', '    if False:\n      raise ValueError("no tasks to write")'),
    ("tb_answers_sorted", TB, '"answers": json.dumps(list(t.answers), ensure_ascii=False)', '"answers": json.dumps(sorted(t.answers), ensure_ascii=False)'),
    ("tb_meta_dropped", TB, 'meta=json.loads(_text(example["metadata"])))', "meta=None)"),
    ("tb_overwrite_ignored", TB, "if overwrite and epath.Path(builder.data_dir).exists():", "if False:"),
    ("tb_alias_name_kept", TB, "build_eval_set(tasks, data_dir, resolve_eval_set(name).name,", "build_eval_set(tasks, data_dir, name,"),
]

STT, CFG = "foresight_jax/train/state.py", "foresight_jax/configs.py"
EC, SY = "foresight_jax/evals/eval_config.py", "foresight_jax/train/synthetic.py"
MUTANTS += [
    ("stt_one_key_for_init_and_steps", STT, "init_key, state_key = jax.random.split(seed_key)", "init_key = state_key = seed_key"),
    ("stt_optimizer_replicated", STT, "return TrainState(step=repl, params=param_sh, opt_state=opt_sh,",
     "return TrainState(step=repl, params=param_sh, opt_state=jax.tree.map(lambda _: repl, opt_sh),"),
    ("stt_skipped_not_saved", STT, '"rng": self.rng,\n            "skipped": self.skipped}', '"rng": self.rng,\n            "skipped": self.step}'),
    ("stt_counts_tensors", STT, "return sum(x.size for x in jax.tree.leaves(state.params))", "return len(jax.tree.leaves(state.params))"),
    ("cfg_missing_file_unexplained", CFG, "  if not os.path.isfile(path):\n", "  if False:\n"),
    ("cfg_no_get_config_unexplained", CFG, '  if not hasattr(module, "get_config"):\n', "  if False:\n"),
    ("cfg_size_ignored", CFG, "cfg = module.get_config(arg) if arg else module.get_config()", "cfg = module.get_config()"),
    ("cfg_bare_key_ok", CFG, "  if not sep:\n", "  if False:\n"),
    ("cfg_parent_unexplained", CFG, "    if name not in node:\n", "    if False:\n"),
    ("cfg_new_leaf_added", CFG, "  if leaf not in node:\n", "  if False:\n"),
    ("cfg_type_error_unnamed", CFG, 'raise TypeError(f"override {item!r}: {e}") from None', "raise"),
    ("ec_no_suite_ok", EC, '_need(bool([s for s in cfg.suites.split(",") if s.strip()]), "suites"', '_need(True, "suites"'),
    ("ec_n_zero_ok", EC, '_need(cfg.n >= 1, "n"', '_need(cfg.n >= 0, "n"'),
    ("ec_k_zero_ok", EC, '_need(cfg.k >= 1, "k"', '_need(cfg.k >= 0, "k"'),
    ("ec_samples_below_k_ok", EC, '_need(cfg.samples == 0 or cfg.samples >= cfg.k, "samples",', '_need(True, "samples",'),
    ("ec_greedy_copies_ok", EC, '_need(samples == 1 or cfg.temperature > 0, "temperature",', '_need(True, "temperature",'),
    ("ec_top_p_zero_ok", EC, '_need(0 < cfg.top_p <= 1, "top_p"', '_need(0 <= cfg.top_p <= 1, "top_p"'),
    ("ec_any_variant", EC, '_need(cfg.variant in ("none", "state", "full"), "variant"', '_need(True, "variant"'),
    ("ec_no_turns_ok", EC, "_need(cfg.max_turns >= 1 and cfg.max_new_tokens >= 1,", "_need(cfg.max_new_tokens >= 1,"),
    ("ec_batch_zero_ok", EC, '_need(cfg.batch_size >= 1, "batch_size"', '_need(cfg.batch_size >= 0, "batch_size"'),
    ("ec_any_tool_path", EC, '_need(cfg.tool_path in TOOL_PATHS, "tool_path"', '_need(True, "tool_path"'),
    ("ec_any_retriever", EC, '_need(r.kind in RETRIEVERS, "retriever.kind"', '_need(True, "retriever.kind"'),
    ("ec_topk_zero_ok", EC, '_need(r.topk >= 1, "retriever.topk"', '_need(r.topk >= 0, "retriever.topk"'),
    ("ec_http_retriever_without_url", EC, '_need(r.kind != "http" or r.url.startswith(("http://", "https://")), "retriever.url",',
     '_need(True, "retriever.url",'),
    ("ec_any_judge", EC, '_need(j.kind in JUDGES, "judge.kind"', '_need(True, "judge.kind"'),
    ("ec_http_judge_without_model", EC, '_need(bool(j.model), "judge.model"', '_need(True, "judge.model"'),
    ("sy_seed_unchecked", SY, '    if state.get("seed") != self.seed:\n', "    if False:\n"),
    ("sy_loss_across_segments", SY, '"loss_mask": same.astype(np.int32)', '"loss_mask": np.ones_like(same, np.int32)'),
    ("sy_same_batch_every_step", SY, "rng = np.random.default_rng([self.seed, i])", "rng = np.random.default_rng(self.seed)"),
    ("sy_specials_in_motifs", SY, "motif = rng.integers(self.first_token, self.vocab_size,", "motif = rng.integers(0, self.vocab_size,"),
]

_RL = ["tests/test_rl_grpo.py", "tests/test_rl_step.py", "tests/test_rl_arith.py"]
_EVALS = ["tests/test_evals_bootstrap.py", "tests/test_evals.py", "tests/test_evals_audit.py"]
TESTS = {G: _RL, RW: ["tests/test_rl_rewards.py"] + _RL, ST: _RL + ["tests/test_rl_train.py"],
         EM: _EVALS + ["tests/test_evals_qa.py", "tests/test_evals_model.py"],
         DC: _EVALS + ["tests/test_data_foresight.py", "tests/test_cli_data.py"], BS: _EVALS + ["tests/test_demo.py"],
         TK: ["tests/test_data_pipeline.py", "tests/test_data_slips.py", "tests/test_train_stages.py", "tests/test_cli_data.py"],
         PK: ["tests/test_data_pipeline.py", "tests/test_train_stages.py"],
         LS: ["tests/test_kernels.py", "tests/test_train.py", "tests/test_model.py"],
         LY: ["tests/test_model.py", "tests/test_kernels.py", "tests/test_checkpoint_parity.py"],
         DS: ["tests/test_rl_device_search.py", "tests/test_retrieval_bm25.py"], SC: ["tests/test_sampling.py"],
         RH: ["tests/test_rl_rewards.py", "tests/test_evals.py", "tests/test_evals_audit.py", "tests/test_evals_model.py"],
         RO: ["tests/test_rl_rollout.py"] + _RL, OP: ["tests/test_train.py", "tests/test_train_resume.py"],
         TS: ["tests/test_train.py", "tests/test_train_resume.py"] + _RL, DF: ["tests/test_data_foresight.py"],
         LP: ["tests/test_train_resume.py", "tests/test_train.py"], RT: ["tests/test_rl_train.py"],
         PL: ["tests/test_data_pipeline.py", "tests/test_train_multihost.py"],
         EA: ["tests/test_evals.py", "tests/test_evals_model.py", "tests/test_eval_suites.py", "tests/test_evals_qa.py"],
         RD: ["tests/test_evals.py", "tests/test_evals_audit.py", "tests/test_data_foresight.py", "tests/test_data_slips.py",
              "tests/test_evals_model.py", "tests/test_rl_rewards.py"],
         DM: ["tests/test_demo.py"], KN: ["tests/test_kernels.py"],
         VT: ["tests/test_rl_rewards.py", "tests/test_rl_step.py"],
         CH: ["tests/test_tokenizer.py", "tests/test_train_stages.py"],
         EV: ["tests/test_evals_audit.py", "tests/test_evals.py", "tests/test_eval_cli.py"],
         BM: ["tests/test_retrieval_bm25.py", "tests/test_retrieval_server.py", "tests/test_rl_device_search.py",
              "tests/test_eval_suites.py"],
         DN: ["tests/test_retrieval_dense.py", "tests/test_retrieval_encoder.py"],
         EN: ["tests/test_retrieval_encoder.py", "tests/test_retrieval_dense.py"],
         HT: ["tests/test_rl_rollout.py", "tests/test_rl_step.py"],
         GG: ["tests/test_checkpoint_gguf.py", "tests/test_smollm2_gguf.py", "tests/test_checkpoint_errors.py"],
         HC: ["tests/test_checkpoint_parity.py", "tests/test_checkpoint_errors.py", "tests/test_checkpoint_gguf.py",
              "tests/test_smollm2_gguf.py"],
         WD: ["tests/test_data_world.py", "tests/test_retrieval_bm25.py", "tests/test_data_foresight.py",
              "tests/test_rl_device_search.py"],
         HS: ["tests/test_sampling.py", "tests/test_evals_model.py", "tests/test_smollm2_gguf.py"],
         DA: ["tests/test_evals_device_record.py", "tests/test_eval_cli.py", "tests/test_evals_model.py", "tests/test_eval_suites.py", "tests/test_demo.py"],
         SR: ["tests/test_data_world.py", "tests/test_rl_rewards.py", "tests/test_evals_qa.py", "tests/test_evals.py"],
         TZ: ["tests/test_tokenizer.py", "tests/test_smollm2_gguf.py", "tests/test_checkpoint_gguf.py", "tests/test_train_stages.py"],
         GV: ["tests/test_tokenizer.py", "tests/test_checkpoint_gguf.py", "tests/test_smollm2_gguf.py"],
         QA: ["tests/test_evals_qa.py", "tests/test_eval_suites.py", "tests/test_eval_cli.py"],
         JD: ["tests/test_evals_judge.py", "tests/test_eval_cli.py", "tests/test_eval_suites.py"],
         RC: ["tests/test_evals.py", "tests/test_evals_audit.py", "tests/test_eval_cli.py", "tests/test_evals_device_record.py",
              "tests/test_demo.py"],
         CK: ["tests/test_train_resume.py", "tests/test_train.py", "tests/test_rl_train.py", "tests/test_train_stages_run.py"],
         TE: ["tests/test_rl_step.py", "tests/test_rl_rollout.py", "tests/test_evals_device_record.py", "tests/test_rl_train.py"],
         AT: ["tests/test_rl_arith.py"],
         MT: ["tests/test_data_world.py", "tests/test_evals.py", "tests/test_data_foresight.py", "tests/test_rl_rollout.py"],
         SH: ["tests/test_data_schema.py", "tests/test_cli_data.py", "tests/test_data_pipeline.py"],
         SV: ["tests/test_retrieval_server.py"],
         RF: ["tests/test_retrieval_server.py", "tests/test_retrieval_bm25.py", "tests/test_data_real_sources.py"],
         SU: ["tests/test_eval_suites.py", "tests/test_eval_cli.py"],
         SD: ["tests/test_train_stages.py", "tests/test_data_slips.py", "tests/test_train_stages_run.py"],
         TR: ["tests/test_model.py", "tests/test_sampling.py", "tests/test_checkpoint_parity.py", "tests/test_kernels.py"],
         AN: ["tests/test_model.py", "tests/test_checkpoint_parity.py", "tests/test_sampling.py"],
         PM: ["tests/test_model.py", "tests/test_checkpoint_parity.py", "tests/test_train.py"],
         LO: ["tests/test_checkpoint_parity.py", "tests/test_checkpoint_errors.py", "tests/test_checkpoint_gguf.py",
              "tests/test_smollm2_gguf.py"],
         TH: ["tests/test_evals_audit.py"],
         ME: ["tests/test_train.py", "tests/test_train_resume.py", "tests/test_rl_train.py", "tests/test_train_stages_run.py"],
         AD: ["tests/test_data_schema.py", "tests/test_cli_data.py"],
         RS: ["tests/test_data_real_sources.py", "tests/test_eval_suites.py", "tests/test_data_tfds_builders.py",
              "tests/test_rl_device_search.py", "tests/test_retrieval_bm25.py"],
         AR: ["tests/test_rl_arith.py"],
         GE: ["tests/test_data_world.py", "tests/test_data_foresight.py", "tests/test_data_tfds_builders.py", "tests/test_cli_data.py"],
         LD: ["tests/test_tokenizer.py", "tests/test_smollm2_gguf.py", "tests/test_checkpoint_gguf.py"],
         RP: ["tests/test_evals.py", "tests/test_evals_model.py", "tests/test_demo.py"],
         CF: ["tests/test_train_stages.py", "tests/test_rl_train.py", "tests/test_train_stages_run.py"],
         JJ: ["tests/test_tokenizer.py", "tests/test_train_stages.py"],
         MC: ["tests/test_model.py", "tests/test_rl_step.py", "tests/test_train.py"],
         SHD: ["tests/test_train.py", "tests/test_model.py", "tests/test_train_multihost.py", "tests/test_checkpoint_parity.py"],
         SG: ["tests/test_train_stages.py", "tests/test_train_stages_run.py", "tests/test_rl_train.py"],
         PS: ["tests/test_data_pipeline.py", "tests/test_train_stages.py"],
         RN: ["tests/test_eval_runner.py", "tests/test_eval_cli.py", "tests/test_eval_suites.py"],
         TT: ["tests/test_tokenizer.py", "tests/test_train_stages.py", "tests/test_data_pipeline.py"],
         CT: ["tests/test_train_stages.py", "tests/test_train_stages_run.py"],
         CD: ["tests/test_cli_data.py", "tests/test_cli.py"],
         CL: ["tests/test_cli.py", "tests/test_cli_data.py"],
         HR: ["tests/test_evals_audit.py"],
         CE: ["tests/test_eval_cli.py"],
         CR: ["tests/test_evals_audit.py"],
         TB: ["tests/test_data_tfds_builders.py", "tests/test_data_pipeline.py"],
         STT: ["tests/test_train.py", "tests/test_train_resume.py"],
         CFG: ["tests/test_cli.py", "tests/test_train_stages.py"],
         EC: ["tests/test_eval_config.py", "tests/test_eval_cli.py"],
         SY: ["tests/test_train.py", "tests/test_train_resume.py"],
         PO: ["tests/test_data_world.py", "tests/test_data_foresight.py", "tests/test_cli_data.py", "tests/test_data_slips.py"]}


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
