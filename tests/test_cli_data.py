"""Data commands: world -> augment -> data-stats, determinism, and bad input that still writes."""
import json

import pytest

from foresight_jax import cli
from foresight_jax.data.schema import read_trajectories


def _last_json(capsys):
  return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_world_augment_stats_chain(tmp_path, capsys):
  raw, aug = str(tmp_path / "w.jsonl"), str(tmp_path / "a.jsonl")
  assert cli.main(["world", "--out", raw, "-n", "60", "--seed", "3", "--quiet"]) == 0
  w = _last_json(capsys)
  assert w["trajectories"] == 60 and 0.0 < w["success_rate"] < 1.0
  assert cli.main(["augment", raw, "--out", aug, "--branches", "4", "--quiet"]) == 0
  a = _last_json(capsys)
  assert a["written"] == 60 and a["rejected"] == 0
  assert a["success_estimates"]["mc"] > 0
  assert a["calibration"]["brier"] < a["calibration"]["brier_baseline"]  # estimates carry signal
  trajs, _ = read_trajectories(aug)
  assert all(s.foresight is not None and s.foresight.success is not None for t in trajs for s in t.steps)
  assert cli.main(["data-stats", aug, "--quiet"]) == 0
  s = _last_json(capsys)
  assert s["accepted"] == 60 and s["with_foresight_blocks"] == 60 and s["tokens"]["max"] > 0


def test_world_is_deterministic_per_seed(tmp_path, capsys):
  a, b, c = (str(tmp_path / f"{x}.jsonl") for x in "abc")
  for path, seed in ((a, 1), (b, 1), (c, 2)):
    cli.main(["world", "--out", path, "-n", "20", "--seed", str(seed), "--quiet"])
  assert open(a).read() == open(b).read() != open(c).read()


def test_state_variant_has_no_success(tmp_path, capsys):
  raw, aug = str(tmp_path / "w.jsonl"), str(tmp_path / "s.jsonl")
  cli.main(["world", "--out", raw, "-n", "10", "--quiet"])
  assert cli.main(["augment", raw, "--out", aug, "--variant", "state", "--quiet"]) == 0
  trajs, _ = read_trajectories(aug)
  assert all(s.foresight.rollout and s.foresight.success is None for t in trajs for s in t.steps)


def test_augment_reports_bad_lines_and_writes_the_valid_ones(tmp_path, capsys):
  raw, aug = tmp_path / "w.jsonl", str(tmp_path / "a.jsonl")
  cli.main(["world", "--out", str(raw), "-n", "5", "--quiet"])
  lines = raw.read_bytes().splitlines()
  broken = json.loads(lines[1])
  broken["steps"][0]["action"]["tool"] = "teleport"
  raw.write_bytes(b"\n".join([lines[0], b"{not json", json.dumps(broken).encode(), b"\xff\xfe oops",
                              *lines[2:]]) + b"\n")
  assert cli.main(["augment", str(raw), "--out", aug, "--quiet"]) == 0
  captured = capsys.readouterr()
  report = json.loads(captured.out.strip().splitlines()[-1])
  assert report["written"] == 4 and report["rejected"] == 3
  assert f"{raw}:2:" in captured.err and f"{raw}:3:steps[0].action.tool" in captured.err
  assert f"{raw}:4:" in captured.err
  assert len(read_trajectories(aug)[0]) == 4


def test_world_rejects_unknown_policy(tmp_path):
  with pytest.raises(SystemExit, match="unknown policy"):
    cli.main(["world", "--out", str(tmp_path / "x.jsonl"), "--policies", "genius=1"])


def test_world_augment_files_feed_the_model_through_the_pipeline(tmp_path, capsys):
  """The issue's chain: `world` -> `augment` -> grain pipeline -> packed, masked batches the
  foundation model consumes."""
  import jax
  import numpy as np

  from foresight_jax.data.pipeline import PipelineConfig, make_iterator, pipeline_counts
  from foresight_jax.data.render import render_text
  from foresight_jax.models import params as params_lib, presets
  from foresight_jax.tokenizer import train_sentencepiece
  from foresight_jax.train.losses import causal_lm_loss

  raw, aug = str(tmp_path / "w.jsonl"), str(tmp_path / "a.jsonl")
  cli.main(["world", "--out", raw, "-n", "40", "--quiet"])
  cli.main(["augment", raw, "--out", aug, "--branches", "4", "--quiet"])
  trajs, _ = read_trajectories(aug)
  tok = train_sentencepiece((render_text(t) for t in trajs), model_prefix=None, vocab_size=600)
  it = make_iterator(aug, tok, PipelineConfig(mode="mid_training", seq_len=2048, batch_size=2, seed=0))
  batch = next(it)
  assert set(batch) >= {"inputs", "targets", "loss_mask", "positions", "segment_ids"}
  assert batch["inputs"].shape == (2, 2048) and batch["segment_ids"].max() > 1  # packed rows
  assert 0 < batch["loss_mask"].mean() < 1  # observations (and padding) are masked
  cfg = presets.model_config("tiny", vocab_size=tok.vocab_size)
  p = params_lib.init_params(cfg, jax.random.key(0))
  loss, aux = causal_lm_loss(cfg, p, {k: np.asarray(v) for k, v in batch.items()})
  assert np.isfinite(float(loss)) and float(aux["tokens"]) == float(batch["loss_mask"].sum())
  assert pipeline_counts(it).rejected == 0


