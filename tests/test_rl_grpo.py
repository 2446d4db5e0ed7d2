"""GRPO's pure functions (rl/grpo.py) against their formulas written out in float64 numpy, the
masking invariants of the loss, and the chunked log-probs against whole logits (the tiny model).
No rollout: the file runs in seconds.

The fused-step tests (test_rl_step.py) compare the step with its own pieces, so a wrong formula in
a piece would pass there unseen; these tests pin each formula to an independent reference.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foresight_jax.rl import grpo
from foresight_jax.rl.layout import KIND_GEN, KIND_OBS, KIND_PAD, KIND_PROMPT


def _loss_inputs(seed: int, b: int = 6, s: int = 40):
  rng = np.random.default_rng(seed)
  kind = rng.choice([KIND_PAD, KIND_PROMPT, KIND_GEN, KIND_OBS], size=(b, s), p=[0.15, 0.2, 0.4, 0.25])
  kind[:, 1] = KIND_GEN  # every row trains on something
  logp = -rng.exponential(2.0, (b, s))
  old = logp + rng.normal(0, 0.3, (b, s))  # ratios away from 1, so the clip is active on some tokens
  ref = logp + rng.normal(0, 0.5, (b, s))
  adv = rng.normal(size=b)
  f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
  return f32(logp), f32(old), f32(ref), f32(adv), jnp.asarray(kind, jnp.int32)


def _loss_and_grad(logp, old, ref, adv, kind, cfg):
  fn = lambda lp: grpo.policy_loss(lp, old, ref, adv, kind, cfg)  # noqa: E731
  (loss, aux), g = jax.value_and_grad(fn, has_aux=True)(logp)
  return float(loss), aux, np.asarray(g)


def _reference_loss(logp, old, ref, adv, kind, eps, beta, aggregation):
  """PPO's clipped surrogate plus beta times Schulman's k3 estimate of KL(pi || ref), written out
  per token in float64, then averaged as the aggregation says. Returns (loss, clip_fraction, kl)."""
  logp, old, ref, adv = (np.asarray(x, np.float64) for x in (logp, old, ref, adv))
  m = np.asarray(kind) == KIND_GEN
  ratio = np.exp(logp - old)
  surrogate = np.minimum(ratio * adv[:, None], np.clip(ratio, 1 - eps, 1 + eps) * adv[:, None])
  kl = np.exp(ref - logp) - (ref - logp) - 1
  per_token = -surrogate + beta * kl
  if aggregation == "token_mean":
    loss = per_token[m].mean()
  else:  # each row's mean over its trained tokens, then the mean over rows that have any
    loss = np.mean([per_token[i][m[i]].mean() for i in range(len(m)) if m[i].any()])
  return loss, (np.abs(ratio - 1) > eps)[m].mean(), kl[m].mean()


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean"])
@pytest.mark.parametrize("eps,beta", [(0.2, 0.04), (0.1, 0.0), (0.3, 0.5)])
def test_policy_loss_equals_the_clipped_objective_written_out(aggregation, eps, beta):
  logp, old, ref, adv, kind = _loss_inputs(3)
  kind = kind.at[4].set(jnp.where(kind[4] == KIND_GEN, KIND_OBS, kind[4]))  # a row with nothing to train
  cfg = grpo.GRPOConfig(clip_eps=eps, beta=beta, aggregation=aggregation)
  loss, aux = grpo.policy_loss(logp, old, ref, adv, kind, cfg)
  want, clip_fraction, kl = _reference_loss(logp, old, ref, adv, kind, eps, beta, aggregation)
  assert float(loss) == pytest.approx(want, rel=1e-5, abs=1e-6)
  assert float(aux["clip_fraction"]) == pytest.approx(clip_fraction, rel=1e-6)
  assert 0.05 < clip_fraction < 0.95  # the inputs exercise both sides of the clip
  assert float(aux["kl"]) == pytest.approx(kl if beta else 0.0, rel=1e-5, abs=1e-7)
  assert float(aux["trained_tokens"]) == int((np.asarray(kind) == KIND_GEN).sum())


def test_the_two_aggregations_differ_where_rows_train_on_different_numbers_of_tokens():
  logp, old, ref, adv, kind = _loss_inputs(4)
  losses = [float(grpo.policy_loss(logp, old, ref, adv, kind, grpo.GRPOConfig(aggregation=a))[0])
            for a in ("token_mean", "sequence_mean")]
  assert abs(losses[0] - losses[1]) > 1e-3, losses


def test_the_clip_stops_the_policy_gradient_exactly_where_it_binds():
  """d loss / d logp per trained token, beta = 0, token mean over N tokens: -adv * ratio / N where
  the unclipped term is the smaller one, 0 where the clip binds (adv > 0 and ratio > 1 + eps, or
  adv < 0 and ratio < 1 - eps). Ratios near the clip's edges are moved off them first."""
  eps = 0.2
  logp, old, ref, adv, kind = _loss_inputs(5)
  ratio = np.exp(np.asarray(logp, np.float64) - np.asarray(old, np.float64))
  near = (np.abs(ratio - (1 + eps)) < 0.02) | (np.abs(ratio - (1 - eps)) < 0.02) | (np.abs(ratio - 1) < 0.02)
  old = jnp.where(jnp.asarray(near), old + 0.1, old)
  ratio = np.exp(np.asarray(logp, np.float64) - np.asarray(old, np.float64))
  a = np.asarray(adv, np.float64)[:, None]
  binds = ((a > 0) & (ratio > 1 + eps)) | ((a < 0) & (ratio < 1 - eps))
  gen = np.asarray(kind) == KIND_GEN
  assert (binds & gen).sum() >= 5 and (~binds & gen).sum() >= 5
  _, _, g = _loss_and_grad(logp, old, ref, adv, kind, grpo.GRPOConfig(clip_eps=eps, beta=0.0))
  want = np.where(binds, 0.0, -a * ratio) / gen.sum()
  np.testing.assert_allclose(g[gen], want[gen], rtol=1e-5, atol=1e-8)


