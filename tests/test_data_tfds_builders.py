"""TFDS builders (array_record) write and read back exactly, without TensorFlow.

Needs tensorflow-datasets and array-record (both already dependencies: grain pulls array-record);
TensorFlow must not be needed: one test runs the whole round trip in a subprocess where
TensorFlow looks uninstalled (import finders hide it) even if it is installed.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from foresight_jax.data import tfds_builders as tb
from foresight_jax.data.generate import GenConfig, generate
from foresight_jax.data.schema import Task, write_trajectories

REPO = Path(__file__).resolve().parents[1]
N = 80


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  d = tmp_path_factory.mktemp("tfds")
  trajs = list(generate(GenConfig(seed=7, math_fraction=0.3), N))
  path = d / "synth.jsonl"
  write_trajectories(path, trajs)
  bad = trajs[0].to_json()
  bad["outcome"]["score"] = 3.0
  with open(path, "a", encoding="utf-8") as f:
    f.write("{broken json\n" + json.dumps(bad) + "\n\n")
  b = tb.build_trajectory_corpus([path], d / "data", name="synth-seed7", val_fraction=0.2)
  return trajs, path, b, d


def test_trajectory_corpus_round_trip(corpus):
  trajs, path, b, d = corpus
  assert {t.task.domain for t in trajs} == {"search", "math"}
  md = b.info.metadata
  assert (md["accepted"], md["rejected"]) == (N, 2)
  rep = md["reports"][0]
  assert rep["reasons"] == {"malformed_json": 1, "range": 1} and rep["blank"] == 1
  assert any(f"{path}:{N + 1}:" in p for p in rep["problems"])
  sizes = md["split_sizes"]
  assert sizes["train"] + sizes["validation"] == N and sizes["validation"] > 0
  assert {k: v.num_examples for k, v in b.info.splits.items()} == sizes

  # Read back through a builder rebuilt from the directory alone, in input order.
  rb = tfds.builder_from_directory(b.data_dir)
  assert rb.info.metadata["split_sizes"] == sizes
  back = {}
  for split in ("train", "validation"):
    src = rb.as_data_source(split)
    assert len(src) == sizes[split]
    idx = [int(src[i]["index"]) for i in range(len(src))]
    assert idx == sorted(idx)  # disable_shuffling keeps the input order
    for i in range(len(src)):
      ex = src[i]
      t = tb.decode_trajectory(ex)
      orig = trajs[int(ex["index"])]
      assert ex["id"].decode() == orig.task.id and ex["domain"].decode() == orig.task.domain
      assert ex["source"].decode() == orig.source and int(ex["n_steps"]) == len(orig.steps)
      assert float(ex["score"]) == pytest.approx(orig.score, abs=1e-6)  # float32 feature
      back[int(ex["index"])] = t
  assert sorted(back) == list(range(N))
  assert [back[i] for i in range(N)] == trajs                       # dataclass equality
  assert [back[i].dumps() for i in range(N)] == [t.dumps() for t in trajs]  # byte-exact JSON

  # The helpers and tfds.data_source (registered name / config) read the same thing.
  train = tb.read_trajectory_split(b.data_dir, "train")
  assert train == [trajs[i] for i in sorted(back) if trajs[i].task.id in
                   {t.task.id for t in train}]
  ds = tfds.data_source("foresight_trajectories/synth_seed7", data_dir=str(d / "data"),
                        split="validation")
  assert [tb.decode_trajectory(ds[i]) for i in range(len(ds))] == \
      tb.read_trajectory_split(b, "validation")
  assert "tensorflow" not in sys.modules


def test_split_by_task_id_and_reuse(corpus):
  trajs, path, b, d = corpus
  tr = {t.task.id for t in tb.read_trajectory_split(b.data_dir, "train")}
  va = {t.task.id for t in tb.read_trajectory_split(b.data_dir, "validation")}
  assert tr and va and not tr & va
  # Same name again: the prepared copy is reused (no rebuild, same splits) ...
  again = tb.build_trajectory_corpus([path], d / "data", name="synth-seed7", val_fraction=0.5)
  assert again.read_reports == [] and again.info.metadata["split_sizes"] == \
      b.info.metadata["split_sizes"]
  # ... unless overwrite.
  fresh = tb.build_trajectory_corpus([path], d / "data", name="synth-seed7", val_fraction=0.5,
                                     overwrite=True)
  assert fresh.info.metadata["split_sizes"]["validation"] > \
      b.info.metadata["split_sizes"]["validation"]
  assert len(fresh.read_reports) == 1 and fresh.read_reports[0].rejected == 2
  assert len(tb.read_trajectory_split(fresh.data_dir, "validation")) == \
      fresh.info.metadata["split_sizes"]["validation"]


def test_explicit_validation_files_and_errors(tmp_path, corpus):
  trajs = corpus[0]
  a, v = tmp_path / "a.jsonl", tmp_path / "v.jsonl"
  write_trajectories(a, trajs[:30])
  write_trajectories(v, trajs[30:40])
  b = tb.build_trajectory_corpus([a], tmp_path / "data", name="files", val_paths=[v])
  assert b.info.metadata["split_rule"] == "files"
  assert tb.read_trajectory_split(b, "train") == trajs[:30]
  assert tb.read_trajectory_split(b, "validation") == trajs[30:40]

  junk = tmp_path / "junk.jsonl"
  junk.write_text('{"task": 1}\n[]\n')
  with pytest.raises(ValueError, match="no valid trajectories.*rejected=2"):
    tb.build_trajectory_corpus([junk], tmp_path / "data", name="junk")
  with pytest.raises(FileNotFoundError, match="trajectory file not found: .*nope.jsonl"):
    tb.build_trajectory_corpus([tmp_path / "nope.jsonl"], tmp_path / "data", name="nope")
  with pytest.raises(ValueError, match="pass paths="):
    tb.ForesightTrajectories(data_dir=str(tmp_path / "empty")).download_and_prepare(
        file_format="array_record")
  one = tmp_path / "one.jsonl"
  write_trajectories(one, trajs[:1])
  b1 = tb.build_trajectory_corpus([one], tmp_path / "data", name="one")
  assert b1.info.metadata["split_sizes"] == {"train": 1}
  assert b1.info.metadata["split_notes"]


def test_eval_set_round_trip(tmp_path):
  from foresight_jax.data.real_sources import load_eval_set
  p = tmp_path / "bamboogle.jsonl"
  p.write_text("".join(json.dumps(r) + "\n" for r in [
      {"id": "b0", "question": "Who was president when the Ünïcode standard began?",
       "golden_answers": ["George H. W. Bush", "Bush"]},
      {"question": "missing answers"},
      {"question": "second", "golden_answers": ["2"]}]), encoding="utf-8")
  tasks, rep = load_eval_set("bamboogle", p)
  tasks.append(Task("m1", "math", "What is 6*7?", ["42"], meta={"nested": {"k": [1, 2.5]}}))
  tasks.append(Task("m2", "math", "No meta.", ["0"]))
  b = tb.build_eval_set(tasks, tmp_path / "data", "bamboogle", report=rep)
  back = tb.read_eval_split(b.data_dir)
  assert back == tasks
  md = tfds.builder_from_directory(b.data_dir).info.metadata
  assert md["n_tasks"] == 4 and md["report"]["rejected"] == 1
  assert md["report"]["problems"][0].startswith(f"{p}:2:golden_answers")
  src = tfds.data_source("foresight_eval_tasks/bamboogle", data_dir=str(tmp_path / "data"),
                         split="test")
  assert json.loads(src[0]["answers"]) == ["George H. W. Bush", "Bush"]
  b2 = tb.build_registered_eval_set("nq", p, tmp_path / "data")  # any BYO file
  assert [t.id for t in tb.read_eval_split(b2)] == ["b0", "nq-3"]
  assert "tensorflow" not in sys.modules


_NO_TF = textwrap.dedent("""
    import sys
    # As if TensorFlow were not installed, even where it is: every import finder answers
    # "not found" for tensorflow (find_spec -> None, `import tensorflow` -> ModuleNotFoundError).
    class Hide:
      def __init__(self, inner):
        self.inner = inner
      def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
          return None
        return self.inner.find_spec(name, path, target)
      def __getattr__(self, attr):
        return getattr(self.inner, attr)
    sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
    import importlib.util
    assert importlib.util.find_spec("tensorflow") is None
    try:
      import tensorflow
      raise AssertionError("tensorflow still importable")
    except ModuleNotFoundError:
      pass
    from foresight_jax.data import tfds_builders as tb
    from foresight_jax.data.generate import GenConfig, generate
    from foresight_jax.data.schema import write_trajectories
    import tensorflow_datasets as tfds
    out = sys.argv[1]
    trajs = list(generate(GenConfig(seed=3), 20))
    write_trajectories(out + "/t.jsonl", trajs)
    b = tb.build_trajectory_corpus([out + "/t.jsonl"], out + "/data", name="notf")
    rb = tfds.builder_from_directory(b.data_dir)
    got = []
    for split in rb.info.splits:
      src = rb.as_data_source(split)
      got += [(int(src[i]["index"]), tb.decode_trajectory(src[i])) for i in range(len(src))]
    got = [t for _, t in sorted(got, key=lambda x: x[0])]
    assert got == trajs, "round trip differs"
    assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
    print("NO_TF_OK", len(got))