def test_world_options_reach_the_generator(tmp_path, capsys):
  out = str(tmp_path / "w.jsonl")
  assert cli.main(["world", "--out", out, "-n", "4", "--start", "3", "--hops", "2", "--n-worlds", "3",
                   "--math-fraction", "0", "--search-k", "2", "--policies", " expert = 1 ", "--quiet"]) == 0
  w = _last_json(capsys)
  trajs, _ = read_trajectories(out)
  assert all(t.task.meta["hops"] == 2 and t.meta["policy"] == "expert" for t in trajs)
  assert all(t.meta["world_config"]["search_k"] == 2 for t in trajs) and w["domains"] == {"search": 4}
  assert w["success_rate"] == pytest.approx(sum(t.score for t in trajs) / 4, abs=1e-4)
  whole = str(tmp_path / "all.jsonl")  # trajectory i depends on (seed, i) alone: --start shards
  cli.main(["world", "--out", whole, "-n", "7", "--hops", "2", "--n-worlds", "3", "--math-fraction", "0",
            "--search-k", "2", "--policies", "expert=1", "--quiet"])
  assert open(whole).read().splitlines()[3:] == open(out).read().splitlines()
  with pytest.raises(SystemExit, match="--search-k must be >= 1"):
    cli.main(["world", "--out", out, "--search-k", "0", "--quiet"])


def test_augment_options_and_problem_report(tmp_path, capsys):
  raw = tmp_path / "w.jsonl"
  cli.main(["world", "--out", str(raw), "-n", "6", "--seed", "2", "--quiet"])
  lines = raw.read_bytes().splitlines()
  raw.write_bytes(b"\n".join([b"{bad 1", b"{bad 2", b"{bad 3", *lines]) + b"\n")
  outs = {}
  for noise in ("0", "1"):
    outs[noise] = str(tmp_path / f"a{noise}.jsonl")
    assert cli.main(["augment", str(raw), "--out", outs[noise], "--branches", "2", "--forecast-noise", noise,
                     "--show-problems", "1", "--quiet"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert captured.err.count("rejected: ") == 1 and "... and 2 more problems" in captured.err
  trajs = {k: read_trajectories(v)[0] for k, v in outs.items()}
  assert sum(report["success_estimates"].values()) == sum(len(t.steps) for t in trajs["1"])  # one per step
  rollouts = {k: [s.foresight.rollout for t in v for s in t.steps] for k, v in trajs.items()}
  assert rollouts["0"] != rollouts["1"]  # --forecast-noise reaches the blocks


def test_data_stats_figures_by_hand(tmp_path, capsys):
  import statistics

  from foresight_jax.data.render import render_text
  from foresight_jax.tokenizer import train_sentencepiece
  raw, aug = str(tmp_path / "w.jsonl"), tmp_path / "a.jsonl"
  cli.main(["world", "--out", raw, "-n", "21", "--seed", "4", "--quiet"])
  cli.main(["augment", raw, "--out", str(aug), "--branches", "2", "--quiet"])
  capsys.readouterr()
  lines = aug.read_text().splitlines()
  first = json.loads(lines[0])
  first["steps"][0].pop("foresight")  # one step without a block: the trajectory still has blocks
  aug.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
  trajs, _ = read_trajectories(aug)
  tok = train_sentencepiece((render_text(t) for t in trajs), model_prefix=str(tmp_path / "sp"), vocab_size=400)
  assert cli.main(["data-stats", str(aug), "--tokenizer", str(tmp_path / "sp.model"), "--quiet"]) == 0
  s = _last_json(capsys)
  n = sorted(len(tok.encode(render_text(t))) for t in trajs)
  assert s["token_unit"] == "tokenizer" and s["with_foresight_blocks"] == 21
  assert s["tokens"] == {"mean": round(statistics.fmean(n), 2), "p50": n[10], "p95": n[19], "max": n[20]}
  assert n[19] < n[20] and n[0] < n[10]  # the order statistics are told apart on this data
  assert s["calibration"]["n"] > 0
  assert cli.main(["data-stats", raw, "--quiet"]) == 0
  plain = _last_json(capsys)
  assert plain["with_foresight_blocks"] == 0 and plain["calibration"] is None and plain["token_unit"] == "whitespace"
