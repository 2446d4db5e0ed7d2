"""Trajectory schema: round trips, the validator/reader on bad input, and real-data adapters."""
import json

import pytest

from foresight_jax.data.adapters import read_math, read_qa_jsonl
from foresight_jax.data.schema import (Action, Foresight, Step, Task, Trajectory, read_trajectories,
                                       validate_record, write_trajectories)


def _traj(**over):
  t = Trajectory(
      task=Task("t1", "search", "Who founded Zorvex Labs?", ["Aldo Kessin"]),
      steps=[Step("find the founder", Action("search", "Zorvex Labs founder"),
                  "Doc 1(Title: Zorvex Labs) Zorvex Labs was founded by Aldo Kessin.",
                  Foresight(['search "Zorvex Labs founder" -> founded by Aldo Kessin'], 0.7)),
             Step("done", Action("answer", "Aldo Kessin"), None)],
      score=1.0, source="unit")
  d = t.to_json()
  d.update(over)
  return d


def test_round_trip_and_math_key():
  d = _traj()
  t = Trajectory.from_json(json.loads(json.dumps(d)))
  assert t.to_json() == d and t.final_answer == "Aldo Kessin"
  m = Task("m1", "math", "What is 2+2?", ["4"]).to_json()
  assert m["problem"] == "What is 2+2?" and "question" not in m
  d2 = _traj(task=m)
  d2["steps"][1]["action"] = {"tool": "answer", "answer": "\\boxed{4}"}
  assert Trajectory.from_json(d2).task.question == "What is 2+2?"
  with pytest.raises(ValueError, match="outcome.score"):
    Trajectory.from_json(_traj(outcome={"score": 2}))


def test_validator_reports_every_problem_of_a_record():
  d = _traj(outcome={"score": 1.5}, source=3)
  d["task"].pop("answers")
  d["steps"][0]["action"] = {"tool": "browse", "url": "x"}
  d["steps"][0]["observation"] = ""
  d["steps"][1]["observation"] = "oops"
  fields = {p.field: p.kind for p in validate_record(d, "f.jsonl", 9)}
  assert fields == {"task.answers": "missing", "steps[0].action.tool": "unknown_tool",
                    "steps[1].observation": "type", "outcome.score": "range", "source": "type"}
  # observation of an unknown tool is not judged; a known tool's empty observation is
  d["steps"][0]["action"] = {"tool": "search", "query": "q"}
  assert any(p.field == "steps[0].observation" and p.kind == "empty"
             for p in validate_record(d, "f.jsonl", 9))


def test_reader_keeps_valid_records_and_locates_every_bad_line(tmp_path):
  good = json.dumps(_traj())
  lines = [
      good.encode(),                                                    # 1 ok
      b'{"task": {"id": "x", ',                                         # 2 malformed JSON
      good.replace("Aldo", "Al\xe9do").encode("latin-1"),               # 3 non-UTF-8 byte
      json.dumps(_traj(outcome={"score": -0.2})).encode(),              # 4 score out of range
      b"",                                                              # 5 blank
      json.dumps(_traj(steps=[{"thought": "t", "action": {"tool": "fly", "to": "x"},
                               "observation": "o"}])).encode(),         # 6 unknown tool
      json.dumps(_traj(steps=[{"thought": "t", "action": {"tool": "search", "query": "q"},
                               "observation": "  "}])).encode(),        # 7 empty observation
      json.dumps(_traj(task={"id": 5, "domain": "chat", "question": "q",
                             "answers": "a"})).encode(),                # 8 mistyped task fields
      b"[1, 2]",                                                        # 9 not an object
      json.dumps(_traj(source="\udc80")).encode(),                      # 10 lone surrogate
      good.encode(),                                                    # 11 ok
  ]
  path = tmp_path / "t.jsonl"
  path.write_bytes(b"\n".join(lines) + b"\n")
  recs, rep = read_trajectories(path)
  assert len(recs) == 2 and rep.accepted == 2 and rep.rejected == 8 and rep.read == 10
  assert rep.blank == 1 and rep.accepted + rep.rejected == rep.read
  msgs = [str(p) for p in rep.problems]
  expect = {2: "<json>", 3: "<line>", 4: "outcome.score", 6: "steps[0].action.tool",
            7: "steps[0].observation", 9: "<record>", 10: "source"}
  for line, fld in expect.items():
    assert any(m.startswith(f"{path}:{line}:{fld}:") for m in msgs), (line, fld, msgs)
  for fld in ("task.id", "task.domain", "task.answers"):
    assert any(m.startswith(f"{path}:8:{fld}:") for m in msgs), (fld, msgs)
  assert rep.reasons["encoding"] == 2 and rep.reasons["malformed_json"] == 1
  assert "rejected=8" in rep.summary()


def test_reader_truncates_and_says_so(tmp_path):
  d = _traj()
  d["steps"] = [{"thought": f"s{i}", "action": {"tool": "search", "query": f"q{i}"},
                 "observation": f"o{i}"} for i in range(5)]
  path = tmp_path / "t.jsonl"
  n = write_trajectories(path, [Trajectory.from_json(d), Trajectory.from_json(_traj())])
  recs, rep = read_trajectories(path, max_steps=3)
  assert n == 2 and [len(r.steps) for r in recs] == [3, 2]
  assert rep.truncated == 1 and rep.accepted == 2 and recs[0].meta["truncated_from"] == 5
  assert rep.notes == [f"{path}:1:steps: truncated from 5 to 3 steps"]


