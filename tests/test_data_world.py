"""Synthetic world and math tasks: determinism, search format, expert vs noisy policies."""
import hashlib
import math
import os
import random
import re
import subprocess
import sys

import pytest

from foresight_jax.data.generate import GenConfig, generate, make_worlds, measure_throughput
from foresight_jax.data.math_tasks import FAMILIES, calc, rollout_math, sample_math_task
from foresight_jax.data.policies import NOISE, Noise, noise_from_meta, rollout_search
from foresight_jax.data.schema import Trajectory, validate_record
from foresight_jax.data.scoring import exact_match, extract_boxed, math_match, normalize_answer
from foresight_jax.data.world import (World, doc_titles, extract_objects, format_docs, split_docs)

_DIGEST = ("from foresight_jax.data.generate import GenConfig, generate;import hashlib;"
           "print(hashlib.sha256(''.join(t.dumps() for t in generate(GenConfig(seed=3), 60))"
           ".encode()).hexdigest())")


@pytest.fixture(scope="module")
def world():
  return World(11)


def test_world_is_deterministic_per_seed():
  a, b, c = World(4), World(4), World(5)
  assert a.docs == b.docs and a.docs != c.docs
  ta = [t.dumps() for t in generate(GenConfig(seed=3), 60)]
  assert ta == [t.dumps() for t in generate(GenConfig(seed=3), 60)]
  assert ta != [t.dumps() for t in generate(GenConfig(seed=4), 60)]
  # ... and across processes with different string hashing (no set-order dependence).
  here = hashlib.sha256("".join(ta).encode()).hexdigest()
  env = dict(os.environ, PYTHONHASHSEED="12345")
  out = subprocess.run([sys.executable, "-c", _DIGEST], env=env, capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == here


def test_generation_shards_seeds_weights_and_retriever():
  """generate's contract: trajectory i depends only on (seed, i), so shards concatenate to the
  whole; world w of seed s is World(s * 1000 + w) (the RL tasks' worlds use the same seeds); the
  policy weights are honoured; a search_fn replaces the world's own search."""
  cfg = GenConfig(seed=6, n_worlds=2)
  worlds = make_worlds(cfg)
  assert [w.seed for w in worlds] == [6000, 6001]
  whole = [t.dumps() for t in generate(cfg, 10, worlds=worlds)]
  assert whole == ([t.dumps() for t in generate(cfg, 4, worlds=worlds)]
                   + [t.dumps() for t in generate(cfg, 6, start=4, worlds=worlds)])
  only = GenConfig(seed=6, n_worlds=2, math_fraction=0.0, policies={"expert": 1.0, "heavy": 0.0})
  assert {t.meta["policy"] for t in generate(only, 20, worlds=worlds)} == {"expert"}
  fixed = lambda q, k: [("Elsewhere", "Nothing to see here.")] * k  # noqa: E731
  obs = [s.observation for t in generate(only, 5, worlds=worlds, search_fn=fixed) for s in t.steps if s.observation]
  assert obs and all(o.startswith("Doc 1(Title: Elsewhere) Nothing to see here.") for o in obs)


def test_search_returns_top3_in_exact_format(world):
  person = world.by_kind["person"][0]
  obs = world.search_text(f"{person} birthplace")
  pat = r"Doc 1\(Title: ([^)]+)\) (.+) Doc 2\(Title: ([^)]+)\) (.+) Doc 3\(Title: ([^)]+)\) (.+)"
  m = re.fullmatch(pat, obs)
  assert m and m.group(1) == person  # the entity's own page ranks first
  docs = split_docs(obs)
  assert len(docs) == 3 and format_docs(docs) == obs
  assert all(d in world.docs for d in docs)
  city = world.entities[person].rel["born_in"]
  assert extract_objects(obs, person, "born_in") == [city]
  # a query with no known word still returns 3 documents; search_fn plugs in another retriever
  assert len(split_docs(world.search_text("qqqq zzzz"))) == 3
  fixed = lambda q, k: [("T", f"text for {q}")] * k  # noqa: E731
  assert world.search_text("hello", search_fn=fixed) == " ".join(
      f"Doc {i}(Title: T) text for hello" for i in (1, 2, 3))


def test_search_k_travels_from_the_world_config_to_every_search():
  """WorldConfig.search_k is the one place the number of documents per search is set: World.search,
  the data generator's episodes, the foresight builder's rebuilt worlds and the eval tool use it."""
  from foresight_jax.data.foresight import SuccessEstimator, ForesightConfig
  from foresight_jax.data.world import WorldConfig
  from foresight_jax.evals.agent import make_tool_fn
  one = World(11, WorldConfig(search_k=1))
  person = one.by_kind["person"][0]
  assert len(one.search(f"{person} birthplace")) == 1 and len(one.search(person, 3)) == 3
  assert one.docs == World(11).docs  # the documents do not depend on it
  cfg = GenConfig(seed=3, math_fraction=0.0, world=WorldConfig(search_k=1))
  trajs = list(generate(cfg, 12))
  obs = [s.observation for t in trajs for s in t.steps if s.action.tool == "search"]
  assert obs and all(len(split_docs(o)) == 1 for o in obs)
  assert all(t.meta["world_config"]["search_k"] == 1 for t in trajs)
  # the Monte Carlo estimator rebuilds the world from the recorded config: same k
  env = SuccessEstimator(ForesightConfig(), worlds={}).env_for(trajs[0], 0)
  assert env.world.config.search_k == 1 and len(split_docs(env.observe(trajs[0].steps[0].action))) == 1
  tool = make_tool_fn([one])
  assert len(split_docs(tool(trajs[0].task, "search", person))) == 1
  assert len(split_docs(make_tool_fn([one], 2)(trajs[0].task, "search", person))) == 2


def test_documents_state_each_relation(world):
  for title, text in world.docs:
    e = world.entities[title]
    for rel, obj in e.rel.items():
      assert extract_objects(f"Doc 1(Title: {title}) {text}", title, rel) == [obj], (title, rel)


def _world_bm25_ranking(docs, query, k1=1.2, b=0.75):
  """The world's search written out: BM25 with the title counted twice, each distinct query word once,
  ties and zero scores in document order."""
  words = lambda x: re.findall(r"[a-z0-9]+", x.lower())  # noqa: E731
  bags = [words(t) * 2 + words(x) for t, x in docs]
  avg, n = sum(map(len, bags)) / len(bags), len(bags)
  scores = []
  for bag in bags:
    s = 0.0
    for w in set(words(query)):
      df, tf = sum(w in d for d in bags), bag.count(w)
      if tf:
        s += math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(bag) / avg))
    scores.append(s)
  return sorted(range(n), key=lambda i: (-round(scores[i], 9), i)), scores


