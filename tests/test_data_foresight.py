"""Foresight builder, rendering, parser/format checker, and calibration of built estimates."""
import dataclasses

import pytest

from foresight_jax.data.calibration import brier, calibration_report, ece
from foresight_jax.data.foresight import (ForesightConfig, SuccessEstimator, block_pairs,
                                          build_blocks, build_dataset, forecast_noise_lines, rollout_lines)
from foresight_jax.data.generate import GenConfig, generate, make_worlds
from foresight_jax.data.render import (check_format, parse_response, parse_turn, render_segments,
                                       render_text, response_text, split_response)
from foresight_jax.data.schema import Trajectory
from foresight_jax.data.world import split_docs


@pytest.fixture(scope="module")
def data():
  cfg = GenConfig(seed=21)
  worlds = make_worlds(cfg)
  trajs = list(generate(cfg, 400, worlds=worlds))
  return trajs, worlds, build_dataset(trajs, ForesightConfig(), worlds)


def test_variants(data):
  trajs, worlds, full = data
  tr = next(t for t in trajs if len(t.steps) >= 3)
  none = build_blocks(tr, ForesightConfig(variant="none"))
  state = build_blocks(tr, ForesightConfig(variant="state"))
  built = build_blocks(tr, ForesightConfig(), SuccessEstimator(worlds={w.seed: w for w in worlds}))
  tn, ts, tf = response_text(none), response_text(state), response_text(built)
  assert "<foresight>" not in tn and "<rollout>" not in tn
  assert ts.count("<rollout>") == len(tr.steps) and "<success>" not in ts
  assert tf.count("<rollout>") == tf.count("<success>") == len(tr.steps)
  assert "<foresight>" not in render_text(none) and "<success>" not in render_text(state)
  for resp, variant in ((tn, "none"), (ts, "state"), (tf, "full")):
    assert check_format(resp, variant) == [], (variant, check_format(resp, variant))
    assert check_format(resp, {"none": "full", "state": "none", "full": "state"}[variant])
  with pytest.raises(ValueError):
    ForesightConfig(variant="half")


def test_rollouts_reflect_observed_outcomes(data):
  _, _, built = data
  for tr in built:
    for t, step in enumerate(tr.steps):
      lines = step.foresight.rollout
      assert 1 <= len(lines) <= 3 and len(lines) == min(3, len(tr.steps) - t)
      numbered = [f"{k}. {ln}" for k, ln in enumerate(lines, 1)]
      assert len(" ".join(numbered).split()) <= 64
      head, expect = lines[0].split(" -> ", 1)
      if step.action.tool == "answer":
        assert head == "answer" and expect in step.action.arg
      elif step.action.tool == "calc":
        assert head == f'calc "{step.action.arg}"' and expect == step.observation
      else:
        assert head == f'search "{step.action.arg}"'
        sents = " ".join(text for _, text in split_docs(step.observation))
        assert expect in sents  # a sentence the search actually returned
  # hindsight: the block's line k is the (k-1)-th next step
  tr = max(built, key=lambda t: len(t.steps))
  assert tr.steps[0].foresight.rollout[1] == tr.steps[1].foresight.rollout[0]


def test_salient_sentence_carries_the_hop_fact(data):
  trajs, worlds, built = data
  expert = [t for t in built if t.meta["policy"] == "expert" and t.task.domain == "search"]
  checked = 0
  for tr in expert:
    path = tr.task.meta["path"]
    for t, step in enumerate(tr.steps[:-1]):
      expect = step.foresight.rollout[0].split(" -> ", 1)[1]
      assert path[t] in expect and path[t + 1] in expect, (expect, path[t:t + 2])
      checked += 1
  assert checked > 50


def test_forecast_noise_replaces_only_what_the_context_has_not_shown(data):
  """forecast_noise=1: every search step's expectation names another entity of the same kind in
  place of each one not yet seen (the question and earlier observations are seen), every calc step
  a nearby wrong value; answers and seen entities stay; 0 changes nothing; seeded."""
  trajs, worlds, _ = data
  by_seed = {w.seed: w for w in worlds}
  cfg1, cfg0 = ForesightConfig(rollout_horizon=1, forecast_noise=1.0), ForesightConfig(rollout_horizon=1)
  changed = kept_seen = calc_changed = 0
  for tr in trajs[:120]:
    world = by_seed.get(tr.task.meta.get("world_seed")) if tr.task.domain == "search" else None
    for t in range(len(tr.steps)):
      lines = rollout_lines(tr, t, 1)
      assert forecast_noise_lines(lines, tr, t, cfg0, world) == lines
      out = forecast_noise_lines(lines, tr, t, cfg1, world)
      assert out == forecast_noise_lines(lines, tr, t, cfg1, world)  # deterministic
      head, _, sal = lines[0].partition(" -> ")
      new_head, _, new_sal = out[0].partition(" -> ")
      assert new_head == head
      if head.startswith("answer"):
        assert out == lines
      elif head.startswith("calc"):
        calc_changed += new_sal != sal
      else:
        seen = " ".join([tr.task.question] + [s.observation or "" for s in tr.steps[:t]])
        for name in world.entities:
          if f" {name} " in f" {sal} " and name in seen:
            assert name in new_sal  # a fact already in the context stays as it was
            kept_seen += 1
        if new_sal != sal:
          changed += 1
          gone = [n for n in world.entities if n in sal and n not in new_sal]
          came = [n for n in world.entities if n in new_sal and n not in sal]
          assert gone and came and {world.entities[n].kind for n in gone} == {world.entities[n].kind for n in came}
  assert changed > 50 and kept_seen > 20 and calc_changed > 20, (changed, kept_seen, calc_changed)
  with pytest.raises(ValueError):
    ForesightConfig(forecast_noise=1.5)