def test_qa_adapter(tmp_path):
  path = tmp_path / "nq_test.jsonl"
  path.write_text("\n".join([
      json.dumps({"id": "test_0", "question": "who wrote it?", "golden_answers": ["A", "B"]}),
      json.dumps({"question": "where?", "golden_answers": "Paris"}),
      json.dumps({"question": "", "golden_answers": ["x"]}),
      json.dumps({"question": "q", "golden_answers": []}),
      json.dumps({"golden_answers": ["x"]}),
      "{bad json",
      json.dumps({"id": True, "question": "which?", "golden_answers": [" Rome "]}),  # a bool is no id
  ]) + "\n")
  tasks, rep = read_qa_jsonl(path)
  assert [(t.id, t.domain, t.answers) for t in tasks] == [("test_0", "search", ["A", "B"]),
                                                          ("nq_test-2", "search", ["Paris"]),
                                                          ("nq_test-7", "search", ["Rome"])]
  msgs = [str(p) for p in rep.problems]
  for line, fld in [(3, "question"), (4, "golden_answers"), (5, "question"), (6, "<json>")]:
    assert any(m.startswith(f"{path}:{line}:{fld}:") for m in msgs), (line, fld, msgs)
  assert rep.accepted == 3 and rep.rejected == 4


def test_math_adapter_jsonl_and_json(tmp_path):
  jl = tmp_path / "aime.jsonl"
  jl.write_text("\n".join([json.dumps({"problem": "p1", "answer": 42}),
                           json.dumps({"Problem": "p2", "Answer": "070", "ID": "2024-I-2"}),
                           json.dumps({"question": "p3", "answer": "3/4"}),
                           json.dumps({"problem": "p4", "answer": 1000}),
                           json.dumps({"problem": "p5", "answer": True}),    # JSON true is no integer
                           json.dumps({"problem": "p6", "answer": "-5"})]) + "\n")  # an integer, out of range
  tasks, rep = read_math(jl)
  assert [(t.id, t.question, t.answers) for t in tasks] == [("aime-1", "p1", ["42"]),
                                                            ("2024-I-2", "p2", ["70"])]
  assert {(p.line, p.field, p.kind) for p in rep.problems} == {(3, "answer", "type"), (4, "answer", "range"),
                                                               (5, "answer", "type"), (6, "answer", "range")}
  js = tmp_path / "aime25.json"
  js.write_text('[\n  {"question": "a", "answer": "7"},\n  {"question": "b"},\n'
                '  {"question": "c", "answer": 12}\n]\n')
  tasks, rep = read_math(js)
  assert [t.answers for t in tasks] == [["7"], ["12"]] and all(t.domain == "math" for t in tasks)
  assert [str(p).split(": ")[0] for p in rep.problems] == [f"{js}:3:answer"]
  # a byte-order mark before the array, and the {"data": [...]} wrapper some dumps use
  bom = tmp_path / "bom.json"
  bom.write_bytes("\ufeff".encode() + b'[{"question": "a", "answer": "7"}]')
  wrapped = tmp_path / "wrapped.json"
  wrapped.write_text(json.dumps({"data": [{"problem": "a", "answer": 8}, {"problem": "b", "answer": 9}]}))
  assert [t.answers for t in read_math(bom)[0]] == [["7"]]
  assert [t.answers for t in read_math(wrapped)[0]] == [["8"], ["9"]]


def _set(path, value):
  """An edit of the valid record at a dotted path ("steps.0.foresight.success")."""
  def edit(d):
    *head, last = path.split(".")
    for k in head:
      d = d[int(k)] if k.isdigit() else d[k]
    d[int(last) if last.isdigit() else last] = value
  return edit


@pytest.mark.parametrize("edit,field,kind", [
    (_set("outcome", {"score": True}), "outcome.score", "type"),         # JSON true is no number
    (_set("task.answers", []), "task.answers", "empty"),
    (_set("task.answers", ["Aldo Kessin", 3]), "task.answers[1]", "type"),
    (_set("steps.0.action.query", "  "), "steps[0].action.query", "empty"),
    (_set("steps.0.foresight.success", 1.25), "steps[0].foresight.success", "range"),
    (_set("steps.0.foresight.success", float("nan")), "steps[0].foresight.success", "range"),
    (_set("steps.0.foresight.success", True), "steps[0].foresight.success", "type"),
    (lambda d: d.update(steps=d["steps"][::-1]), "steps[0]", "order"),  # an answer before a search
])
def test_each_bad_field_is_named_alone(edit, field, kind):
  """One defect, one problem naming its field: nothing else of the record is blamed."""
  d = _traj()
  assert validate_record(d) == []
  edit(d)
  assert [(p.field, p.kind) for p in validate_record(d, "f.jsonl", 3)] == [(field, kind)]


def test_reader_skips_a_byte_order_mark_and_names_a_bad_byte_by_column(tmp_path):
  good = json.dumps(_traj())
  bad = good.replace("Aldo", "Al\xe9do", 1).encode("latin-1")
  path = tmp_path / "bom.jsonl"
  path.write_bytes(b"\xef\xbb\xbf" + good.encode() + b"\n" + bad + b"\n")
  recs, rep = read_trajectories(path)
  assert len(recs) == 1 and rep.notes == [f"{path}:1: UTF-8 byte-order mark ignored"]
  column = good.index("Aldo") + 3  # 1-based column of the byte after "Al"
  assert [str(p) for p in rep.problems] == [f"{path}:2:<line>: invalid UTF-8 byte 0xe9 at column {column}"]
