"""Evaluation loop, receipts, metrics and report with scripted "models" (no network, no JAX)."""
import json
import random

import pytest

from foresight_jax.data.math_tasks import calc, sample_math_task
from foresight_jax.data.render import render_block, render_observation, render_prompt
from foresight_jax.data.world import RELATIONS, World
from foresight_jax.evals import agent as A
from foresight_jax.evals import metrics as M
from foresight_jax.evals import receipts as R
from foresight_jax.evals import report

WORLD = World(seed=11)
STEP_KEYS = {"kind", "receipt_version", "run", "task_id", "step", "text", "stop_reason",
             "forecast", "success", "action", "invalid", "observation", "observation_chars",
             "observation_sha256", "grounding", "grounding_f1", "format_ok", "format_problems"}
EPISODE_KEYS = {"kind", "receipt_version", "run", "task_id", "domain", "question", "answers",
                "answer", "outcome", "success_estimates", "n_steps", "ended", "format_ok",
                "format_spec", "answer_match"}


def turn(tool, arg, expect="something", success=0.5, thought="planning", block=True):
  text = f"<think> {thought} </think>\n"
  if block:
    act = "answer" if tool == "answer" else f'{tool} "{arg}"'
    text += render_block([f"{act} -> {expect}"], success)
  return text + f"<{tool}> {arg} </{tool}>"


class Script:
  """A fake generate function: per task id, a list of turns (strings, Generations, or
  callables of the context); records every call so batching can be checked."""

  def __init__(self, tasks, turns, variant="full"):
    self.by_prompt = {render_prompt(t, variant): t.id for t in tasks}
    self.turns, self.calls = turns, []

  def __call__(self, contexts, *, stop, max_new_tokens, seed):
    self.calls.append({"ids": [self.by_prompt[c[0]] for c in contexts], "stop": tuple(stop),
                       "max_new_tokens": max_new_tokens, "seed": seed,
                       "contexts": [list(c) for c in contexts]})
    out = []
    for c in contexts:
      script = self.turns[self.by_prompt[c[0]]]
      k = (len(c) - 1) // 2  # segments: prompt, then (turn, observation) pairs
      g = script[min(k, len(script) - 1)]
      g = g(c) if callable(g) else g
      out.append(g if isinstance(g, A.Generation) else A.Generation(g))
    return out


@pytest.fixture(scope="module")
def search_task():
  return WORLD.sample_question(random.Random(0), 2, "q0")


@pytest.fixture(scope="module")
def math_task():
  return sample_math_task(random.Random(1), "m0", family="lcm_gcd")


def expert_turns(task):
  """A perfect forecaster: it peeks at the environment, so each expectation IS the observation."""
  if task.domain == "math":
    plan, values = task.meta["plan"], task.meta["values"]
    exprs, prev = [], []
    for st in plan:
      exprs.append(st["fmt"].format(**{f"v{i}": v for i, v in enumerate(prev)}))
      prev.append(int(calc(exprs[-1])))
    return [turn("calc", e, calc(e), 0.7 + 0.05 * i) for i, e in enumerate(exprs)] + [
        turn("answer", f"\\boxed{{{values[-1]}}}", values[-1], 0.9)]
  path, rels = task.meta["path"], task.meta["relations"]
  qs = [f"{path[i]} {RELATIONS[r].keyword}" for i, r in enumerate(rels)]
  return [turn("search", q, WORLD.search_text(q, 3), 0.6) for q in qs] + [
      turn("answer", path[-1], path[-1], 0.85)]


def run(tasks, turns, **cfg):
  script = Script(tasks, turns, cfg.get("variant", "full"))
  eps = A.run_agent(tasks, script, A.make_tool_fn([WORLD]), A.AgentConfig(**cfg))
  return eps, script


# ---------------------------------------------------------------------------------------------
# The loop