""")


def test_round_trip_with_tensorflow_blocked(tmp_path):
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  r = subprocess.run([sys.executable, "-c", _NO_TF, str(tmp_path)], capture_output=True,
                     text=True, env=env, timeout=120, cwd=str(tmp_path))
  assert r.returncode == 0, r.stderr[-3000:]
  assert "NO_TF_OK 20" in r.stdout


def test_grain_reads_the_data_source(corpus):
  grain = pytest.importorskip("grain")
  src = tfds.builder_from_directory(corpus[2].data_dir).as_data_source("train")
  ds = grain.MapDataset.source(src).map(tb.decode_trajectory)
  assert len(ds) == len(src) and ds[0] == tb.decode_trajectory(src[0])


def test_names_splits_and_notes_by_hand(tmp_path, corpus):
  trajs = corpus[0]
  assert tb.config_name(" Synth-Seed7 ") == "synth_seed7"
  with pytest.raises(ValueError, match="unusable corpus name"):
    tb.config_name("--")
  with pytest.raises(ValueError, match="outside"):
    tb.assign_splits(trajs, 1.0, 0)
  # a split the hash left empty gets the task nearest the boundary, and the notes name it
  u = {t.task.id: tb._unit(3, t.task.id) for t in trajs}
  tr, va, notes = tb.assign_splits(trajs, 1e-12, 3)
  low = min(u, key=u.get)
  assert {trajs[i].task.id for i in va} == {low} and notes == [f"validation was empty by hash; moved task {low!r} there"]
  tr, va, notes = tb.assign_splits(trajs, 1 - 1e-12, 3)
  high = max(u, key=u.get)
  assert {trajs[i].task.id for i in tr} == {high} and notes == [f"train was empty by hash; moved task {high!r} there"]
  # one task: no validation split, and both notes say why
  one = tmp_path / "one.jsonl"
  write_trajectories(one, trajs[:1])
  md = tb.build_trajectory_corpus([one], tmp_path / "data", name="one").info.metadata
  assert md["split_notes"] == ["a single task: no validation split", "empty split(s) not written: ['validation']"]
  # explicit validation files: their examples are numbered after the training ones
  a, v = tmp_path / "a.jsonl", tmp_path / "v.jsonl"
  write_trajectories(a, trajs[:5])
  write_trajectories(v, trajs[5:8])
  b = tb.build_trajectory_corpus([a], tmp_path / "data", name="numbered", val_paths=[v])
  src = b.as_data_source("validation")
  assert [int(src[i]["index"]) for i in range(len(src))] == [5, 6, 7]
  # max_steps: longer trajectories are cut, and the report counts them
  long = max(len(t.steps) for t in trajs[:8])
  b = tb.build_trajectory_corpus([a, v], tmp_path / "data", name="cut", max_steps=2, val_fraction=0.0)
  assert long > 2 and b.info.metadata["max_steps"] == 2
  assert all(len(t.steps) <= 2 for t in tb.read_trajectory_split(b, "train"))


def test_eval_set_duplicates_empty_and_aliases(tmp_path):
  tasks = [Task("q1", "search", "a?", ["x"]), Task("q1", "search", "b?", ["y"]), Task("q2", "math", "1+1", ["2"])]
  b = tb.build_eval_set(tasks, tmp_path / "data", "dups")
  assert b.info.metadata["duplicate_ids"] == 1 and b.info.metadata["domains"] == ["math", "search"]
  with pytest.raises(ValueError, match="no tasks to write"):
    tb.build_eval_set([], tmp_path / "data", "none")
  p = tmp_path / "nq.jsonl"
  p.write_text(json.dumps({"question": "q", "golden_answers": ["a"]}) + "\n")
  b = tb.build_registered_eval_set("natural-questions", p, tmp_path / "data")  # an alias of nq
  assert b.builder_config.name == "nq"
