"""The multi-turn rollout: device path (one jit, search in the graph) against the grammar of a
scripted agent, against the device search tool, and against the host-tool path."""
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _scripted_policy import scripted_agent
from foresight_jax.data.generate import GenConfig, generate, make_worlds
from foresight_jax.data.render import render_prompt
from foresight_jax.rl import device_search as ds
from foresight_jax.rl import host_tools, rollout as R, tasks as T
from foresight_jax.rl.layout import KIND_GEN, KIND_OBS, KIND_PAD, KIND_PROMPT

RCFG = R.RolloutConfig(max_turns=3, max_turn_tokens=24, temperature=1.0)


@pytest.fixture(scope="module")
def env():
  gcfg = GenConfig(seed=0, n_worlds=2, math_fraction=0.0)
  worlds = make_worlds(gcfg)
  tasks = [t.task for t in generate(gcfg, 6, worlds=worlds)]
  query = worlds[0].docs[3][0].split()[0]
  texts = tuple(d for w in worlds for _, d in w.docs[:40]) + tuple(render_prompt(t) for t in tasks) * 3
  cfg, params, tok = scripted_agent(query, "Paris", texts)
  e = T.TaskEnv.build(tasks, tok, worlds=worlds, chat=True, variant="full", max_prompt_tokens=384,
                      max_passage_tokens=48)
  return cfg, params, tok, e


def _batch(e, group=2):
  b = e.batch(range(len(e.tasks)), group)
  return {k: jnp.asarray(v) for k, v in b.items()}


def _device(cfg, params, e, b, key):
  fn = jax.jit(lambda p, k: R.rollout(cfg, p, b["prompts"], b["prompt_len"], k, e.index, e.tools, b["groups"], RCFG))
  return jax.device_get(fn(params, key))


def test_device_rollout_follows_the_grammar_and_reads_the_device_tool(env):
  cfg, params, tok, e = env
  b = _batch(e)
  out = _device(cfg, params, e, b, jax.random.key(0))
  allowed = {"<think>plan</think><search>Q</search>", "<think>plan</think><answer>Paris</answer>",
             "<think>plan</think><foresight><rollout>1.</rollout><success>0.5</success></foresight><search>Q</search>",
             "<think>plan</think><foresight><rollout>1.</rollout><success>0.5</success></foresight><answer>Paris</answer>"}
  query_word = None
  kinds_seen = set()
  for r in range(out.tokens.shape[0]):
    n = int(out.length[r])
    kind, turn, toks = out.kind[r], out.turn[r], out.tokens[r]
    assert (kind[n:] == KIND_PAD).all() and (kind[:n] != KIND_PAD).all()
    p = int(b["prompt_len"][r])
    np.testing.assert_array_equal(toks[:p], np.asarray(b["prompts"][r])[-p:])
    assert (kind[:p] == KIND_PROMPT).all() and (turn[:p] == -1).all()
    for t in range(int(out.n_turns[r])):
      gen = toks[(kind == KIND_GEN) & (turn == t)]
      text = tok.decode(gen)
      q = text.split("<search>")[1].split("</search>")[0] if "<search>" in text else None
      query_word = query_word or q
      assert text.replace(q or "\x00", "Q") in allowed, text
      obs = toks[(kind == KIND_OBS) & (turn == t)]
      kinds_seen.add("search" if q else "answer")
      if q is None:
        assert obs.size == 0 and bool(out.answered[r]) and t == int(out.n_turns[r]) - 1
        continue
      qids = np.asarray(tok.encode(q))[None]
      ref = ds.search_observation(e.index, qids, np.ones_like(qids, bool), groups=b["groups"][r:r + 1])
      np.testing.assert_array_equal(obs, np.asarray(ref.obs)[0, :int(ref.obs_len[0])])
      assert tok.decode(obs).startswith("<|end|>\n<|tool|>\n<information>Doc 1(Title:")
    assert int(out.searches[r]) + int(out.answered[r]) == int(out.n_turns[r])
    logp = out.logprobs[r]
    assert (logp[kind != KIND_GEN] == 0).all() and (logp[kind == KIND_GEN] <= 0).all()
  assert kinds_seen == {"search", "answer"} and out.answered.any() and not out.answered.all()