def test_kl_k3_is_the_estimator_of_kl_pi_to_ref():
  """k3 = exp(ref - logp) - (ref - logp) - 1 for tokens sampled from pi: non-negative, zero at the
  reference, and its expectation under pi is KL(pi || ref) (checked exactly on a 5-token vocab)."""
  x = jnp.asarray(np.random.default_rng(0).normal(-3, 2, (5, 17)), jnp.float32)
  assert (np.asarray(grpo.kl_k3(x, x)) == 0).all()
  assert (np.asarray(grpo.kl_k3(x, x + 0.1)) > 0).all() and (np.asarray(grpo.kl_k3(x + 0.1, x)) > 0).all()
  pi = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
  ref = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
  k3 = np.asarray(grpo.kl_k3(jnp.log(jnp.asarray(pi, jnp.float32)), jnp.log(jnp.asarray(ref, jnp.float32))))
  assert float(np.sum(pi * k3)) == pytest.approx(float(np.sum(pi * np.log(pi / ref))), rel=1e-5)


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean"])
def test_observation_prompt_and_pad_logprobs_do_not_enter_the_loss(aggregation):
  cfg = grpo.GRPOConfig(clip_eps=0.2, beta=0.04, aggregation=aggregation)
  logp, old, ref, adv, kind = _loss_inputs(0)
  loss, aux, g = _loss_and_grad(logp, old, ref, adv, kind, cfg)
  gen = np.asarray(kind) == KIND_GEN
  assert 0 < aux["clip_fraction"] < 1 and aux["kl"] > 0
  assert (g[~gen] == 0).all()  # no gradient reaches a non-trained token
  rng = np.random.default_rng(1)
  for kinds in ([KIND_OBS], [KIND_PROMPT], [KIND_PAD], [KIND_OBS, KIND_PROMPT, KIND_PAD]):
    where = jnp.asarray(np.isin(np.asarray(kind), kinds))
    noise = lambda: jnp.asarray(rng.uniform(-20, 20, logp.shape), jnp.float32)  # noqa: E731
    lp2, old2, ref2 = (jnp.where(where, x + noise(), x) for x in (logp, old, ref))
    loss2, aux2, g2 = _loss_and_grad(lp2, old2, ref2, adv, kind, cfg)
    assert loss2 == loss, (kinds, loss, loss2)
    np.testing.assert_array_equal(g2[gen], g[gen], err_msg=str(kinds))
    for k in ("kl", "clip_fraction", "pg_loss"):
      assert float(aux2[k]) == float(aux[k]), (kinds, k)
  # while any GEN position moves it: the policy term, the KL term and the old log-prob each count
  r, c = map(int, np.argwhere(gen)[0])
  for name, arrays in (("logp", (logp.at[r, c].add(0.5), old, ref)), ("old", (logp, old.at[r, c].add(0.5), ref)),
                       ("ref", (logp, old, ref.at[r, c].add(0.5)))):
    loss3, _, g3 = _loss_and_grad(*arrays, adv, kind, cfg)
    assert loss3 != loss, name
    assert not np.array_equal(g3[gen], g[gen]), name


