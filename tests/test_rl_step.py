"""The fused FC-RL step (rl/step.py, design.md §5) against its own pieces, the GRPO invariants,
the mesh, the host-tool path and the input errors (GRPO's formulas alone: test_rl_grpo.py).

The policy is the scripted agent of tests/_scripted_policy.py (a bigram transformer that follows
a small stochastic grammar: think, optionally a foresight block, then search or answer), over the
synthetic search tasks of two worlds. Its answer word is the gold answer of two of the four
prompts of the batch, so some rows earn the outcome reward and some do not, rows with a
foresight block earn format and calibration and rows without do not: the group advantages, the
loss and the update are all non-trivial. One fused step is compiled once (module fixture) and
shared by the tests that read its output.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _scripted_policy import scripted_agent
from foresight_jax.data.generate import GenConfig, generate, make_worlds
from foresight_jax.data.render import render_prompt
from foresight_jax.data.world import World
from foresight_jax.evals.agent import invalid_message
from foresight_jax.rl import device_search as ds
from foresight_jax.rl import grpo, host_tools, rewards as rw, rollout as R, step as S, tasks as T
from foresight_jax.rl import train as rl_train
from foresight_jax.rl.layout import KIND_GEN, KIND_OBS, KIND_PAD, KIND_PROMPT
from foresight_jax.rl.vocab_tables import VocabTables
from foresight_jax.train import loop, optim, state as state_lib

PROMPTS = [0, 2, 4, 7]  # tasks 2 and 7 share the gold answer the scripted agent gives
GROUP = 4
RLCFG = S.RLConfig(group_size=GROUP, rollout=R.RolloutConfig(max_turns=3, max_turn_tokens=24, temperature=1.0),
                   spec=rw.RewardSpec(max_turns=3, max_obs_tokens=512))
OPT = optim.OptimConfig(learning_rate=1e-2, warmup_steps=0, total_steps=10, weight_decay=0.0, clip_norm=1.0)


def _state_shardings(sh) -> S.RLState:
  return S.RLState(**{k: getattr(sh, k) for k in ("step", "params", "opt_state", "rng", "skipped")},
                   ref_params=sh.params)


def _initial_state(cfg, tx, mesh, params) -> S.RLState:
  ts = state_lib.init_train_state(cfg, tx, mesh, seed=0, params=params)
  _, sh = state_lib.abstract_train_state(cfg, tx, mesh)
  ref = jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=sh.params)(ts.params)
  return S.RLState(step=ts.step, params=ts.params, opt_state=ts.opt_state, rng=ts.rng, skipped=ts.skipped,
                   ref_params=ref)


def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


@pytest.fixture(scope="module")
def env():
  t0 = time.time()
  gcfg = GenConfig(seed=0, n_worlds=2, math_fraction=0.0)
  worlds = make_worlds(gcfg)
  tasks = [t.task for t in generate(gcfg, 8, worlds=worlds)]
  answer = tasks[PROMPTS[1]].answers[0]
  assert sum(answer in tasks[i].answers for i in PROMPTS) == 2, [tasks[i].answers for i in PROMPTS]
  query = worlds[0].docs[3][0].split()[0]
  texts = tuple(d for w in worlds for _, d in w.docs[:40]) + tuple(render_prompt(t) for t in tasks) * 3
  cfg, params, tok = scripted_agent(query, answer, texts)
  e = T.TaskEnv.build(tasks, tok, worlds=worlds, chat=True, variant="full", max_prompt_tokens=384,
                      max_passage_tokens=48)
  tx, sched = optim.make_optimizer(OPT)
  mesh = loop.build_mesh((1, 1, 1))
  _, sh = state_lib.abstract_train_state(cfg, tx, mesh)
  env_arrays = S.EnvArrays(index=e.index, tools=e.tools, tables=VocabTables.build(tok))
  print(f"env: {time.time() - t0:.1f}s")
  return dict(cfg=cfg, params=params, tok=tok, e=e, worlds=worlds, tasks=tasks, tx=tx, sched=sched, mesh=mesh,
              shardings=_state_shardings(sh), env_arrays=env_arrays, batch=e.batch(PROMPTS, GROUP))


@pytest.fixture(scope="module")
def fused(env):
  """Two fused steps on one device from the scripted agent (state not donated: tests reuse it)."""
  t0 = time.time()
  state0 = _initial_state(env["cfg"], env["tx"], env["mesh"], env["params"])
  step = S.make_fc_rl_step(env["cfg"], env["tx"], env["sched"], env["mesh"], env["shardings"], env["env_arrays"],
                           RLCFG, donate=False)
  s1, m1 = step(state0, env["batch"])
  m1 = jax.device_get(m1)
  t1 = time.time()
  s2, m2 = step(s1, env["batch"])
  m2 = jax.device_get(m2)
  print(f"fused step: first (compile) {t1 - t0:.1f}s, second {time.time() - t1:.2f}s")
  return dict(step=step, state0=state0, s1=s1, m1=m1, s2=s2, m2=m2)


def _max_err(a, b) -> float:
  errs = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64)
                                                                          - np.asarray(y, np.float64)), initial=0.0)),
                                      a, b))
  return max(errs) if errs else 0.0


def _assert_states_close(got: S.RLState, want: S.RLState, atol: float, what: str):
  np.testing.assert_array_equal(np.asarray(got.step), np.asarray(want.step), err_msg=f"{what}: step")
  np.testing.assert_array_equal(np.asarray(got.rng), np.asarray(want.rng), err_msg=f"{what}: rng")
  np.testing.assert_array_equal(np.asarray(got.skipped), np.asarray(want.skipped), err_msg=f"{what}: skipped")
  for name in ("params", "opt_state", "ref_params"):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol,
                                                         err_msg=f"{what}: {name}"),
                 getattr(got, name), getattr(want, name))


def _assert_metrics_close(got: dict, want: dict, atol: float, what: str, rtol: float = 0.0):
  assert set(want) <= set(got), (what, sorted(set(want) - set(got)))
  for k in want:
    np.testing.assert_allclose(np.asarray(got[k], np.float64), np.asarray(want[k], np.float64), rtol=rtol,
                               atol=atol, err_msg=f"{what}: metric {k}")


# ------------------------------------------------------------------------------ 1. fused == unfused
def test_fused_step_equals_rollout_then_update_jitted_separately(env, fused):
  m1 = fused["m1"]
  # the step is non-trivial: searches and answers, some correct, rewards that differ within groups
  assert 0 < m1["answered"] < 1 and m1["searches"] > 0, m1
  assert 0 < m1["reward_outcome"] < 1 and 0 < m1["reward_format"] < 1, m1
  assert m1["adv_abs"] > 0.5 and m1["grad_norm"] > 1e-3 and abs(m1["loss"]) > 1e-4, m1
  assert m1["nonfinite"] == 0 and m1["trained_tokens"] > 0
  assert _max_err(fused["s1"].params, fused["state0"].params) > 1e-3  # the update moved the policy

  cfg, tx, sched = env["cfg"], env["tx"], env["sched"]
  state0, ea = fused["state0"], env["env_arrays"]
  b = {k: jnp.asarray(v) for k, v in env["batch"].items()}
  # the keys exactly as fc_rl_step splits them
  rng, k_roll, _ = jax.random.split(jax.random.wrap_key_data(state0.rng), 3)
  roll = jax.jit(lambda p, b, k, ea: R.rollout(cfg, p, b["prompts"], b["prompt_len"], k, ea.index, ea.tools,
                                               b["groups"], RLCFG.rollout))
  update = jax.jit(functools.partial(S.update_from_rollout, cfg, tx, sched, RLCFG))
  ro = roll(state0.params, b, k_roll, ea)
  s_u, m_u = update(state0, ro, b, ea.tables, rng)
  m_u = jax.device_get(m_u)
  assert set(m_u) == set(m1)
  err_state = max(_max_err(s_u.params, fused["s1"].params), _max_err(s_u.opt_state, fused["s1"].opt_state))
  err_m = max(abs(float(m_u[k]) - float(m1[k])) for k in m1)
  print(f"fused vs unfused: max |state diff| {err_state:.3g}, max |metric diff| {err_m:.3g}")
  _assert_states_close(s_u, fused["s1"], 1e-6, "unfused vs fused")
  _assert_metrics_close(m_u, m1, 1e-6, "unfused vs fused")


def test_reward_weights_are_a_run_time_input(env, fused):
  """FC-RL and the outcome-only GRPO baseline differ only in `EnvArrays.weights`: one program (the
  same lowered text, so the persistent compilation cache compiles it once for both runs); the fc
  weights as an input reproduce the step with the config's weights as constants; outcome-only
  weights make the reward the outcome alone."""
  from foresight_jax.train import step as step_lib
  outcome_only = dataclasses.replace(RLCFG, weights=(("outcome", 1.0),))
  texts, metrics = [], []
  for rlcfg in (RLCFG, outcome_only):
    ea = env["env_arrays"].replace(weights=S.weight_vector(rlcfg))
    step = S.make_fc_rl_step(env["cfg"], env["tx"], env["sched"], env["mesh"], env["shardings"], ea, rlcfg,
                             donate=False)
    with jax.set_mesh(env["mesh"]):
      texts.append(step.jitted.lower(fused["state0"], step_lib.shard_batch(dict(env["batch"]), env["mesh"]),
                                     step.env).as_text())
    metrics.append(jax.device_get(step(fused["state0"], env["batch"])[1]))
  assert texts[0] == texts[1]
  _assert_metrics_close(metrics[0], fused["m1"], 1e-6, "fc weights as an input vs as constants")
  fc, outcome = metrics
  assert outcome["reward"] == pytest.approx(outcome["reward_outcome"], abs=1e-7)
  assert abs(fc["reward"] - outcome["reward"]) > 1e-3  # the format/grounding/calibration terms count


def test_rl_model_flops_count_useful_tokens_by_hand():
  """The RL step's FLOPs for its MFU, against a hand count: 9 useful tokens of which 4 sampled;
  rollout = forward without the head for all 9 + the head for the 4; update = 6N + attention for
  all 9, plus a reference forward (a third of that) when beta > 0. Padding adds nothing."""
  from foresight_jax.models import presets
  from foresight_jax.models.config import param_count
  cfg = presets.model_config("tiny")
  kind = np.array([[KIND_PROMPT, KIND_PROMPT, KIND_GEN, KIND_OBS, KIND_GEN, KIND_PAD],
                   [KIND_PROMPT, KIND_GEN, KIND_GEN, KIND_OBS, KIND_PAD, KIND_PAD]], np.int32)
  ro = R.Rollout(tokens=jnp.zeros(kind.shape, jnp.int32), kind=jnp.asarray(kind), turn=None, logprobs=None,
                 length=None, n_turns=None, answered=None, searches=None, invalid=None)
  head = 2.0 * cfg.vocab_size * cfg.hidden_size
  body = 2.0 * param_count(cfg, include_embeddings=False)
  att_dim = cfg.num_heads * 2 * cfg.head_dim
  attn_fwd = 2 * 6 * att_dim * cfg.num_layers / 2  # seq 6, causal
  train = 3 * (body + head + attn_fwd)
  want_rollout = 9 * (body + attn_fwd) + 4 * head
  assert float(S.rl_model_flops(cfg, ro, False)) == pytest.approx(want_rollout + 9 * train, rel=1e-6)
  assert float(S.rl_model_flops(cfg, ro, True)) == pytest.approx(want_rollout + 9 * train * 4 / 3, rel=1e-6)
  padded = ro.replace(tokens=jnp.zeros((2, 6), jnp.int32), kind=jnp.asarray(np.where(kind == KIND_GEN, KIND_PAD, kind)))
  assert float(S.rl_model_flops(cfg, padded, False)) < float(S.rl_model_flops(cfg, ro, False))


def test_in_graph_brier_and_ece_equal_the_evaluation_code():
  """The step's Brier and 10-bin ECE over the valid success estimates (each against its row's
  outcome) are data/calibration.py's, the figures the evaluation reports; estimates of 0 and 1
  land in the first and last bins."""
  from foresight_jax.data import calibration
  rng = np.random.default_rng(0)
  s = rng.uniform(size=(8, 5)).astype(np.float32)
  s[0, 0], s[1, 1], s[2, 2] = 1.0, 0.0, 0.5
  valid = rng.uniform(size=s.shape) < 0.7
  valid[:3] = True
  y = rng.integers(0, 2, 8).astype(np.float32)
  got = S._calibration_figures(jnp.asarray(s), jnp.asarray(valid), jnp.asarray(y), bins=10)
  p, yy = s[valid], np.broadcast_to(y[:, None], s.shape)[valid]
  assert float(got["estimates"]) == valid.sum()
  assert float(got["brier"]) == pytest.approx(calibration.brier(p, yy), rel=1e-5)
  assert float(got["ece"]) == pytest.approx(calibration.ece(p, yy, 10), rel=1e-5)


# ------------------------------------------------------------------------------ 2. KL: the reference
def test_kl_is_zero_at_the_reference_and_positive_after_an_update(env, fused):
  m1, m2 = fused["m1"], fused["m2"]
  print(f"kl: step 1 {m1['kl']:.3g}, step 2 {m2['kl']:.3g}")
  assert abs(float(m1["kl"])) <= 1e-7, m1["kl"]  # policy == reference before the first update
  assert float(m2["kl"]) > 1e-4, m2["kl"]        # the first update moved it
  # the reference stays frozen (bitwise) while the policy moves
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               fused["s2"].ref_params, fused["state0"].params)
  assert _max_err(fused["s2"].params, fused["state0"].params) > 1e-3
  # a fresh key every step
  assert not np.array_equal(np.asarray(fused["s1"].rng), np.asarray(fused["state0"].rng))
  assert not np.array_equal(np.asarray(fused["s2"].rng), np.asarray(fused["s1"].rng))


# ------------------------------------------------------------------------------ 3. the mesh
def _adam_moments(opt_state):
  """The first (mu) and second (nu) moment trees of the AdamW state (optax ScaleByAdamState)."""
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "mu") and hasattr(x, "nu"))
           if hasattr(x, "mu")]
  assert len(found) == 1, opt_state
  return found[0].mu, found[0].nu


@pytest.mark.slow
def test_222_mesh_step_equals_single_device_step(env, fused):
  """(data, fsdp, tensor) = (2, 2, 2): rows over data x fsdp, params over fsdp and tensor. The
  rollouts are the same trajectories (every count equal), loss and metrics equal to 1e-6 and the
  gradient (AdamW's first moment after one step is (1 - b1) g) to 1e-6: they differ by reduction
  order only. The params after the first AdamW step are lr * g / (|g| + eps): where |g| is tiny
  (a gradient entry that cancels to ~1e-7) that ratio amplifies the reduction-order noise of g
  by eps / g^2, so the params are held to 1e-6 where |g| > 1e-5 and to 1% of lr elsewhere."""
  cfg, tx, sched = env["cfg"], env["tx"], env["sched"]
  mesh = loop.build_mesh((2, 2, 2))
  _, sh = state_lib.abstract_train_state(cfg, tx, mesh)
  shardings = _state_shardings(sh)
  state0 = jax.device_put(_copy(fused["state0"]), shardings)
  step = S.make_fc_rl_step(cfg, tx, sched, mesh, shardings, env["env_arrays"], RLCFG, donate=False)
  s1, m1 = step(state0, env["batch"])
  m1 = jax.device_get(m1)
  assert len(s1.params["layers"]["attn"]["q"].sharding.device_set) == 8
  ref_m, ref_s = fused["m1"], fused["s1"]
  err_m = {k: abs(float(m1[k]) - float(ref_m[k])) for k in ref_m}
  (mu, nu), (mu_ref, nu_ref) = _adam_moments(s1.opt_state), _adam_moments(ref_s.opt_state)
  grad_err = _max_err(mu, mu_ref) / (1 - OPT.b1)
  g_ref = jax.tree.map(lambda m: np.asarray(m) / (1 - OPT.b1), mu_ref)
  well = jax.tree.map(lambda p, q, g: float(np.max(np.abs(np.asarray(p) - np.asarray(q))[np.abs(g) > 1e-5],
                                                   initial=0.0)), s1.params, ref_s.params, g_ref)
  print(f"(2,2,2) vs 1 device: max |metric diff| {max(err_m.values()):.3g} ({max(err_m, key=err_m.get)}), "
        f"max |grad diff| {grad_err:.3g}, max |param diff| {_max_err(s1.params, ref_s.params):.3g} "
        f"(where |g| > 1e-5: {max(jax.tree.leaves(well)):.3g})")
  for k in ("answered", "searches", "turns", "response_tokens", "trained_tokens", "estimates", "invalid_turns",
            "reward", "reward_outcome", "reward_format", "reward_calibration", "reward_grounding", "adv_abs"):
    assert float(m1[k]) == float(ref_m[k]), (k, m1[k], ref_m[k])
  _assert_metrics_close(m1, ref_m, 1e-6, "(2,2,2) vs 1 device")
  np.testing.assert_array_equal(np.asarray(s1.rng), np.asarray(ref_s.rng))
  assert grad_err <= 1e-6, grad_err
  assert _max_err(nu, nu_ref) <= 1e-9
  assert max(jax.tree.leaves(well)) <= 1e-6, well
  assert _max_err(s1.params, ref_s.params) <= 1e-2 * OPT.learning_rate


# ------------------------------------------------------------------------------ 4. no host callback
def _primitives(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn.primitive.name
    for v in eqn.params.values():
      for x in (v if isinstance(v, (tuple, list)) else (v,)):
        inner = getattr(x, "jaxpr", None)
        if inner is not None:
          yield from _primitives(getattr(inner, "jaxpr", inner))


def test_fused_step_jaxpr_has_no_host_callback(env, fused):
  step = fused["step"]
  b = {k: jnp.asarray(v) for k, v in env["batch"].items()}
  with jax.set_mesh(env["mesh"]):
    jaxpr = jax.make_jaxpr(step.jitted)(fused["state0"], b, step.env)
  names = set(_primitives(jaxpr.jaxpr))
  # the walk reaches the nested bodies: the jit, the turn loop, the decode loop, the grads
  assert {"pjit", "while", "cond", "dot_general"} <= names or {"jit", "while", "cond", "dot_general"} <= names, \
      sorted(names)
  bad = sorted(n for n in names if "callback" in n or n in ("outside_call", "host_callback", "debug_print"))
  assert not bad, bad


# ------------------------------------------------------------------------------ 5. bad input
def _cli(capsys, *args) -> tuple[int, str]:
  from foresight_jax.train import cli_train
  rc = cli_train.main(["--config", "configs/fc_rl.py:tiny", "--config.workdir=/nonexistent/never_written",
                       *args, "--dry_run"])
  return rc, capsys.readouterr().err


@pytest.mark.parametrize("override,key", [
    ("--config.rl.group_size=1", "rl.group_size"),
    ("--config.rl.reward=foo", "rl.reward"),
    ("--config.rl.tool=grpc", "rl.tool"),
    ("--config.rl.temperature=0.0", "rl.temperature"),
    ("--config.rl.aggregation=median", "rl.aggregation"),
    ("--config.rl.tasks=2", "rl.tasks"),
    ("--config.rl.search_url=http://x", "rl.search_url"),
    ("--config.rl.search_k=0", "rl.search_k"),
    ("--config.rl.hops=(0,2)", "rl.hops"),
    ("--config.rl.max_turnz=3", "rl.max_turnz"),
])
def test_bad_rl_config_is_one_clear_error_naming_the_key(capsys, monkeypatch, override, key):
  monkeypatch.chdir(_root())
  rc, err = _cli(capsys, override)
  assert rc == 2, err
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], err
  assert "Traceback" not in err


def test_rows_not_divisible_by_the_mesh_name_the_keys(capsys, monkeypatch):
  monkeypatch.chdir(_root())
  # 3 prompts x 2 samples = 6 rows on data=8 (the 8 test devices)
  rc, err = _cli(capsys, "--config.rl.prompts_per_step=3", "--config.rl.group_size=2", "--config.mesh.data=-1")
  assert rc == 2, err
  assert "rl.prompts_per_step x rl.group_size = 6" in err and "mesh.data x mesh.fsdp = 8" in err, err


def test_prompt_longer_than_max_prompt_tokens_through_the_cli_exits_2(capsys, monkeypatch):
  monkeypatch.chdir(_root())
  rc, err = _cli(capsys, "--config.rl.max_prompt_tokens=16")
  assert rc == 2 and err.startswith("error: ") and "rl.max_prompt_tokens" in err, err


def _root():
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_corpus_that_does_not_fit_names_max_obs_tokens(env):
  docs = [d for w in env["worlds"] for d in w.docs[:20]]
  with pytest.raises(ValueError, match=r"max_obs_tokens=40 cannot hold a 3-doc observation: it needs \d+"):
    ds.build_index(docs, env["tok"], max_passage_tokens=48, max_obs_tokens=40)


def test_task_whose_world_is_missing(env):
  with pytest.raises(ValueError, match=r"tasks refer to worlds \[1\] that were not given"):
    T.TaskEnv.build(env["tasks"], env["tok"], worlds=env["worlds"][:1], chat=True, variant="full",
                    max_prompt_tokens=384, max_passage_tokens=48)


def test_prompt_longer_than_the_prompt_width_names_max_prompt_tokens(env):
  longest = int(env["e"].prompt_len.max())
  with pytest.raises(ValueError, match=rf"a prompt has {longest} tokens, more than the prompt width {longest - 1} "
                     r"\(rl.max_prompt_tokens\)"):
    T.TaskEnv.build(env["tasks"], env["tok"], worlds=env["worlds"], chat=True, variant="full",
                    max_prompt_tokens=longest - 1, max_passage_tokens=48)
  # exactly the longest prompt fits
  e = T.TaskEnv.build(env["tasks"], env["tok"], worlds=env["worlds"], chat=True, variant="full",
                      max_prompt_tokens=longest, max_passage_tokens=48)
  assert e.prompts.shape[1] == longest


def test_each_task_searches_its_own_world(env):
  """One index holds every world's pages; a task's search (its row's group) reads only its own
  world's (task.meta["world_seed"]), whichever world comes first in the index."""
  e, tok, tasks = env["e"], env["tok"], env["tasks"]
  seeds = [t.meta["world_seed"] for t in tasks]
  assert len(set(seeds)) == 2  # tasks of both worlds
  owner = np.asarray([w.seed for w in env["worlds"] for _ in w.docs])
  b = e.batch(range(len(tasks)), 1)
  for row, task in enumerate(b["task"]):
    q = np.asarray(tok.encode(tasks[task].question), np.int32)[None]
    ids, _ = ds.search(e.index, q, np.ones_like(q, bool), groups=b["groups"][row:row + 1])
    assert set(owner[np.asarray(ids)[0]]) == {seeds[task]}, (row, tasks[task].question)


def test_task_env_groups_rows_and_ends_turns_on_every_end_id(env):
  e, tok = env["e"], env["tok"]
  # GRPO's groups (`group_advantages` reshapes to [prompts, G]): each prompt's G rows side by side
  b = e.batch([3, 0], 2)
  assert b["task"].tolist() == [3, 3, 0, 0]
  np.testing.assert_array_equal(b["prompts"], e.prompts[[3, 3, 0, 0]])
  # a turn ends on an action's closing tag or on any of the tokenizer's end ids
  closing = {tok.encode(f"</{a}>")[0] for a in ("search", "calc", "answer")}
  assert len(tok.eos_ids) >= 1 and set(np.asarray(e.tools.stop_ids).tolist()) == closing | set(tok.eos_ids)
  # an invalid action reads the invalid-action message inside the observation's wrapping, as on the host
  pre, suf = T.observation_affixes(tok, True)
  assert tok.decode(np.asarray(e.tools.invalid).tolist()) == pre + invalid_message("search") + suf


def test_task_env_searches_return_the_worlds_search_k_docs(env):
  """The device index returns what the worlds' search returns (WorldConfig.search_k, set from
  rl.search_k): a one-document observation is narrower than three; worlds that disagree are an error."""
  one = [World(w.seed, dataclasses.replace(w.config, search_k=1)) for w in env["worlds"]]
  e1 = T.TaskEnv.build(env["tasks"], env["tok"], worlds=one, chat=True, variant="full",
                       max_prompt_tokens=384, max_passage_tokens=48)
  assert e1.index.topk == 1 and env["e"].index.topk == 3
  assert e1.index.max_obs_tokens < env["e"].index.max_obs_tokens
  with pytest.raises(ValueError, match=r"worlds disagree .*: \[1, 3\]"):
    T.TaskEnv.build(env["tasks"], env["tok"], worlds=[one[0], env["worlds"][1]], chat=True, variant="full",
                    max_prompt_tokens=384, max_passage_tokens=48)


# ------------------------------------------------------------------------------ 6. host-tool path
def _device_equal_tool(env):
  """A host tool returning exactly the device tool's docs (the affixes are added by the host path)."""
  e, tok = env["e"], env["tok"]
  pre, suf = T.observation_affixes(tok, True)
  n_pre, n_suf = len(tok.encode(pre)), len(tok.encode(suf))

  def tool(task, name, arg):
    assert name == "search"
    arg = np.asarray(arg, np.int32)[None]
    res = ds.search_observation(e.index, arg, np.ones_like(arg, bool), groups=np.asarray([e.groups[task]]))
    ids = np.asarray(res.obs)[0, :int(res.obs_len[0])]
    return ids[n_pre:len(ids) - n_suf]
  return tool


@pytest.fixture(scope="module")
def host(env):
  """make_host_step with a device-equal tool that records its calls and fails the tasks in `fail`."""
  t0 = time.time()
  calls, fail = [], {}
  tool = _device_equal_tool(env)

  def recording(task, name, arg):
    calls.append(task)
    if fail.get(task):
      raise ConnectionError("search server down")
    return tool(task, name, arg)
  step = rl_train.make_host_step(env["cfg"], env["tx"], env["sched"], env["mesh"], env["shardings"], env["e"],
                                 env["env_arrays"], RLCFG, env["tok"], recording, 30.0)
  print(f"host step built: {time.time() - t0:.1f}s")
  return dict(step=step, calls=calls, fail=fail, tool=tool)


@pytest.mark.slow
def test_host_tool_step_equals_the_fused_step(env, fused, host):
  """From the initial state (attention off: a bigram policy) and from the state after one update
  (attention on, so the observations the tool returned enter the log-probs of later turns)."""
  for start, (want_s, want_m) in (("state0", ("s1", "m1")), ("s1", ("s2", "m2"))):
    t0 = time.time()
    host["fail"].clear()
    host["calls"].clear()
    s_h, m_h = host["step"](_copy(fused[start]), env["batch"])  # the host step donates its state
    m_h = jax.device_get(m_h)
    want = fused[want_m]
    assert float(m_h["tool_failures"]) == 0 and len(host["calls"]) == round(float(want["searches"]) * len(
        env["batch"]["task"]))  # one host call per device search
    assert set(m_h) == set(want) | {"tool_failures"}
    err = max(abs(float(m_h[k]) - float(want[k])) for k in want)
    print(f"host vs fused from {start} ({time.time() - t0:.1f}s): max |metric diff| {err:.3g}, "
          f"max |param diff| {_max_err(s_h.params, fused[want_s].params):.3g}")
    _assert_metrics_close(m_h, want, 1e-6, f"host vs fused from {start}")
    _assert_states_close(s_h, fused[want_s], 1e-6, f"host vs fused from {start}")


@pytest.mark.slow
def test_failing_host_tool_zeroes_its_rows_and_is_counted(env, fused, host):
  e, tok, cfg = env["e"], env["tok"], env["cfg"]
  failing = PROMPTS[1]  # every search of this task's rows fails
  host["fail"].clear()
  host["fail"][failing] = True
  host["calls"].clear()
  state0 = fused["state0"]
  s_h, m_h = host["step"](_copy(state0), env["batch"])
  m_h = jax.device_get(m_h)
  n_failed = host["calls"].count(failing)  # a row whose call fails ends there: one call per failed row
  assert n_failed > 0, "no row of the failing task searched; pick another key or task"
  assert float(m_h["tool_failures"]) == n_failed, (m_h["tool_failures"], n_failed)
  assert m_h["nonfinite"] == 0 and np.asarray(s_h.step) == 1  # the run goes on

  # the same rollout (same key, same tool) scored directly: failed rows earn 0, the others their reward
  _, k_roll, _ = jax.random.split(jax.random.wrap_key_data(state0.rng), 3)  # as make_host_step splits
  b = env["batch"]
  pre, suf = T.observation_affixes(tok, True)
  ro, failed = host_tools.rollout_host(cfg, state0.params, b["prompts"], b["prompt_len"], k_roll,
                                       _failing(host["tool"], failing), e.tools,
                                       host_tools.tool_tag_ids(tok, ("search",)), b["task"],
                                       (tok.encode(pre), tok.encode(suf)), RLCFG.rollout,
                                       obs_width=e.index.max_obs_tokens)
  assert failed.sum() == n_failed and (b["task"][failed] == failing).all()
  r, _, _ = jax.jit(functools.partial(rw.compute_rewards, weights=RLCFG.weight_dict, variant=RLCFG.variant,
                                      spec=RLCFG.spec))(ro.tokens, ro.kind, ro.turn,
                                                        rw.Golds(b["gold_chars"], b["gold_len"]), b["is_math"],
                                                        env["env_arrays"].tables)
  r = np.asarray(r)
  assert (r[failed] > 0).any()  # a failed row whose turn had a foresight block would have earned reward
  np.testing.assert_allclose(m_h["reward"], np.where(failed, 0.0, r).mean(), rtol=1e-6)
  assert abs(float(m_h["reward"]) - r.mean()) > 1e-3
  # and the advantages saw the zeros: a group with a failure is no longer what it was
  adv = np.asarray(grpo.group_advantages(jnp.asarray(np.where(failed, 0.0, r)), GROUP))
  np.testing.assert_allclose(m_h["adv_abs"], np.abs(adv).mean(), rtol=1e-5)


def _failing(tool, task_id):
  def f(task, name, arg):
    if task == task_id:
      raise ConnectionError("search server down")
    return tool(task, name, arg)
  return f