def test_turn_query_is_the_host_tools_rule(env):
  """Which turns search, with which ids: the device rule (`turn_query`) against host_tools'
  list version, on turns the scripted agent never writes (blank or missing queries, two
  <search> tags, a query that ends the budget unclosed, an answer)."""
  _, _, tok, e = env
  t = lambda x: tok.encode(x)[0]  # noqa: E731
  so, sc, ac = t("<search>"), t("</search>"), t("</answer>")
  blank = int(np.nonzero(np.asarray(e.tools.blank))[0][0])
  q, w = tok.encode("Paris")[0], t("plan")
  turns = [[t("<think>"), w, t("</think>"), so, q, sc], [so, blank, sc], [so, sc], [so, blank, blank, sc],
           [so, w, so, q, blank, sc], [so, q, so, blank, sc], [w, q, sc], [so, q], [t("<answer>"), q, ac],
           [so, q, sc, w], [], [sc]]
  n = max(map(len, turns))
  gen = np.array([x + [0] * (n - len(x)) for x in turns], np.int32)
  glen = np.array([len(x) for x in turns], np.int32)
  mask, has = jax.device_get(jax.jit(R.turn_query)(gen, glen, e.tools))
  tags = {"search": (so, sc)}
  want = [host_tools._turn_action(x, ac, tags, np.asarray(e.tools.blank)) for x in turns]
  for i, (x, (action, arg)) in enumerate(zip(turns, want)):
    searches = bool(has[i]) and glen[i] > 0 and x[-1] == sc  # rollout()'s is_search
    assert searches == (action == "search"), (i, x, action)
    if searches:
      assert gen[i][mask[i]].tolist() == arg, (i, x)
  assert [a for a, _ in want] == ["search", "invalid", "invalid", "invalid", "search", "invalid", "invalid",
                                  "invalid", "answer", "invalid", "invalid", "invalid"]
  assert gen[4][mask[4]].tolist() == [q, blank] and gen[0][mask[0]].tolist() == [q]


def test_no_host_callback_in_the_device_rollout(env):
  cfg, params, tok, e = env
  b = _batch(e)
  jaxpr = jax.make_jaxpr(lambda p, k: R.rollout(cfg, p, b["prompts"], b["prompt_len"], k, e.index, e.tools,
                                                 b["groups"], RCFG))(params, jax.random.key(0))

  def prims(j):
    for eqn in j.eqns:
      yield eqn.primitive.name
      for sub in jax.core.jaxprs_in_params(eqn.params) if hasattr(jax.core, "jaxprs_in_params") else ():
        yield from prims(sub)
      for v in eqn.params.values():
        for x in (v if isinstance(v, (tuple, list)) else (v,)):
          inner = getattr(x, "jaxpr", None)
          if inner is not None:
            yield from prims(getattr(inner, "jaxpr", inner))
  names = set(prims(jaxpr.jaxpr))
  assert "while" in names and not any("callback" in n for n in names), sorted(names)


def _device_tool(e, b):
  """A host tool returning exactly the device tool's docs (affixes stripped)."""
  pre, suf = T.observation_affixes(e_tok(e), True)
  n_pre, n_suf = len(e_tok(e).encode(pre)), len(e_tok(e).encode(suf))

  def tool(task, name, arg):
    arg = np.asarray(arg, np.int32)[None]
    res = ds.search_observation(e.index, arg, np.ones_like(arg, bool), groups=np.asarray([e.groups[task]]))
    ids = np.asarray(res.obs)[0, :int(res.obs_len[0])]
    return ids[n_pre:len(ids) - n_suf]
  return tool, (e_tok(e).encode(pre), e_tok(e).encode(suf))


_TOK = {}


def e_tok(e):
  return _TOK[id(e)]


def _host(env, b, tool, key=0, tags=("search",), **kw):
  """`rollout_host` over the env's batch `b` with `tool` (and the device tool's affixes)."""
  cfg, params, tok, e = env
  _TOK[id(e)] = tok
  kw.setdefault("obs_width", e.index.max_obs_tokens)
  return host_tools.rollout_host(cfg, params, np.asarray(b["prompts"]), np.asarray(b["prompt_len"]),
                                 jax.random.key(key), tool, e.tools, host_tools.tool_tag_ids(tok, tags),
                                 np.asarray(b["task"]), _device_tool(e, b)[1], RCFG, **kw)


def _fetched_docs(env, b):
  """Each task's device-tool docs, fetched before a rollout: the tool's first jitted call (a compile)
  would otherwise count against a tool timeout."""
  _, _, tok, e = env
  _TOK[id(e)] = tok
  tool = _device_tool(e, b)[0]
  return {int(t): tool(int(t), "search", tok.encode(" Paris")) for t in set(np.asarray(b["task"]).tolist())}


def test_device_path_equals_host_tool_path(env):
  cfg, params, tok, e = env
  _TOK[id(e)] = tok
  b = _batch(e)
  dev = _device(cfg, params, e, b, jax.random.key(3))
  host, failed = _host(env, b, _device_tool(e, b)[0], key=3)
  assert not failed.any()
  for f in ("tokens", "kind", "turn", "length", "n_turns", "answered", "searches", "invalid"):
    np.testing.assert_array_equal(np.asarray(getattr(host, f)), np.asarray(getattr(dev, f)), err_msg=f)
  np.testing.assert_allclose(host.logprobs, dev.logprobs, atol=1e-6)