def test_loop_executes_tools_and_stops(search_task, math_task):
  tasks = [search_task, math_task]
  turns = {t.id: expert_turns(t) for t in tasks}
  # a model that runs past its stop string, into another action: the loop cuts at the first one
  turns["q0"][0] = turns["q0"][0] + "\n<think> I should not be here </think>\n<answer> wrong </answer>"
  # copying a whole top-3 result (~120 words) into the rollout needs a longer rollout cap
  eps, script = run(tasks, turns, rollout_max_tokens=256)
  s, m = eps
  assert [len(c["ids"]) for c in script.calls] == [2, 2, 2, 1]  # search: 3 turns, math: 4
  assert all(c["stop"] == A.STOP_STRINGS for c in script.calls)
  q = f"{search_task.meta['path'][0]} {RELATIONS[search_task.meta['relations'][0]].keyword}"
  assert s.turns[0].action == ("search", q) and s.turns[0].text.endswith("</search>")
  assert s.turns[0].observation == WORLD.search_text(q, 3)
  # the observation is appended in Search-R1's wrapper, after the turn text
  ctx = script.calls[1]["contexts"][0]
  assert ctx == [render_prompt(search_task, "full"), s.turns[0].text,
                 render_observation(s.turns[0].observation)]
  assert ctx[2].startswith("\n\n<information>Doc 1(Title: ")
  assert ctx[2].endswith("</information>\n\n")
  assert m.turns[0].observation == str(math_task.meta["values"][0])
  for ep in eps:
    assert ep.ended == "answer" and ep.score == 1.0 and ep.format_ok
    assert ep.turns[-1].observation is None and ep.turns[-1].grounding is None
    # perfect forecasts: precision 1 on search; a math forecast is a number, and digits-only
    # words are not content (design.md §3), so math grounding is 0 by construction
    want = 1.0 if ep.task.domain == "search" else 0.0
    assert all(t.grounding == want for t in ep.turns[:-1]), [t.grounding for t in ep.turns]
    assert all(t.grounding_f1 > 0 for t in ep.turns[:-1])
  assert s.answer == search_task.answers[0] and m.answer.startswith("\\boxed{")
  assert len({c["seed"] for c in script.calls}) == len(script.calls)


def test_finished_rows_drop_out(search_task, math_task):
  turns = {"q0": [turn("answer", "nobody")],
           "m0": [turn("calc", "1 + 1")] * 2 + [turn("answer", "\\boxed{2}")]}
  eps, script = run([search_task, math_task], turns)
  assert [c["ids"] for c in script.calls] == [["q0", "m0"], ["m0"], ["m0"]]
  assert [len(e.turns) for e in eps] == [1, 3]
  assert eps[0].score == 0.0 and eps[0].answer == "nobody" and eps[0].ended == "answer"


def test_invalid_actions(search_task, math_task):
  msg = A.invalid_message("search")
  assert "my previous action is invalid" in msg.lower() and "<search>" in msg
  assert "<calc>" in A.invalid_message("math")
  turns = {"q0": [A.Generation("<think> rambling on and on", "length"),  # no action at all
                  turn("calc", "1 + 1"),                                   # wrong tool
                  "<think> x </think>\n<search>  </search>",               # empty query
                  turn("answer", search_task.answers[0])]}
  eps, script = run([search_task], turns)
  ep = eps[0]
  assert [t.invalid for t in ep.turns] == [True, True, True, False]
  assert [t.observation for t in ep.turns[:3]] == [msg] * 3
  assert ep.turns[0].action is None and ep.turns[0].stop_reason == "length"
  assert ep.turns[1].action == ("calc", "1 + 1")
  assert script.calls[1]["contexts"][0][-1] == render_observation(msg)
  assert ep.score == 1.0 and not ep.format_ok  # right answer, broken format: reported apart
  assert ep.turns[0].grounding == 0.0  # no block: 0


