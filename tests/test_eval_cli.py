"""`foresight-jax eval` end to end on a small model: the scripted agent of tests/_scripted_policy.py
(a bigram transformer that follows the turn grammar, searching for one word and answering another),
saved as an HF checkpoint with its tokenizer. Suites world, fanoutqa, champ and a registered
bring-your-own set run with --n 3 --k 2; receipts exist, every figure is in range, and the
figures recomputed from the receipts alone equal the printed ones."""
import json
import os

import pytest

from foresight_jax import cli
from foresight_jax.evals import receipts as rc
from foresight_jax.evals import suites as S

ANSWER, QUERY = "Brelland", "Paris"
COMMON = ["--n", "3", "--k", "2", "--set", "max_turns=2", "--set", "max_new_tokens=16", "--set",
          "retriever.max_passage_tokens=40", "--set", "world.n_worlds=2", "--set", "batch_size=8"]
RANGE_KEYS = ("em", "f1", "pass@2", "mean@2", "boxed", "math_verify", "judge_accuracy", "judge_em_agreement",
              "format_turn",
              "format_episode", "grounding", "brier", "ece")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
  from _scripted_policy import scripted_agent
  from foresight_jax.data.generate import GenConfig, generate
  from foresight_jax.data.render import render_prompt
  from foresight_jax.models.checkpoint import save_pretrained
  tasks = [t.task for t in generate(GenConfig(seed=7, n_worlds=2), 12)]
  texts = tuple(render_prompt(t) for t in tasks) * 3 + ("Paris is the capital of France.",) * 3
  cfg, params, tok = scripted_agent(QUERY, ANSWER, texts, p_search=0.5)
  out = str(tmp_path_factory.mktemp("scripted") / "hf")
  save_pretrained(cfg, params, out)
  tok.save(out)
  return out


@pytest.fixture(scope="module")
def byo_set(tmp_path_factory) -> str:
  """A FlashRAG-style file for the registered set `nq`: two questions the agent answers right."""
  path = tmp_path_factory.mktemp("byo") / "nq.jsonl"
  rows = [{"question": "Who founded Brelland?", "golden_answers": [ANSWER]},
          {"question": "Where is the Louvre?", "golden_answers": ["Paris"]},
          {"question": "Name the town on the river.", "golden_answers": ["the brelland", "x"]}]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


@pytest.fixture(scope="module")
def run(model_dir, byo_set, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("eval"))
  import contextlib
  import io
  buf = io.StringIO()
  with contextlib.redirect_stdout(buf):
    rc_ = cli.main(["eval", "--model", model_dir, "--suite", f"world,fanoutqa,champ,nq={byo_set}", "--out", out,
                    "--judge", "local", "--set", f"judge.model={model_dir}", "--set", "judge.batch_size=4", *COMMON])
  assert rc_ == 0
  lines = [json.loads(x) for x in buf.getvalue().splitlines() if x.startswith("{")]
  return out, lines


def test_eval_prints_one_figures_line_per_suite_in_range(run):
  out, lines = run
  assert [f["suite"] for f in lines] == ["world", "fanoutqa", "champ", "nq"]
  for f in lines:
    assert f["problems"] == 3 and f["samples"] == 2 and f["k"] == 2 and f["episodes"] == 6, f
    for key in RANGE_KEYS:
      assert key in f and (f[key] is None or 0.0 <= f[key] <= 1.0), (f["suite"], key, f[key])
    assert f["pass@2"] >= f["mean@2"] - 1e-12  # at least one of two draws is right at least as often as one
    assert os.path.isfile(f["receipts"]) and f["receipts"] == os.path.join(out, f"receipts_{f['suite']}.jsonl")
  by = {f["suite"]: f for f in lines}
  # FC-RL's device tool served the search suites; math ran on the host with calc
  assert by["world"]["search_tool_path"] == "device" and by["fanoutqa"]["search_tool_path"] == "device"
  assert by["champ"]["search_tool_path"] == "host" and by["champ"]["f1"] is None
  assert by["champ"]["boxed"] == 0.0 and by["fanoutqa"]["boxed"] is None  # it never writes \boxed{}
  # prose F1 is a search figure: a number somewhere in a math turn's prose is no answer
  assert by["champ"]["free_text_f1"] is None and by["fanoutqa"]["free_text_f1"] is not None
  # the scripted agent answers "Brelland": right on two of the three nq questions whenever it answers
  assert 0.0 < by["nq"]["em"] < 1.0 and by["nq"]["pass@2"] > 0.0
  assert by["fanoutqa"]["multihop"] + by["fanoutqa"]["subquestions"] == 3
  assert [json.loads(x) for x in open(os.path.join(out, "figures.jsonl"))] == lines