def test_rollout_token_cap():
  tr = Trajectory.from_json({
      "task": {"id": "x", "domain": "search", "question": "q?", "answers": ["a"]},
      "steps": [{"thought": "", "action": {"tool": "search", "query": "w " * 80},
                 "observation": "Doc 1(Title: T) " + "long " * 200 + "."},
                {"thought": "", "action": {"tool": "answer", "answer": "a"},
                 "observation": None}],
      "outcome": {"score": 0.0}, "source": "unit"})
  for cap in (64, 20, 8):
    lines = rollout_lines(tr, 0, 3, cap)
    assert lines and len(" ".join(f"{k}. {l}" for k, l in enumerate(lines, 1)).split()) <= cap


def test_mc_estimates_vary_and_beat_base_rate(data):
  trajs, _, built = data
  p, y = block_pairs(built)
  assert len(set(p)) >= 5 and all(0 < v < 1 for v in p)
  rep = calibration_report(p, y)
  assert rep.brier < 0.75 * rep.brier_baseline, rep
  first = calibration_report([t.steps[0].foresight.success for t in built],
                             [t.score for t in built])
  assert first.brier < first.brier_baseline, first
  # blocks before a wrong turn drop: mean estimate is higher on successful trajectories
  ok = [s for s, o in zip(p, y) if o == 1]
  bad = [s for s, o in zip(p, y) if o == 0]
  assert sum(ok) / len(ok) > sum(bad) / len(bad) + 0.3


def test_estimates_deterministic_and_fallback_without_world(data):
  trajs, worlds, built = data
  again = build_dataset(trajs[:40], ForesightConfig(), worlds)
  assert [t.to_json() for t in again] == [t.to_json() for t in built[:40]]
  search = [t for t in trajs if t.task.domain == "search"][:60]
  # worlds are rebuilt from the seed/config recorded in the trajectory ...
  rebuilt = SuccessEstimator(ForesightConfig(), worlds={})
  given = SuccessEstimator(ForesightConfig(), worlds={w.seed: w for w in worlds})
  assert [rebuilt(t, 0) for t in search[:10]] == [given(t, 0) for t in search[:10]]
  assert rebuilt(search[0], 0)[1] == "mc"
  # ... but only if the rebuilt world holds the task's chain
  other = dataclasses.replace(search[0], meta={**search[0].meta,
                                               "world_config": {"n_people": 30}})
  assert SuccessEstimator(ForesightConfig(), worlds={})(other, 0)[1] == "prior"
  est = SuccessEstimator(ForesightConfig(), worlds={}, base_rate=0.6, rebuild_worlds=False)
  vals = [est(t, k) for t in search for k in range(len(t.steps))]
  assert {m for _, m in vals} == {"prior"} and len({round(v, 4) for v, _ in vals}) > 2
  for t in search:  # smoothed toward the base rate, leaning on the outcome as steps go on
    v0, v1 = est(t, 0)[0], est(t, len(t.steps) - 1)[0]
    assert min(t.score, 0.6) <= v0 <= max(t.score, 0.6) and abs(v1 - t.score) <= abs(v0 - t.score)
  stripped = [dataclasses.replace(t, steps=[dataclasses.replace(s, meta=None) for s in t.steps])
              for t in trajs if t.task.domain == "math"][:5]
  assert all(est(t, 0)[1] == "prior" for t in stripped)