def test_max_turns(search_task):
  q = search_task.meta["path"][0]
  eps, script = run([search_task], {"q0": [turn("search", q)]}, max_turns=3, max_new_tokens=77)
  ep = eps[0]
  assert len(script.calls) == 3 and all(c["max_new_tokens"] == 77 for c in script.calls)
  assert ep.ended == "max_turns" and ep.answer is None and ep.score == 0.0
  assert len(ep.turns) == 3 and ep.turns[-1].observation == WORLD.search_text(q, 3)
  assert not ep.format_ok and all(t.format_ok for t in ep.turns)  # turns fine, no answer
  with pytest.raises(ValueError):
    A.run_agent([search_task], script, A.make_tool_fn([WORLD]), A.AgentConfig(max_turns=0))


def test_a_repeated_rollout_or_success_is_read_once_the_first_as_the_rewards_read_it():
  """Two <rollout>s and two <success> pairs break the grammar, but the turn still forecast something:
  the evaluation (parse_turn, grounding, the receipt's forecast) reads the FIRST of each, as the
  in-graph rewards and their host oracle do, so the table and the RL reward score the same claim."""
  from foresight_jax.data.render import parse_turn
  from foresight_jax.evals import rewards_host as H
  text = ('<think> x </think>\n<foresight>\n<rollout>\n1. search "a" -> Alpha Vale\n</rollout>\n'
          '<rollout>\n1. search "b" -> Beta Ridge\n</rollout>\n<success>0.20</success>\n'
          '<success>0.90</success>\n</foresight>\n<search> a </search>')
  p = parse_turn(text, "full")
  assert p.problems and p.success == 0.2 == H.success_estimate(text)
  assert p.rollout[0].expect == "Alpha Vale" == M.step1_expectation(text)
  assert R.rollout_body(text) == '1. search "a" -> Alpha Vale'
  obs = "Doc 1(Title: Alpha Vale) a town in the north."
  turn = A.record_turn(1, text, "stop", p.success, ("search", "a"), False, obs, M.FormatSpec())
  assert turn.grounding == M.grounding_score("Alpha Vale", obs) == 1.0 and not turn.format_ok
  # a first <success> that is no probability leaves the turn without an estimate, as in-graph
  worse = text.replace("<success>0.20</success>", "<success>high</success>")
  assert parse_turn(worse, "full").success is None and H.success_estimate(worse) is None


# ---------------------------------------------------------------------------------------------
# Receipts


def test_receipts_complete(tmp_path, search_task, math_task):
  tasks = [search_task, math_task]
  script = Script(tasks, {t.id: expert_turns(t) for t in tasks})
  path = tmp_path / "r.jsonl"
  eps, live = A.evaluate(tasks, script, A.make_tool_fn([WORLD]), receipts_path=path, run="x",
                         max_obs_chars=40, cfg=A.AgentConfig(rollout_max_tokens=256))
  recs = R.read_receipts(path)
  assert len(recs) == sum(len(e.turns) + 1 for e in eps)
  steps = [r for r in recs if r["kind"] == "step"]
  for r in steps:
    assert set(r) == STEP_KEYS and r["run"] == "x"
    assert r["forecast"].startswith("1. ") and r["success"] is not None
  for (st, ep_r), ep in zip(R.group_episodes(recs), eps):
    assert set(ep_r) == EPISODE_KEYS
    assert ep_r["outcome"] == 1.0 and ep_r["success_estimates"] == ep.success_estimates
    assert [s["step"] for s in st] == list(range(1, len(ep.turns) + 1))
    for s, t in zip(st, ep.turns):
      if t.observation is None:
        assert s["action"]["tool"] == "answer" and s["observation_sha256"] is None
      else:
        assert s["observation"] == t.observation[:40]
        assert s["observation_chars"] == len(t.observation)
        assert s["observation_sha256"] == R.sha256(t.observation)
  search_obs = steps[0]
  assert search_obs["observation_chars"] > 40  # this one really was truncated
  with pytest.raises(ValueError, match="without an episode"):
    R.group_episodes(steps)
  # steps that arrive out of order come back in order; a step count that disagrees with the
  # episode receipt's is an error, never a silently shorter episode
  closing = [r for r in recs if r["kind"] == "episode"]
  assert max(r["n_steps"] for r in closing) >= 2
  grouped = R.group_episodes(steps[::-1] + closing)
  assert [[s["step"] for s in st] for st, _ in grouped] == [list(range(1, r["n_steps"] + 1)) for r in closing]
  assert [st for st, _ in grouped] == [st for st, _ in R.group_episodes(recs)]
  with pytest.raises(ValueError, match=f"{len(eps[0].turns) - 1} step receipts, expected {len(eps[0].turns)}"):
    R.group_episodes(steps[1:] + closing)


