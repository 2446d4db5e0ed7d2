"""The audit half of the evaluation: calibration per turn (Brier, ECE, adaptive ECE, AUROC, the
confidence update), the planning-theater detector, and the offline HTML report. Every expected
number below is computed by hand in the comment next to it."""
import base64
import json
import os
import re

import pytest

from foresight_jax import cli, configs
from foresight_jax.evals import calibration as C
from foresight_jax.evals import html_report as H
from foresight_jax.evals import metrics as M
from foresight_jax.evals import receipts as rc
from foresight_jax.evals import theater as T

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
SPEC = {"variant": "full", "horizon": 3, "max_tokens": 64, "strict_decimals": False}
OBS = "Doc 1(Title: Ilsa Vorn) Ilsa Vorn was born in Varnholm. Varnholm is a city."


def block(tool, arg, expect, success, rollout_action=None):
  """One turn in design.md §1's format."""
  ra = rollout_action or (f'{tool} "{arg}"' if tool != "answer" else "answer")
  return (f"<think> plan </think>\n<foresight>\n<rollout>\n1. {ra} -> {expect}\n</rollout>\n"
          f"<success>{success:.2f}</success>\n</foresight>\n<{tool}> {arg} </{tool}>")


def episode(task_id, turns, answer, gold="Varnholm", run="A"):
  """Receipts of one episode. turns: [(turn text, observation or None)]; the action is parsed
  from the text, as the agent does."""
  from foresight_jax.data.render import parse_turn
  out = []
  for k, (text, obs) in enumerate(turns, 1):
    act = parse_turn(text, None).action
    out.append({"kind": "step", "receipt_version": 1, "run": run, "task_id": task_id, "step": k, "text": text,
                "stop_reason": "stop", "forecast": rc.rollout_body(text), "success": None,
                "action": None if act is None else {"tool": act[0], "arg": act[1]}, "invalid": False,
                "observation": obs, "observation_chars": None if obs is None else len(obs),
                "observation_sha256": None if obs is None else rc.sha256(obs), "grounding": None,
                "grounding_f1": None, "format_ok": True, "format_problems": []})
  out.append({"kind": "episode", "receipt_version": 1, "run": run, "task_id": task_id, "domain": "search",
              "question": f"Where was Ilsa Vorn born? ({task_id})", "answers": [gold], "answer": answer,
              "outcome": None, "success_estimates": [], "n_steps": len(turns), "ended": "answer",
              "format_ok": True, "format_spec": SPEC})
  return out


def estimates_episode(task_id, estimates, success, run="A"):
  """An episode whose tool turns carry `estimates` and whose final answer turn carries none
  (answer turns with a block would add an estimate), right or wrong."""
  turns = [(block("search", "Ilsa Vorn birthplace", "Ilsa Vorn was born in Varnholm", s), OBS) for s in estimates]
  turns.append(("<think> done </think>\n<answer> {} </answer>".format("Varnholm" if success else "Brelland"), None))
  return episode(task_id, turns, "Varnholm" if success else "Brelland", run=run)


# ---------------------------------------------------------------------------------------------
# Calibration figures by hand