def test_segments_and_round_trip(data):
  _, _, built = data
  for tr in built[:80]:
    segs = render_segments(tr)
    assert segs[0].role == "prompt" and tr.task.question in segs[0].text
    roles = [s.role for s in segs[1:]]
    assert roles == [r for st in tr.steps
                     for r in (("assistant", "observation") if st.observation else ("assistant",))]
    assert all(s.text.startswith("\n\n<information>") and s.text.endswith("</information>\n\n")
               for s in segs if s.role == "observation")
    resp = response_text(tr)
    assert check_format(resp, "full", strict_decimals=True) == []
    turns = parse_response(resp)
    assert [o for o in split_response(resp)[1]] == [s.observation for s in tr.steps
                                                    if s.observation]
    for pt, st in zip(turns, tr.steps):
      assert [f"{r.action} -> {r.expect}" for r in pt.rollout] == st.foresight.rollout
      assert pt.success == st.foresight.success and pt.action == (st.action.tool, st.action.arg)
      assert pt.think == st.thought and pt.rollout[0].tool == st.action.tool
    last = turns[-1].rollout[-1]
    if tr.final_answer:
      assert last.tool == "answer" and last.arg is None


GOOD = ('<think> t </think>\n<foresight>\n<rollout>\n1. search "x" -> y\n2. answer -> z\n'
        '</rollout>\n<success>0.64</success>\n</foresight>\n<search> x </search>')
_BLOCK = GOOD[GOOD.index("<foresight>"):GOOD.index("<search>")]


@pytest.mark.parametrize("text,needle", [
    (GOOD.replace("</rollout>", ""), "unbalanced"),
    (GOOD.replace("0.64", "1.30"), "not a probability"),
    (GOOD.replace("0.64", "high"), "not a probability"),
    (GOOD + "<search> y </search>", "2 actions"),
    (GOOD.replace("<search> x </search>", ""), "no action"),
    ("<think> t </think>\n<search> x </search>\n" + _BLOCK, "after the action"),
    (GOOD.replace("2. answer", "3. answer"), "numbered 3"),
    (GOOD.replace("2. answer -> z", "2. answer -> z\n3. a -> b\n4. a -> b"), "horizon"),
    (GOOD.replace("-> y", "-> " + "w " * 70), "tokens"),
    (GOOD.replace('1. search "x" -> y', "just a plan"), "not 'k. action"),
    (GOOD.replace("<success>0.64</success>\n", ""), "expected ['rollout', 'success']"),
    (GOOD.replace("<think> t </think>", "<think> t <search> q </search> </think>"), "nested"),
    (GOOD.replace("<think> t </think>\n", ""), "start with <think>"),
    (GOOD + " trailing", "text after the action"),
    (GOOD.replace("<foresight>\n<rollout>", "<foresight>\nhmm <rollout>"), "text outside tags"),
    ("<think> t", "unclosed <think>"),
    (GOOD.replace("<success>0.64</success>\n</foresight>\n", "<success>0.64</success>\n"),
     "unclosed <foresight>"),
])
def test_format_checker_rejects_malformed(text, needle):
  probs = parse_turn(text, "full").problems
  assert any(needle in p for p in probs), probs
  assert parse_turn(GOOD, "full").problems == []


def test_format_checker_on_responses():
  obs = "\n\n<information>Doc 1(Title: a) b</information>\n\n"
  final = "<think> t </think>\n<foresight><rollout>1. answer -> z</rollout>" \
          "<success>0.9</success></foresight>\n<answer> z </answer>"
  assert check_format(GOOD + obs + final) == []
  assert any("does not end with <answer>" in p for p in check_format(GOOD + obs + GOOD))
  assert check_format(GOOD + obs + GOOD, require_final_answer=False) == []
  assert any("followed by more turns" in p for p in check_format(final + obs + final))
  assert any("two decimals" in p for p in check_format(GOOD + obs + final, strict_decimals=True))
  assert any("<information> inside" in p for p in parse_turn(GOOD + "<information>x</information>",
                                                              "full").problems)


def test_calibration_metrics():
  assert brier([1, 0], [1, 0]) == 0 and brier([0.5, 0.5], [1, 0]) == 0.25
  assert ece([0.9] * 10, [1] * 9 + [0]) == pytest.approx(0.0)
  assert ece([0.2, 0.8], [1, 0]) == pytest.approx(0.8)
  assert ece([1.0, 0.0], [1, 0]) == 0.0  # p = 1.0 lands in the last bin
  rep = calibration_report([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])
  assert rep.brier_baseline == 0.25 and rep.skill > 0.5 and rep.base_rate == 0.5


def test_built_data_survives_jsonl(data, tmp_path):
  from foresight_jax.data.schema import read_trajectories, write_trajectories
  _, _, built = data
  path = tmp_path / "built.jsonl"
  write_trajectories(path, built[:50])
  back, rep = read_trajectories(path)
  assert rep.accepted == 50 and rep.rejected == 0
  assert [t.to_json() for t in back] == [t.to_json() for t in built[:50]]
  assert [render_text(t) for t in back] == [render_text(t) for t in built[:50]]