def test_observation_logprobs_far_from_the_reference_do_not_make_the_loss_nan():
  cfg = grpo.GRPOConfig()
  logp, old, ref, adv, kind = _loss_inputs(0)
  loss, _, g = _loss_and_grad(logp, jax.lax.stop_gradient(logp), ref, adv, kind, cfg)
  obs = jnp.asarray(np.asarray(kind) == KIND_OBS)
  lp2 = jnp.where(obs, -150.0, logp)  # a policy that has drifted on text it never trains on
  loss2, _, g2 = _loss_and_grad(lp2, jax.lax.stop_gradient(lp2), ref, adv, kind, cfg)
  assert np.isfinite(loss2) and loss2 == loss
  gen = np.asarray(kind) == KIND_GEN
  np.testing.assert_array_equal(g2[gen], g[gen])


@pytest.mark.parametrize("group", [2, 3, 5, 8])
def test_group_advantages_have_zero_mean_per_group(group):
  rng = np.random.default_rng(group)
  r = rng.normal(size=7 * group).astype(np.float32) * 3 + 1
  r[:group] = 0.75  # a constant group
  r[group:2 * group] = rng.integers(0, 2, group)  # a 0/1 outcome group
  r[group:group + 2] = [0, 1]
  adv = np.asarray(grpo.group_advantages(jnp.asarray(r), group)).reshape(-1, group)
  assert (adv[0] == 0).all()  # nothing to learn from a group of equal rewards
  np.testing.assert_allclose(adv.mean(axis=1), 0, atol=1e-6)
  # (R - mean) / (std + eps): unit std up to eps, the order of the rewards kept
  rr = r.reshape(-1, group)
  np.testing.assert_allclose(adv[1:], (rr[1:] - rr[1:].mean(1, keepdims=True)) / (rr[1:].std(1, keepdims=True) + 1e-4),
                             rtol=1e-5, atol=1e-6)
  assert (np.argsort(adv[2:], axis=1, kind="stable") == np.argsort(rr[2:], axis=1, kind="stable")).all()
  # groups are consecutive rows: permuting whole groups permutes the advantages the same way
  perm = rng.permutation(7)
  adv_p = np.asarray(grpo.group_advantages(jnp.asarray(rr[perm].reshape(-1)), group)).reshape(-1, group)
  np.testing.assert_array_equal(adv_p, adv[perm])


def test_chunked_token_logprobs_equal_the_whole_logits():
  """token_logprobs runs the head over sequence chunks (never [B, S, vocab] at once): the same
  log-probs, entropies and parameter gradients as one pass over the whole logits."""
  from foresight_jax.models import params as params_lib, presets, transformer
  cfg = presets.model_config("tiny")
  params = params_lib.init_params(cfg, jax.random.key(3))
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(3, cfg.vocab_size, (3, 32)), jnp.int32)
  kind = jnp.asarray(np.where(np.arange(32)[None] < np.array([[32], [20], [9]]), KIND_GEN, KIND_PAD), jnp.int32)

  def whole(params):  # the reference: all logits at once
    seg = (kind != KIND_PAD).astype(jnp.int32)
    logits = transformer.forward(cfg, params, tokens, None, seg)[0][:, :-1]
    logz = jax.nn.logsumexp(logits, axis=-1)
    logp = jnp.take_along_axis(logits, tokens[:, 1:, None], axis=-1)[..., 0] - logz
    ent = logz - jnp.sum(jax.nn.softmax(logits, -1) * logits, -1)
    valid = seg[:, 1:] > 0
    pad = jnp.zeros_like(logp[:, :1])
    return jnp.concatenate([pad, jnp.where(valid, logp, 0.0)], 1), jnp.concatenate([pad, jnp.where(valid, ent, 0.0)], 1)

  want_lp, want_ent = whole(params)
  for chunk in (8, None):
    lp, ent = grpo.token_logprobs(cfg, params, tokens, kind, chunk=chunk)
    np.testing.assert_allclose(np.asarray(lp), np.asarray(want_lp), atol=1e-5)
    np.testing.assert_allclose(np.asarray(ent), np.asarray(want_ent), atol=1e-5)
  weights = jnp.asarray(rng.normal(size=tokens.shape), jnp.float32)
  g = jax.grad(lambda p: jnp.sum(grpo.token_logprobs(cfg, p, tokens, kind, chunk=8)[0] * weights))(params)
  g_want = jax.grad(lambda p: jnp.sum(whole(p)[0] * weights))(params)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5 * max(1.0, float(np.abs(b).max())))
  with pytest.raises(ValueError, match="does not divide"):
    grpo.token_logprobs(cfg, params, tokens, kind, chunk=5)