# ---------------------------------------------------------------------------------------------
# Metrics


def test_token_f1_and_grounding():
  assert M.token_f1("The Brelland!", "brelland") == 1.0
  assert M.token_f1("born in Varnholm", "Varnholm") == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))
  assert M.token_f1("", "") == 1.0 and M.token_f1("x", "") == 0.0
  assert M.grounding_score(None, "anything") == 0.0
  # precision with clipped counts over content words (stopwords and digits-only words dropped)
  assert M.token_precision("The mayor of Varnholm is Vabro", "Vabro is mayor") == pytest.approx(2 / 3)
  assert M.token_precision("Vabro Vabro", "Vabro") == 0.5 and M.token_precision("of the 12", "x") == 0.0
  assert M.grounding_score("mayor Vabro", "the mayor is Vabro Krashe") == 1.0
  assert M.grounding_f1("mayor Vabro", "the mayor is Vabro Krashe") < 1.0
  full = turn("search", "q", expect="a passage about Varnholm")
  assert M.step1_expectation(full) == "a passage about Varnholm"
  assert M.step1_expectation("<think> t </think>\n<search> q </search>") is None
  assert M.step1_expectation("<think> t </think>\n<foresight>\n<rollout>\nno steps\n</rollout>\n"
                             "</foresight>\n<search> q </search>") is None


def test_calibration_known_numbers():
  c = M.calibration([0.9, 0.8, 0.2], [1, 1, 0])
  assert c["n_estimates"] == 3
  assert c["brier"] == pytest.approx((0.01 + 0.04 + 0.04) / 3)
  assert c["ece"] == pytest.approx((0.1 + 0.2 + 0.2) / 3)  # three singleton bins
  assert c["ece"] == pytest.approx(M.calibration([0.9, 0.8, 0.2], [1, 1, 0], n_bins=10)["ece"])
  assert M.calibration([0.65, 0.61], [1, 0])["ece"] == pytest.approx(abs(0.63 - 0.5))  # one bin
  assert M.calibration([], [])["brier"] is None


def test_metrics_on_handmade_episodes(search_task, math_task):
  q = search_task.meta["path"][0]
  turns = {"q0": [turn("search", q, success=0.9),       # block, poor forecast
                  turn("search", q, block=False),        # missing block: grounding 0
                  turn("answer", search_task.answers[0], success=0.8)],
           "m0": [turn("answer", "\\boxed{999999}", success=0.2)]}
  eps, _ = run([search_task, math_task], turns)
  m = M.metrics_from_episodes(eps, M.FormatSpec())
  assert m.n_episodes == 2 and m.n_turns == 4
  assert m.format_turn == 0.75 and m.format_episode == 0.5
  assert m.n_grounded == 2 and eps[0].turns[1].grounding == 0.0
  assert m.grounding == pytest.approx(eps[0].turns[0].grounding / 2)
  assert m.accuracy == 0.5 and m.n_estimates == 3
  assert m.brier == pytest.approx((0.01 + 0.04 + 0.04) / 3)
  assert m.ece == pytest.approx(0.5 / 3)
  # the 'state' variant rejects a success estimate: same turns, format drops, estimates remain
  ms = M.metrics_from_episodes(eps, M.FormatSpec(variant="state"))
  assert ms.format_turn == 0.0 and ms.n_estimates == 3