def test_world_search_is_bm25_with_titles_twice_and_ties_to_the_earlier_doc():
  w = World(2)
  w.docs = [("Vel", "a river town by the sea"), ("Oskar Lund", "oskar lund was born in vel vel"),
            ("Marn", "a river town by the sea"), ("Lund", "vel town"), ("Tor", "nothing in common")]
  w._index()
  w._cache = {}
  for q in ("river town", "vel", "vel vel vel town", "oskar lund vel", "lund", "sea marn"):
    order, scores = _world_bm25_ranking(w.docs, q)
    assert [w.docs.index(d) for d in w.search(q, len(w.docs))] == order, (q, scores)
  assert [t for t, _ in w.search("river town", 2)] == ["Vel", "Marn"]  # an exact tie: the earlier doc first


def test_extract_objects_in_order_of_appearance():
  text = "The source of Rhine lies near Amsterdam. Rhine rises near Bonn."
  assert extract_objects(text, "Rhine", "source_in") == ["Amsterdam", "Bonn"]
  assert extract_objects("Rhine rises near Bonn. The source of Rhine lies near Amsterdam.", "Rhine",
                         "source_in") == ["Bonn", "Amsterdam"]


@pytest.mark.parametrize("hops", [1, 2, 3, 4])
def test_questions_answerable_by_expert_noisy_lower(world, hops):
  rng = random.Random(hops)
  tasks = [world.sample_question(rng, hops, f"q{hops}-{i}") for i in range(60)]
  for t in tasks:
    path = t.meta["path"]
    assert len(t.meta["relations"]) == hops and len(set(path)) == hops + 1
    assert t.answers == [path[-1]] and t.question.endswith("?")
    assert t.question.startswith("Who is ") == (t.meta["kinds"][-1] == "person"), t.question
  acc = {}
  for name in ("expert", "mild", "heavy"):
    trajs = [rollout_search(world, t, name, seed=i) for i, t in enumerate(tasks)]
    for tr in trajs:
      assert not validate_record(tr.to_json()), tr.to_json()
    acc[name] = sum(tr.score for tr in trajs) / len(trajs)
  assert acc["expert"] >= 0.95 and acc["heavy"] < acc["mild"] <= acc["expert"]
  expert = rollout_search(world, tasks[0], "expert")
  assert [s.action.tool for s in expert.steps] == ["search"] * hops + ["answer"]