def test_figures_recomputed_from_receipts_equal_the_printed_ones(run):
  _, lines = run
  for f in lines:
    again = S.figures_from_receipts(f["receipts"], k=2)
    for key in ("em", "f1", "pass@2", "mean@2", "boxed", "math_verify", "judge_accuracy", "judge_n",
                "judge_em_agreement", "format_turn",
                "format_episode", "grounding", "brier", "ece", "n_estimates", "problems", "episodes"):
      assert again[key] == pytest.approx(f[key]) if f[key] is not None else again[key] is None, (f["suite"], key)
    # and EM straight off the episode receipts' recorded fields
    eps = [e for e in rc.read_receipts(f["receipts"]) if e["kind"] == "episode"]
    assert sum(e["em"] for e in eps) / len(eps) == pytest.approx(f["em"])
    assert all(e["em"] == e["outcome"] for e in eps)


def test_receipts_carry_samples_checks_and_judge_verdicts(run, model_dir):
  _, lines = run
  eps = [e for f in lines for e in rc.read_receipts(f["receipts"]) if e["kind"] == "episode"]
  assert {e["sample"] for e in eps} == {0, 1}
  # every figure line and receipt names its run by the model's whole path (stage exports are all hf/)
  label = os.path.normpath(model_dir)
  assert label.endswith(os.sep + "hf") and {f["model"] for f in lines} == {label}
  assert {r["run"] for f in lines for r in rc.read_receipts(f["receipts"])} == {label}
  for e in eps:
    assert {"em", "f1", "boxed_match", "math_verify", "judge", "answer_match", "suite"} <= set(e)
    j = e["judge"]
    assert j["name"].startswith("local:") and j["verdict"] in (True, False, None) and j["reason"]
    if e["answer"] is None:
      assert j["verdict"] is False  # nothing to grade
  assert any(e["answer"] is not None for e in eps)
  # the device tool's observations, decoded from the rollout's ids, are Search-R1 passages that BM25
  # found for the agent's query "Paris" in the Wikipedia leads (cut at max_passage_tokens)
  by = {f["suite"]: f["receipts"] for f in lines}
  searches = [r for r in rc.read_receipts(by["fanoutqa"]) if r["kind"] == "step" and not r["invalid"]
              and r["action"] and r["action"]["tool"] == "search"]
  assert searches and all(r["observation"].startswith("Doc 1(Title: ") and r["observation"].count("Doc ") >= 3
                          and "Paris" in r["observation"] for r in searches)


def test_host_tool_path_and_greedy_single_sample(model_dir, tmp_path, capsys):
  assert cli.main(["eval", "--model", model_dir, "--suite", "fanoutqa", "--out", str(tmp_path), "--judge", "none",
                   "--tool-path", "host", *COMMON, "--k", "1", "--n", "2"]) == 0
  f = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert f["search_tool_path"] == "host" and f["device_path_note"] == "tool_path=host"
  assert f["problems"] == 2 and f["samples"] == 1 and f["judge_n"] == 0 and f["judge_accuracy"] is None
  steps = [r for r in rc.read_receipts(f["receipts"]) if r["kind"] == "step" and r["action"]
           and r["action"]["tool"] == "search" and not r["invalid"]]
  # the host retriever answered the agent's query from the Wikipedia corpus, Search-R1 layout
  assert steps and all(s["observation"].startswith("Doc 1(Title: ") for s in steps)


@pytest.mark.parametrize("args,needle", [
    (["--suite", "nosuchset"], "nosuchset"),
    (["--k", "2", "--set", "temperature=0.0"], "temperature"),
    (["--k", "4", "--samples", "2"], "samples"),
    (["--set", "judge.kind=http"], "judge.base_url"),
    (["--set", "retriever.nope=1"], "retriever.nope"),
    (["--config", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "eval.py:huge")],
     "huge"),
])
def test_bad_input_is_one_clear_error(args, needle, tmp_path, capsys):
  rc_ = cli.main(["eval", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--suite", "champ",
                  *args])
  err = capsys.readouterr().err
  assert rc_ == 2 and needle in err and err.startswith("foresight-jax eval: error:"), err


def test_missing_model_names_the_path(tmp_path, capsys):
  assert cli.main(["eval", "--model", str(tmp_path / "nomodel"), "--out", str(tmp_path / "o"), "--suite", "champ",
                   "--judge", "none", "--n", "1", "--k", "1"]) == 2
  assert "nomodel" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["eval", "--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for opt in ("--model", "--suite", "--k", "--n", "--samples", "--out", "--judge", "--tool-path", "--config", "--set"):
    assert opt in out
  parser = cli.build_parser()
  sub = next(a for a in parser._actions if a.dest == "command").choices["eval"]
  assert all(a.help for a in sub._actions), [a.dest for a in sub._actions if not a.help]
  for word in ("world", "fanoutqa", "champ", "pass@k", "mean@k", "api_key_env", "receipts_<suite>.jsonl"):
    assert word in out