def test_failing_tool_fails_only_its_rows(env, caplog):
  _, _, tok, e = env
  _TOK[id(e)] = tok
  b = _batch(e)
  tool = _device_tool(e, b)[0]

  def flaky(task, name, arg):
    if task == 1:
      raise ConnectionError("search server down")
    return tool(task, name, arg)
  with caplog.at_level(logging.WARNING):
    out, failed = _host(env, b, flaky, task_names=[t.id for t in e.tasks])
  rows_task1 = np.asarray(b["task"]) == 1
  assert failed[rows_task1 & ~out.answered].all() and not failed[~rows_task1].any()
  if failed.any():
    assert e.tasks[1].id in caplog.text and "search server down" in caplog.text


def test_slow_failed_and_overlong_tool_calls(env, caplog):
  """A tool slower than `timeout_s` fails its row like one that raises, and a failed row's episode
  ends at that turn (no observation, no later turn); an observation longer than `obs_width` is cut
  to it and keeps its closing affix."""
  _, _, tok, e = env
  _TOK[id(e)] = tok
  b = _batch(e)
  pre, suf = (list(a) for a in _device_tool(e, b)[1])
  width = max(len(np.asarray(e.tools.invalid)), len(pre) + len(suf) + 6)
  docs = _fetched_docs(env, b)

  def slow_or_long(task, name, arg):
    if task == 1:
      time.sleep(1.5)
    return np.tile(docs[task], 4)  # several times the width
  with caplog.at_level(logging.WARNING):
    out, failed = _host(env, b, slow_or_long, obs_width=width, timeout_s=0.5, task_names=[t.id for t in e.tasks])
  task = np.asarray(b["task"])
  assert failed.any() and set(task[failed]) == {1}, (task, failed)
  fails = [m for m in caplog.messages if m.startswith("tool call failed")]
  assert len(fails) == failed.sum() and all(f"task {e.tasks[1].id} " in m for m in fails), fails
  assert all(m.endswith("no answer within 0.5 s") for m in fails), fails
  cut = 0
  for r in range(len(task)):
    kind, turn, toks = out.kind[r], out.turn[r], out.tokens[r]
    last = int(out.n_turns[r]) - 1
    if failed[r]:  # ends with the generated turn whose call failed: nothing observed, no later turn
      live = kind != KIND_PAD
      assert kind[live][-1] == KIND_GEN and turn[live][-1] == last and not out.answered[r]
      assert not ((kind == KIND_OBS) & (turn == last)).any() and int(out.searches[r]) == last
      continue
    for t in range(last + 1):
      obs = toks[(kind == KIND_OBS) & (turn == t)].tolist()
      if obs and obs != np.asarray(e.tools.invalid).tolist():
        assert len(obs) == width and obs[:len(pre)] == pre and obs[-len(suf):] == suf, (r, t, obs)
        cut += 1
  assert cut > 0


def test_tool_tags_are_single_tokens_both_ways():
  class Tok:  # "<calc>" is one piece, "</calc>" two: the calculator cannot be served
    def encode(self, text):
      return {"<search>": [5], "</search>": [6], "<calc>": [7], "</calc>": [8, 9]}.get(text, [1, 2, 3])
  assert host_tools.tool_tag_ids(Tok(), ("search", "calc", "answer")) == {"search": (5, 6)}


def test_a_hung_tool_fails_every_calling_row_after_one_timeout(env):
  """Every call of the turn hangs for 1.5 s against `timeout_s=0.4`: the turn's calls run side by side
  under one deadline, so all of them fail. (Waiting row by row, each with a fresh 0.4 s, the fourth
  row waited on would find its call done at 1.5 s and go on.)"""
  b = _batch(env[3])
  docs = _fetched_docs(env, b)

  def hung(task, name, arg):
    time.sleep(1.5)
    return docs[task]
  out, failed = _host(env, b, hung, timeout_s=0.4)
  called = ~out.answered & (out.invalid == out.n_turns - 1) & (out.n_turns > 0)
  assert called.sum() >= 4 and (failed == called).all(), (failed, called, out.n_turns, out.invalid)
  assert (out.searches == 0).all()


def test_a_tool_the_host_does_not_serve_is_an_invalid_action(env):
  """With no tool served, every turn that closes </search> gets the invalid-action message as its
  observation and is counted in `invalid`, never in `searches`, and the tool is never called."""
  _, _, tok, e = env
  b = _batch(e)

  def never(task, name, arg):
    raise AssertionError("a tool the host does not serve was called")
  out, failed = _host(env, b, never, tags=())
  invalid, close = np.asarray(e.tools.invalid).tolist(), tok.encode("</search>")[0]
  total = 0
  for r in range(len(failed)):
    kind, turn, toks = out.kind[r], out.turn[r], out.tokens[r]
    n = 0
    for t in range(int(out.n_turns[r])):
      gen = toks[(kind == KIND_GEN) & (turn == t)]
      obs = toks[(kind == KIND_OBS) & (turn == t)].tolist()
      if gen[-1] == close:
        n += 1
        assert obs == invalid, (r, t)
    assert int(out.invalid[r]) == n and int(out.searches[r]) == 0
    total += n
  assert total > 0 and not failed.any()