@pytest.mark.parametrize("max_obs_chars", [100_000, 30])
def test_recompute_from_receipts_equals_live(tmp_path, search_task, math_task, max_obs_chars):
  tasks = [search_task, math_task, WORLD.sample_question(random.Random(5), 1, "q1")]
  q = search_task.meta["path"][0]
  turns = {t.id: expert_turns(t) for t in tasks}
  turns["q0"] = [turn("search", q, "Varnholm was born", 0.55), A.Generation("<think> oops", "eos"),
                 turn("search", q, block=False), turn("search", "x", "y", 0.4)]  # max turns
  turns["q1"][-1] = turn("answer", "wrong", success=0.3)
  path = tmp_path / "r.jsonl"
  eps, live = A.evaluate(tasks, Script(tasks, turns), A.make_tool_fn([WORLD]),
                         receipts_path=path, run="a", max_obs_chars=max_obs_chars)
  assert live == M.metrics_from_receipts(path)
  assert live == M.metrics_from_receipts(R.read_receipts(path), run="a")
  assert 0 < live.grounding < 1 and 0 < live.accuracy < 1 and 0 < live.format_turn < 1
  # a second run appended to the same file is kept apart
  A.evaluate(tasks[:1], Script(tasks[:1], turns), A.make_tool_fn([WORLD]), receipts_path=path,
             run="b", append=True)
  assert M.metrics_from_receipts(path, run="a") == live
  assert M.metrics_from_receipts(path, run="b").n_episodes == 1


# ---------------------------------------------------------------------------------------------
# Report


def test_report_table_and_json(tmp_path):
  a = M.EvalMetrics(n_episodes=10, n_turns=25, format_turn=0.96, format_episode=0.9,
                    grounding=0.41, n_grounded=15, brier=0.18, ece=0.07, n_estimates=25,
                    base_rate=0.4, accuracy=0.4, held_out_loss=1.234)
  b = dict(a.to_dict(), grounding=0.12, brier=0.24, ece=0.11, accuracy=0.35, held_out_loss=None)
  runs = {"WM-AMT+FE-SFT": a, "standard mid-training+FE-SFT": b}
  text = report.write_comparison(runs, tmp_path / "cmp.json", tmp_path / "cmp.txt")
  lines = text.splitlines()
  assert lines[0].split()[0] == "run"
  assert "Brier (↓)" in lines[0] and "grounding (↑)" in lines[0]
  assert lines[2].startswith("WM-AMT+FE-SFT") and lines[3].startswith("standard mid-training")
  assert "0.410*" in lines[2] and "0.1800*" in lines[2] and "1.2340" in lines[2]
  assert " - " in lines[3] + " "  # held-out loss not measured: a dash, not a number
  data = json.loads((tmp_path / "cmp.json").read_text())
  assert [r["run"] for r in data["rows"]] == list(runs)
  assert data["best"]["brier"] == ["WM-AMT+FE-SFT"] and data["rows"][1]["held_out_loss"] is None
  assert data["metrics"]["WM-AMT+FE-SFT"]["n_grounded"] == 15
  assert (tmp_path / "cmp.txt").read_text().strip() == text
  nan = dict(b, held_out_loss=float("nan"))
  one = report.write_comparison({"x": nan}, tmp_path / "nan.json")
  assert json.loads((tmp_path / "nan.json").read_text())["rows"][0]["held_out_loss"] is None
  # an unmeasured (NaN) figure prints a dash, and one run alone has nothing to be best against
  assert "nan" not in one.lower() and "*" not in one and one.splitlines()[2].split()[1] == "-"
  # skill: higher is better; a tie marks every run that holds it; counts are never marked
  c = dict(a.to_dict(), brier_skill=0.25, format_turn=0.96)
  d = dict(b, brier_skill=-0.5, format_turn=0.96)
  rows = report.format_table({"c": c, "d": d}).splitlines()
  assert "0.250*" in rows[2] and "-0.500*" not in rows[3]
  assert "0.960*" in rows[2] and "0.960*" in rows[3]
  assert rows[2].split()[-2:] == rows[3].split()[-2:] == ["10", "25"]  # episodes, estimates: equal, unmarked