def test_brier_ece_adaptive_ece_auroc_by_hand():
  p, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
  assert C.brier(p, y) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
  # 10 equal-width bins: every estimate alone in its bin -> (.1 + .4 + .65 + .2) / 4
  assert C.ece(p, y) == pytest.approx(1.35 / 4)
  # 2 equal-mass bins: {.1, .35} (mean .225, rate .5) and {.4, .8} (mean .6, rate .5)
  assert C.ece_adaptive(p, y, 2) == pytest.approx((2 * 0.275 + 2 * 0.1) / 4)
  # successes {.35, .8} vs failures {.1, .4}: 3 of 4 pairs ordered right
  assert C.auroc(p, y) == pytest.approx(0.75)
  # ties count one half: {.5, .9} vs {.5, .5} -> (.5 + .5 + 1 + 1) / 4
  assert C.auroc([0.5, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == pytest.approx(0.75)
  assert C.auroc([0.3, 0.3], [0, 1]) == pytest.approx(0.5)
  assert C.auroc([0.2, 0.9], [1, 1]) is None and C.auroc([0.2, 0.9], [0, 0]) is None


def test_adaptive_ece_keeps_ties_in_one_bin():
  # cut at 2 would split the three 0.2s; it moves past the tie: {.2, .2, .2} (rate 1/3) and {.9}
  p, y = [0.2, 0.2, 0.2, 0.9], [0, 0, 1, 1]
  expected = (3 * abs(0.2 - 1 / 3) + abs(0.9 - 1)) / 4
  assert C.ece_adaptive(p, y, 2) == pytest.approx(expected)
  assert C.ece_adaptive([0.2, 0.2, 0.9, 0.2], [1, 0, 1, 0], 2) == pytest.approx(expected)  # order-free


def test_reliability_bins_match_ece():
  p, y = [0.05, 0.15, 0.18, 0.95], [0, 1, 0, 1]
  bins = C.reliability_bins(p, y, 10)
  assert [b["n"] for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
  assert bins[1]["mean_estimate"] == pytest.approx(0.165) and bins[1]["frequency"] == 0.5
  assert bins[2]["mean_estimate"] is None
  assert sum(b["n"] * abs(b["mean_estimate"] - b["frequency"]) for b in bins if b["n"]) / 4 == pytest.approx(C.ece(p, y))


def test_per_turn_split_and_pooled(tmp_path):
  recs = (estimates_episode("e1", [0.2, 0.9], True) + estimates_episode("e2", [0.6, 0.3], False)
          + estimates_episode("e3", [0.5], True))
  path = tmp_path / "r.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in recs))
  per = C.per_turn(str(path))
  assert sorted(per) == [1, 2]
  t1, t2 = per[1], per[2]
  # turn 1: estimates .2, .6, .5 against outcomes 1, 0, 1
  assert t1["n"] == 3 and t1["brier"] == pytest.approx((0.64 + 0.36 + 0.25) / 3)
  assert t1["mean_estimate"] == pytest.approx(1.3 / 3) and t1["base_rate"] == pytest.approx(2 / 3)
  assert t1["auroc"] == 0.0  # the one failure got the highest estimate
  assert t1["n_updates"] == 0 and t1["toward_rate"] is None
  # turn 2: .9 (success) and .3 (failure); both moved toward their outcome, by .7 and .3
  assert t2["n"] == 2 and t2["brier"] == pytest.approx(0.05) and t2["auroc"] == 1.0
  assert t2["ece"] == pytest.approx((0.1 + 0.3) / 2)
  assert t2["n_updates"] == 2 and t2["toward_rate"] == 1.0 and t2["mean_move"] == pytest.approx(0.5)
  pooled = C.pooled(str(path))
  table = M.metrics_from_receipts(str(path))
  assert pooled["n"] == table.n_estimates == 5
  assert pooled["brier"] == pytest.approx(table.brier) and pooled["ece"] == pytest.approx(table.ece)


def test_confidence_update_on_constructed_episodes():
  assert C.update_moves([(1, 0.2), (2, 0.9)], 1.0) == [(2, pytest.approx(0.7))]
  recs = (estimates_episode("flat", [0.5, 0.5, 0.5], False)     # two flat updates
          + estimates_episode("away", [0.3, 0.6], False)        # -0.3
          + estimates_episode("toward", [0.4, 0.7], True)       # +0.3
          + estimates_episode("single", [0.8], True))           # no update: not counted
  u = C.confidence_update(recs)
  assert u["n_updates"] == 4 and u["n_episodes"] == 3
  assert (u["toward_rate"], u["away_rate"], u["flat_rate"]) == (0.25, 0.25, 0.5)
  assert u["mean_move"] == pytest.approx(0.0)
  assert u["episodes_closer_rate"] == pytest.approx(1 / 3)  # only "toward" ended closer than it began
  eps = C.audit_episodes(recs)
  assert C.episode_updates(eps[2])["moves"] == [(2, pytest.approx(0.3))]


# ---------------------------------------------------------------------------------------------
# Planning theater: both sides of every threshold


def _one(turns, answer="Varnholm", task="t"):
  return C.audit_episodes(episode(task, turns, answer))[0]


def _reasons(ep, **th):
  return [(f["step"], f["reason"]) for f in T.flag_turns(ep, T.TheaterThresholds(**th))]


def test_confidence_threshold_for_ungrounded_turns():
  def ep(s):  # "Brelland Harbor" never shows up in OBS: grounding 0
    return _one([(block("search", "Ilsa Vorn birthplace", "Brelland Harbor", s), OBS)])
  assert _reasons(ep(0.70), confidence=0.7) == [(1, "confident_ungrounded")]
  assert _reasons(ep(0.69), confidence=0.7) == []


def test_grounding_threshold():
  # expectation words {varnholm, harbor}: one of two in OBS -> grounding 0.5
  e = _one([(block("search", "Ilsa Vorn birthplace", "Varnholm harbor", 0.9), OBS)])
  assert e.groundings[0] == pytest.approx(0.5)
  assert _reasons(e, grounding=0.5) == []  # not below the threshold
  assert _reasons(e, grounding=0.51) == [(1, "confident_ungrounded")]


def test_restatement_threshold_and_what_is_not_checked():
  restate = _one([(block("search", "Ilsa Vorn birthplace", "Ilsa Vorn birthplace", 0.5), OBS)])
  assert _reasons(restate, min_content_tokens=1) == [(1, "restates_action")]
  # "born", "varnholm" go beyond the action: 2 words
  predicts = _one([(block("search", "Ilsa Vorn birthplace", "Ilsa Vorn was born in Varnholm", 0.5), OBS)])
  assert T.words_beyond_action(predicts.steps[0], predicts.spec) == ["born", "varnholm"]
  assert _reasons(predicts, min_content_tokens=2) == []
  assert _reasons(predicts, min_content_tokens=3) == [(1, "restates_action")]
  # the tool call taken counts as said, also where the rollout's own action names less of it
  called = _one([(block("search", "Ilsa Vorn birthplace", "Ilsa Vorn birthplace", 0.5, 'search "Ilsa Vorn"'), OBS)])
  assert T.words_beyond_action(called.steps[0], called.spec) == []
  assert _reasons(called) == [(1, "restates_action")]
  # a computed number is a prediction (digits count here), and a bare number is not "ungrounded"
  calc = _one([(block("calc", "6 * 7", "42", 0.9), "42")])
  assert _reasons(calc) == []
  calc_restated = _one([(block("calc", "6 * 7", "6 * 7", 0.9), "42")])
  assert _reasons(calc_restated) == [(1, "restates_action")]
  # an answer turn (no observation) and a turn without a rollout are not checked
  answer = _one([(block("answer", "Brelland", "Brelland", 0.9), None)], answer="Brelland")
  bare = _one([("<think> x </think>\n<search> Ilsa Vorn birthplace </search>", OBS),
               ("<answer> Varnholm </answer>", None)])
  assert _reasons(answer, grounding=1.0) == [] and _reasons(bare, grounding=1.0, min_content_tokens=9) == []
  assert T.theater_summary(C.audit_episodes(episode("b", [("<search> q </search>", OBS), ("<answer> x </answer>", None)],
                                                    "x")))["A"]["turn_rate"] is None  # nothing checked


def test_episode_confidence_through_failure():
  th = T.TheaterThresholds(episode_confidence=0.7)

  def flag(estimates, success):
    return T.flag_episode(C.audit_episodes(estimates_episode("e", estimates, success))[0], th)
  assert flag([0.7, 0.8], False)["reason"] == "confident_through_failure"
  assert flag([0.69, 0.9], False) is None    # one estimate below the threshold
  assert flag([0.9, 0.9], True) is None      # it succeeded
  assert flag([], False) is None             # no estimate, no claim


def test_theater_summary_rates_and_receipts():
  recs = (episode("good", [(block("search", "Ilsa Vorn birthplace", "Ilsa Vorn was born in Varnholm", 0.9), OBS),
                           ("<answer> Varnholm </answer>", None)], "Varnholm")
          + episode("theater", [(block("search", "Ilsa Vorn birthplace", "Ilsa Vorn birthplace", 0.9), OBS),
                                (block("search", "Brelland", "Brelland Harbor", 0.9), OBS),
                                ("<answer> Brelland </answer>", None)], "Brelland"))
  # a turn that both restates its action and is confidently ungrounded, in an episode that succeeds
  recs += episode("both", [(block("search", "Brelland", "Brelland", 0.9), OBS), ("<answer> Varnholm </answer>", None)],
                  "Varnholm")
  s = T.theater_summary(recs)["A"]
  assert (s["n_checked_turns"], s["n_flagged_turns"]) == (4, 3)  # the turn flagged twice counts once
  assert s["turn_rate"] == pytest.approx(3 / 4)
  # any_rate: "theater" (turn and episode flags) and "both" (turn flags only) of three episodes
  assert (s["n_episodes"], s["n_flagged_episodes"]) == (3, 1)
  assert (s["episode_rate"], s["any_rate"]) == pytest.approx((1 / 3, 2 / 3))
  assert {(f["task_id"], f["step"], f["reason"]) for f in s["flagged"]} == {
      ("theater", 1, "restates_action"), ("theater", 2, "confident_ungrounded"),
      ("theater", None, "confident_through_failure"),
      ("both", 1, "restates_action"), ("both", 1, "confident_ungrounded")}
  assert all(f["episode"] == {"theater": 1, "both": 2}[f["task_id"]] for f in s["flagged"])


def test_thresholds_come_from_the_config_file():
  cfg = configs.load(os.path.join(CONFIGS, "audit.py"), ["theater.grounding=0.3", "report.bootstrap_resamples=0"])
  s = H.ReportSettings.from_config(cfg)
  assert s.theater == T.TheaterThresholds(grounding=0.3) and s.bootstrap_resamples == 0
  assert H.ReportSettings.from_config(configs.load(os.path.join(CONFIGS, "audit.py"))) == H.ReportSettings()
  with pytest.raises(KeyError):
    T.TheaterThresholds.from_config({"confidense": 0.5})


# ---------------------------------------------------------------------------------------------
# The HTML report


def _run_dir(d, run, loss=None):
  d.mkdir()
  hostile = OBS + " see http://example.com/x <script>alert(1)</script>"
  recs = (episode("s1-q0", [(block("search", "Ilsa Vorn birthplace", "Ilsa Vorn was born in Varnholm", 0.64), hostile),
                            (block("answer", "Varnholm", "Varnholm", 0.81), None)], "Varnholm", run=run)
          + estimates_episode("s1-q1", [0.9, 0.9], False, run=run)
          + estimates_episode("s1-q2", [0.3, 0.8], True, run=run))
  (d / "receipts_0_x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
  if loss is not None:
    (d / "comparison.json").write_text(json.dumps({"metrics": {run: {"held_out_loss": loss}}}))
  return str(d)


def test_stage_names():
  assert [H.stage_of(n) for n in ("WM-AMT+FE-SFT", "standard mid-training+FE-SFT", "FC-RL (reward=fc)",
                                  "GRPO (reward=outcome)", "receipts_2_fcrl", "base", "FC-RL from WM-AMT+FE-SFT",
                                  "grpo after fe_sft")] == [
      "FE-SFT", "FE-SFT", "FC-RL", "GRPO", "FC-RL", "other", "FC-RL", "GRPO"]  # RL runs name their FE-SFT start


def test_report_is_one_offline_file(tmp_path):
  a = _run_dir(tmp_path / "a", "WM-AMT+FE-SFT", loss=1.2345)
  b = _run_dir(tmp_path / "b", "FC-RL (reward=fc)")
  out = tmp_path / "out" / "report.html"
  assert cli.main(["report", a, b, "--out", str(out), "--config", os.path.join(CONFIGS, "audit.py"),
                   "--set", "theater.confidence=0.95", "--set", "report.bootstrap_resamples=50"]) == 0
  assert sorted(os.listdir(out.parent)) == ["report.html"]
  text = out.read_text()
  # self-contained: no script, no external reference, every src/href is data: or an anchor
  assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
  refs = re.findall(r'(?:src|href)="([^"]*)"', text)
  assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
  pngs = [base64.b64decode(r.split(",", 1)[1]) for r in refs if r.startswith("data:")]
  assert len(pngs) >= 2 + 3 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)  # a diagram per run + 3
  assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the model's text is escaped, not dropped
  for name in ("WM-AMT+FE-SFT", "FC-RL (reward=fc)"):
    assert name in text
  assert "1.2345" in text  # the held-out loss from a's comparison.json
  assert "confidence &ge; 0.95" in text  # thresholds from --config / --set
  # the drill-down of run 0's first episode: forecast, confidence, tool call, observation, updates
  m = re.search(r'<details id="r0-e0">(.*?)</details>', text, re.DOTALL)
  assert m, "no drill-down for the first episode"
  ep = m.group(1)
  for piece in ("s1-q0", "Ilsa Vorn was born in Varnholm", "0.64", "search: Ilsa Vorn birthplace",
                "Varnholm is a city", "0.64 &rarr; 0.81", "turn 2: toward +0.17", "success"):
    assert piece in ep, piece
  # a flagged receipt links to its episode's drill-down
  assert 'href="#r0-e1"' in text and 'id="r0-e1"' in text


def test_same_run_name_in_two_directories_is_told_apart(tmp_path):
  runs = H.load_runs([_run_dir(tmp_path / "x", "FC-RL"), _run_dir(tmp_path / "grpo", "FC-RL")])
  assert [r.name for r in runs] == ["x/FC-RL", "grpo/FC-RL"]
  assert [r.stage for r in runs] == ["FC-RL", "FC-RL"]  # the stage comes from the run, not the folder
  with pytest.raises(FileNotFoundError):
    H.load_runs([str(tmp_path)])  # a directory without receipts
  d = tmp_path / "numbered"  # a directory's files in natural order: 2 before 10
  d.mkdir()
  for n in (10, 2):
    (d / f"receipts_{n}_run.jsonl").write_text("".join(json.dumps(r) + "\n" for r in estimates_episode("q", [0.5], True, run="")))
  assert [r.name for r in H.load_runs([str(d)])] == ["receipts_2_run", "receipts_10_run"]


def test_report_sections_by_hand(tmp_path, capsys):
  """Two runs given in the wrong pipeline order, with bins and an episode limit from the config."""
  grpo, fe = _run_dir(tmp_path / "g", "GRPO (reward=outcome)"), _run_dir(tmp_path / "f", "WM-AMT+FE-SFT")
  recs = [json.loads(x) for x in open(os.path.join(grpo, "receipts_0_x.jsonl"))]
  recs[0]["observation_chars"] += 100  # the receipt kept the first part of a longer observation
  (tmp_path / "g" / "receipts_0_x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
  runs = H.load_runs([grpo, fe])
  s = H.ReportSettings.from_config(configs.load(os.path.join(CONFIGS, "audit.py"), [
      "calibration.n_bins=5", "report.max_episodes=2", "report.bootstrap_resamples=20"]))
  text = H.build_html(runs, s)
  section = lambda a, b: text[text.index(a):text.index(b)]  # noqa: E731
  gap = section("<h2>Format vs capability", "<h2>Calibration")
  assert gap.index("WM-AMT+FE-SFT") < gap.index("GRPO (reward=outcome)")  # pipeline order, not the order given
  m = H.analyse(runs[1], s)["metrics"]
  assert m["format_turn"] != m["accuracy"] and f'<td>{m["format_turn"] - m["accuracy"]:+.3f}</td>' in gap
  assert "<small>[" in section("<h2>Comparison", "<h2>Format vs")  # 95% intervals with resamples set
  assert "ECE (5 bins)" in text and text.count("(2 of 3 episodes)") == 2
  assert "(truncated; " in text and text.count("(truncated; ") == 1
  # flagged episodes first: with room for two, the flagged one (e1: sure of a failure) stays in
  flagged = {f["episode"] for f in H.analyse(runs[0], s)["theater"]["flagged"]}
  assert flagged == {1} and 'id="r0-e1"' in text and 'id="r0-e2"' not in text
  full = H.build_html(runs[:1])
  assert full.index('id="r0-e1"') < full.index('id="r0-e0"')
  # a run alone is nobody's best: no cell is marked (two runs: their ties are)
  best_mark = re.compile(r" \*(<br>|</td>)")
  assert not best_mark.search(full[full.index("<h2>Comparison"):full.index("<h2>Format vs")])
  assert best_mark.search(section("<h2>Comparison", "<h2>Format vs"))
  with pytest.raises(SystemExit, match="--set needs --config"):
    cli.main(["report", grpo, "--out", str(tmp_path / "r.html"), "--set", "theater.confidence=0.9"])


def test_report_command_is_listed_and_explains_itself(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["--help"])
  assert e.value.code == 0 and "report" in capsys.readouterr().out
  with pytest.raises(SystemExit) as e:
    cli.main(["report", "--help"])
  out = capsys.readouterr().out
  assert e.value.code == 0 and "--config" in out and "offline" in out


def test_report_names_episodes_the_judge_gave_no_verdict(tmp_path):
  """A judge that timed out or answered garbage is counted as no verdict and named, with its
  reason, next to the verdicts it did give; the rest of the report is unaffected."""
  recs = (estimates_episode("ok-1", [0.8], True) + estimates_episode("ok-2", [0.8], False)
          + estimates_episode("timeout-3", [0.8], True) + estimates_episode("ok-4", [0.8], False))
  verdicts = {"ok-1": (True, None), "ok-2": (True, None), "timeout-3": (None, "timed out after 30 s"),
              "ok-4": (False, None)}
  for r in recs:
    if r["kind"] == "episode":
      v, why = verdicts[r["task_id"]]
      r["judge"] = {"name": "http:judge-model", "verdict": v, "reason": why}
      r["em"] = 1.0 if r["answer"] == "Varnholm" else 0.0
  path = tmp_path / "receipts_0.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in recs))
  text = H.build_html(H.load_runs([str(path)]))
  sec = text[text.index("<h2>LLM judge</h2>"):text.index("<h2>Episodes</h2>")]
  assert "judged 4 episodes: 2 correct, 1 incorrect" in sec and "1 no verdict" in sec
  assert "timeout-3" in sec and "timed out after 30 s" in sec and "ok-1</a>" not in sec
  assert "agreement with EM 0.667" in sec  # ok-1 and ok-4 agree with EM (1 and 0), ok-2 does not
  # no judge fields at all: no judge section
  plain = tmp_path / "plain.jsonl"
  plain.write_text("".join(json.dumps(r) + "\n" for r in estimates_episode("x", [0.5], True)))
  assert "<h2>LLM judge</h2>" not in H.build_html(H.load_runs([str(plain)]))