def test_search_policy_stops_retries_is_forced_and_misanswers_as_documented(world):
  """policies.SearchPolicy's rules one by one: stop_early answers with the entity resolved so far,
  so never before the first hop; a failed extraction is retried once with the bare name; the last
  allowed step answers; wrong_answer never names the right entity. And a trajectory's recorded
  noise (a dict in meta, unknown keys ignored) is what branching replays."""
  rng = random.Random(5)
  for i in range(10):
    t = world.sample_question(rng, 2, f"early-{i}")
    tr = rollout_search(world, t, Noise(stop_early=1.0))
    assert [s.action.tool for s in tr.steps] == ["search", "answer"], [s.action for s in tr.steps]
    assert tr.steps[-1].action.arg == t.meta["path"][1]
  # an observation that never states the object: one retry with the bare name, then an answer
  t = world.sample_question(rng, 2, "no-luck")
  tr = rollout_search(world, t, "expert", search_fn=lambda q, k: [("Elsewhere", "Nothing to see here.")])
  assert [s.action.tool for s in tr.steps] == ["search", "search", "answer"]
  assert tr.steps[1].action.arg == t.meta["start"] == tr.steps[2].action.arg
  # out of steps: the last step is forced to answer with what is known by then
  t = world.sample_question(rng, 3, "short")
  tr = rollout_search(world, t, "expert", max_steps=2)
  assert [s.action.tool for s in tr.steps] == ["search", "answer"] and tr.steps[-1].action.arg == t.meta["path"][1]
  # wrong_answer picks another title of the last observation, never the right entity
  for i in range(10):
    t = world.sample_question(rng, 1, f"wrong-{i}")
    tr = rollout_search(world, t, Noise(wrong_answer=1.0))
    others = [x for x in doc_titles(tr.steps[-2].observation) if x != t.answers[0]]
    assert (tr.score == 0.0) == bool(others), (tr.steps[-1].action, others)
  assert noise_from_meta({"noise": {"misread": 0.3, "retired_knob": 1}}) == Noise(misread=0.3)
  assert noise_from_meta({"noise": "heavy"}) == NOISE["heavy"] and noise_from_meta(None) == NOISE["mild"]
  assert noise_from_meta({}, default="expert") == NOISE["expert"]


def test_math_tasks_and_solvers():
  rng = random.Random(0)
  for fam in sorted(FAMILIES):
    for i in range(20):
      t = sample_math_task(rng, f"{fam}{i}", fam)
      assert 0 <= int(t.answers[0]) <= 999
      tr = rollout_math(t, "expert")
      assert tr.score == 1.0 and [s.action.tool for s in tr.steps][-1] == "answer"
      assert all(s.observation == str(v) for s, v in zip(tr.steps, t.meta["values"]))
      assert extract_boxed(tr.final_answer) == t.answers[0]
  tasks = [sample_math_task(rng, f"m{i}") for i in range(150)]
  acc = {n: sum(rollout_math(t, n, seed=i).score for i, t in enumerate(tasks)) / len(tasks)
         for n in ("expert", "mild", "heavy")}
  assert acc["expert"] == 1.0 and acc["heavy"] < acc["mild"] < 1.0


def test_calc_is_safe_and_exact():
  assert calc("comb(13, 4) * 4 % 1000") == "860" and calc("12 ** 2") == "144"
  assert calc("2 ^ 10") == "1024" and calc("-3 + 5") == "2"
  for bad in ("__import__('os')", "1 / 0", "7 // 0", "2 ** 5000", "2 ** -1", "999999 ** 6", "factorial(100)", "x + 1", "1.5 * 2"):
    assert calc(bad).startswith("error:"), bad


def test_scoring():
  assert normalize_answer("The  Beatles!") == "beatles"
  assert exact_match("the beatles", ["Beatles"]) == 1.0 and exact_match("Beatle", ["Beatles"]) == 0
  assert math_match("so \\boxed{1,024}", ["1024"]) == 1.0
  assert math_match("\\boxed{\\frac{1}{2}} then \\boxed{7}", ["7"]) == 1.0
  assert math_match("7", ["7"]) == 0.0 and math_match("7", ["7"], require_boxed=False) == 1.0


def test_generation_report_and_outcome_mix():
  # speed is a benchmark figure (benchmarks/data_generation.py, BUILD_NOTES), never asserted here
  r = measure_throughput(300, GenConfig(seed=2))
  assert r["n"] == 300 and r["seconds"] > 0 and r["tokens_per_traj"] > 50 and 0.3 < r["success_rate"] < 0.95
  trajs = list(generate(GenConfig(seed=2), 300))
  assert r["success_rate"] == sum(t.score for t in trajs) / 300  # the same seeded trajectories
  assert {t.task.domain for t in trajs} == {"search", "math"}
  assert {t.meta["policy"] for t in trajs} == set(NOISE)
  assert all(isinstance(Trajectory.from_json(t.to_json()), Trajectory) for t in trajs[:50])
