"""In-graph FC-RL rewards (rl/rewards.py) against their host oracles (evals/rewards_host.py).

Cases, each an episode laid out as the rollout writes it (prompt ids, then each turn's ids encoded
on its own as GEN, each observation's as OBS): (1) synthetic-world trajectories with foresight
blocks, (2) mutations of them (tags dropped/duplicated/swapped, success numbers corrupted,
answers rewritten, empty queries, missing blocks, stray text, rollout lines broken, ...), (3)
FanOutQA answers with paraphrased predictions, (4) CHAMP integers in \\boxed{} forms. Two
tokenizers: sentencepiece trained on rendered trajectories, and SmolLM2's GGUF one (+ tags).
"""
import functools
import random
import re

import jax
import numpy as np
import pytest

from foresight_jax import assets
from foresight_jax.data import real_sources as rs
from foresight_jax.data import render
from foresight_jax.data.foresight import ForesightConfig, build_dataset
from foresight_jax.data.generate import GenConfig, generate, make_worlds
from foresight_jax.data.schema import Task
from foresight_jax.evals import rewards_host as H
from foresight_jax.rl import rewards as R
from foresight_jax.rl.layout import KIND_GEN, KIND_OBS, KIND_PAD, KIND_PROMPT
from foresight_jax.rl.vocab_tables import CONTENT, VocabTables, encode_golds
from foresight_jax.sharding import make_mesh
from foresight_jax.tokenizer import Tokenizer, train_sentencepiece

SPEC = H.RewardSpec(max_turns=6, max_answer_tokens=48, rollout_window=48, max_expect=24,
                    max_obs_tokens=160)
W = {"format": 0.2, "grounding": 0.3, "calibration": 0.5}
CHUNK = 128
_TAG = re.compile(r"</?(think|foresight|rollout|success|search|calc|answer|information)>")
SUCCESS_BODIES = ["0.6.4", "1.5", "abc", "", " 0.7 ", ".5", "1.", "1.00", "1.001", "0000.25",
                  "0 .5", "1e-1", "+0.5", "0.5\n", "\n 0.25 \t", "2", "0", "1", "00.99", "..5",
                  "0.99999", "1.0000000001", "10", "0.0", " . ", "0. 5", "0.5 0.6", "\u0660.\u0665",
                  "1" * 30]


def case(prompt, turns, obs, golds, domain):
  return {"prompt": prompt, "turns": list(turns), "obs": list(obs), "golds": list(golds),
          "domain": domain}


def traj_case(tr, variant):
  return case(render.render_prompt(tr.task, variant), [render.render_turn(s) for s in tr.steps],
              [None if s.observation is None else render.render_observation(s.observation)
               for s in tr.steps], tr.task.answers, tr.task.domain)


# ---------------------------------------------------------------------------------------------
# Mutations (each takes a case and a Random, returns a new case)


def _sub_turn(c, rng, fn, pick=None):
  c = dict(c, turns=list(c["turns"]), obs=list(c["obs"]))
  i = rng.randrange(len(c["turns"])) if pick is None else pick
  c["turns"][i] = fn(c["turns"][i])
  return c


def _tag_edit(rng, how):
  def fn(t):
    ms = list(_TAG.finditer(t))
    if not ms:
      return t
    m = rng.choice(ms)
    if how == "drop":
      return t[:m.start()] + t[m.end():]
    if how == "dup":
      return t[:m.end()] + m.group() + t[m.end():]
    n = rng.choice(ms)
    a, b = sorted((m, n), key=lambda x: x.start())
    return t if a is b else (t[:a.start()] + b.group() + t[a.end():b.start()] + a.group()
                             + t[b.end():])
  return fn


def _stray(rng):
  spots = ["<think>", "</think>", "<foresight>", "</rollout>", "</success>", "</foresight>",
           "<rollout>"]
  word = rng.choice(["oops", " x ", ".", "\u00e9", "1"])
  def fn(t):
    if rng.random() < 0.3:
      return (word + t) if rng.random() < 0.5 else (t + word)
    s = rng.choice(spots)
    after = s.startswith("</") or s == "<foresight>"
    return t.replace(s, s + word if after else word + s, 1)
  return fn


LINE_EDITS = [
    lambda x: x.replace("1. ", "", 1), lambda x: x.replace(" -> ", "->", 1),
    lambda x: x.replace(" -> ", " - > ", 1), lambda x: x.replace("1. ", "1.   ", 1),
    lambda x: "Plan:\n" + x, lambda x: "\n\n  " + x, lambda x: x.replace("1.", "12.", 1),
    lambda x: x.replace(" -> ", " -> the of a -> ", 1), lambda x: x + " 42 , ;",
    lambda x: "1.  -> " + x[3:], lambda x: x.replace(" -> ", " ->   ", 1) + " the",
    lambda x: x.replace("1. ", "1.\t", 1), lambda x: x.replace(" -> ", " \u00c9t\u00e9 -> ", 1),
    lambda x: x.replace("1. ", "1 . ", 1), lambda x: x.split(" -> ")[0],
    lambda x: "1.   -> " + x.split(" -> ")[-1], lambda x: "1.    -> a -> " + x.split(" -> ")[-1],
    lambda x: "1. \n-> x", lambda x: x.replace(" -> ", " \t-> ", 1),
    lambda x: x.replace(" -> ", " -->", 1), lambda x: x.upper()]


def _rollout_line(edit):
  def fn(t):
    m = re.search(r"<rollout>\n(.*)", t)
    return t if m is None else t[:m.start(1)] + edit(m.group(1)) + t[m.end(1):]
  return fn


def _answer_variants(g, rng, domain, other):
  if domain == "math":
    return rng.choice([f"\\boxed{{{g}}}", f"\\boxed{{ {g} }}", f"\\boxed{{{g}0}}", g,
                       f"\\boxed{{{other}}}", f"\\boxed{{$-{g}$}}", f"\\boxed{{{g}"])
  return rng.choice([g, g.upper(), "The " + g + ".", f"  {g}!!", g.replace(" ", "   "), other,
                     f"an {g}", "", "  ", f'"{g.lower()}"', g[: max(1, len(g) // 2)],
                     g + " ." * rng.choice([5, 60])])  # right, but too long with 60


def mutate(c, rng, answers_pool):
  kinds = ["drop", "dup", "swap", "success", "answer", "query", "block", "stray", "early",
           "lastturn", "rollout", "rollout", "nest", "info", "cut", "obs"]
  k = rng.choice(kinds)
  if k in ("drop", "dup", "swap"):
    return _sub_turn(c, rng, _tag_edit(rng, k))
  if k == "success":
    body = rng.choice(SUCCESS_BODIES)
    return _sub_turn(c, rng, lambda t: re.sub(
        r"<success>.*?</success>", lambda m: f"<success>{body}</success>", t, flags=re.S))
  if k == "answer":
    g = rng.choice(c["golds"]) if c["golds"] else "x"
    v = _answer_variants(g, rng, c["domain"], rng.choice(answers_pool))
    return _sub_turn(c, rng, lambda t: re.sub(r"<(answer|search|calc)>.*?</\1>",
                                              lambda m: f"<answer> {v} </answer>", t, flags=re.S),
                     pick=len(c["turns"]) - 1)
  if k == "query":
    q = rng.choice(["", " ", "\n", "  \t "])
    return _sub_turn(c, rng, lambda t: re.sub(
        r"<(search|calc)>.*?</\1>", lambda m: f"<{m.group(1)}>{q}</{m.group(1)}>", t, flags=re.S))
  if k == "block":
    return _sub_turn(c, rng, lambda t: re.sub(r"<foresight>.*?</foresight>\n?", "", t, flags=re.S))
  if k == "stray":
    return _sub_turn(c, rng, _stray(rng))
  if k == "early" and len(c["turns"]) > 1:
    return _sub_turn(c, rng, lambda t: re.sub(r"<(search|calc)>(.*?)</\1>", r"<answer>\2</answer>",
                                              t), pick=rng.randrange(len(c["turns"]) - 1))
  if k == "lastturn" and len(c["turns"]) > 1:
    return dict(c, turns=c["turns"][:-1], obs=c["obs"][:-1])
  if k == "rollout":
    return _sub_turn(c, rng, _rollout_line(rng.choice(LINE_EDITS)))
  if k == "nest":
    return _sub_turn(c, rng, lambda t: t.replace("</think>", "<search> q </search></think>", 1))
  if k == "info":
    info = "</foresight><information>x</information>"
    return _sub_turn(c, rng, lambda t: t.replace("</foresight>", info, 1))
  if k == "cut":
    return _sub_turn(c, rng, lambda t: t[:rng.randrange(1, len(t))])
  obs = [o for o in c["obs"] if o is not None]
  return dict(c, obs=[None if o is None else rng.choice(obs) for o in c["obs"]])


# ---------------------------------------------------------------------------------------------
# Real-data cases


def _turn(rollout, success, action):
  return (f"<think> I should act. </think>\n<foresight>\n<rollout>\n{rollout}\n</rollout>\n"
          f"<success>{success}</success>\n</foresight>\n{action}")


def _strings(a):
  if isinstance(a, (int, float)):
    return [str(a)]
  if isinstance(a, str):
    return [a]
  if isinstance(a, list) and all(isinstance(x, str) for x in a):
    return a
  return []


def fanout_cases(n, rng):
  tasks, _ = rs.load_fanoutqa_dev()
  pool = [(t.question, t.answers[:12], t.meta["evidence_titles"]) for t in tasks]
  pool += [(s["question"], _strings(s["answer"])[:12], [s["evidence_title"] or "x"])
           for t in tasks for s in t.meta["subquestions"]]
  pool = [p for p in pool if p[1]]
  rng.shuffle(pool)
  every = [a for _, golds, _ in pool for a in golds]
  out = []
  for q, golds, titles in pool[:n]:
    g = rng.choice(golds)
    pred = _answer_variants(g, rng, "search", rng.choice(every))
    prompt = render.render_prompt(Task("f", "search", q, golds))
    last = _turn(f"1. answer -> {golds[0]}", f"0.{rng.randint(0, 99):02d}",
                 f"<answer> {pred} </answer>")
    if rng.random() < 0.5:
      out.append(case(prompt, [last], [None], golds, "search"))
      continue
    first = _turn(f'1. search "{q[:40]}" -> {rng.choice(golds)} {titles[0]}\n2. answer -> {g}',
                  rng.choice(["0.50", "0.9", "1"]), f"<search> {q[:40]} </search>")
    obs = render.render_observation(
        f"Doc 1(Title: {titles[0]}) {' '.join(golds[:3])} is the answer.")
    out.append(case(prompt, [first, last], [obs, None], golds, "search"))
  return out


def champ_cases(rng):
  tasks, _ = rs.load_champ_integer()
  arabic = str.maketrans("0123456789", "".join(chr(0x660 + d) for d in range(10)))
  box = lambda x: "\\boxed{" + x + "}"  # noqa: E731
  forms = [lambda g: box(g), lambda g: box(f" {g} "), lambda g: f"${box(g)}$",
           lambda g: box(f"{int(g):,}"), lambda g: box("0" + g), lambda g: box("+" + g),
           lambda g: box("-" + g), lambda g: box(str(int(g) + 1)), lambda g: box(g + ".0"),
           lambda g: box("\\frac{1}{2}") + " so " + box(g), lambda g: box(g) + " or " + box("7"),
           lambda g: box("{" + g + "}"), lambda g: box(g)[:-1], lambda g: g,
           lambda g: box(f"$ {g} $"), lambda g: box(g.translate(arabic)), lambda g: box("\n" + g),
           lambda g: box(f"{g[:1]} {g[1:]}"), lambda g: box("-0"), lambda g: box("$$")]
  out = []
  for t in tasks:
    for form in rng.sample(forms, 2):
      last = _turn(f"1. answer -> {t.answers[0]}", "0.70",
                   f"<answer> {form(t.answers[0])} </answer>")
      out.append(case(render.render_prompt(t), [last], [None], t.answers, "math"))
  # no rng draw below (the cases above stay as they were). Commas are dropped before the integer is
  # read, but CHAMP's integers are too small for `{:,}` to write one: split the gold by a comma.
  # A signed zero reads as "0": golds of 0 against -0 forms
  for t in tasks[:4]:
    g = t.answers[0]
    last = _turn(f"1. answer -> {g}", "0.70", f"<answer> {box(g[:1] + ',' + g[1:])} </answer>")
    out.append(case(render.render_prompt(t), [last], [None], t.answers, "math"))
  for zero in ("-0", "-000", "+0", "- 0"):
    last = _turn("1. answer -> 0", "0.70", f"<answer> {box(zero)} </answer>")
    out.append(case(render.render_prompt(tasks[0]), [last], [None], ["0"], "math"))
  return out


# ---------------------------------------------------------------------------------------------
# Layout, evaluation, comparison


def layout(tok, cases, s):
  tokens = np.zeros((len(cases), s), np.int32)
  kind = np.full((len(cases), s), KIND_PAD, np.int32)
  turn = np.full((len(cases), s), -1, np.int32)
  ids = []
  for r, c in enumerate(cases):
    row = [(tok.encode(c["prompt"]), KIND_PROMPT, -1)]
    tids = [tok.encode(t) for t in c["turns"]]
    oids = [None if o is None else tok.encode(o) for o in c["obs"]]
    for t, (a, o) in enumerate(zip(tids, oids)):
      row += [(a, KIND_GEN, t)] + ([] if o is None else [(o, KIND_OBS, t)])
    flat = [(i, k, t) for seg, k, t in row for i in seg]
    assert len(flat) <= s, (len(flat), s)
    tokens[r, :len(flat)], kind[r, :len(flat)], turn[r, :len(flat)] = zip(*flat)
    ids.append((tids, oids))
  return tokens, kind, turn, ids


@functools.lru_cache(maxsize=None)
def graph_fn(variant):
  """One jitted compute_rewards per variant, shared by the tests (one compile per shape)."""
  return jax.jit(functools.partial(R.compute_rewards, weights=W, variant=variant, spec=SPEC))


@functools.lru_cache(maxsize=None)
def format_fn(variant):
  return jax.jit(functools.partial(R.turn_format, variant=variant, spec=SPEC))


def batch_arrays(tok, cases):
  """(tokens, kind, turn, golds, is_math) of all cases, rows padded to a multiple of CHUNK (the
  last row repeated), and each case's (turn ids, observation ids)."""
  lens = [len(tok.encode(c["prompt"])) + sum(len(tok.encode(x)) for x in c["turns"] + c["obs"] if x)
          for c in cases]
  tokens, kind, turn, ids = layout(tok, cases, -(-max(lens) // 256) * 256)
  golds = encode_golds([c["golds"] for c in cases], [c["domain"] == "math" for c in cases])
  is_math = np.array([c["domain"] == "math" for c in cases])
  pad = -len(cases) % CHUNK
  a = [np.concatenate([x, np.repeat(x[-1:], pad, 0)])
       for x in (tokens, kind, turn, golds.chars, golds.length, is_math)]
  return (a[0], a[1], a[2], R.Golds(a[3], a[4]), a[5]), ids


def chunks(args):
  for i in range(0, args[0].shape[0], CHUNK):
    yield jax.tree.map(lambda x: x[i:i + CHUNK], args)


def run_chunks(fn, args, n):
  """fn on CHUNK-row slices (fixed shapes: one compile); outputs of the first n rows."""
  outs = [jax.tree.map(np.asarray, fn(*sl)) for sl in chunks(args)]
  return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)


def compare(tok, vocab, cases, ids, out, variant):
  """Per reward: [n cases, n agreeing, first disagreements]."""
  r, comps, det = out
  stats = {k: [0, 0, []] for k in ("format", "success", "outcome", "grounding", "calibration", "R")}
  count = lambda text: len(tok.encode(text))  # noqa: E731
  for b, (c, (tids, oids)) in enumerate(zip(cases, ids)):
    texts = [tok.decode(x) for x in tids]
    h = H.episode_rewards(texts, tids, oids, c["golds"], c["domain"], vocab, variant, SPEC, W,
                          count)
    n = len(texts)
    succ = [(v is not None, 0.0 if v is None else v) for v in h["success"]]
    grd = [(g is not None, g or 0.0) for g in h["turn_grounding"]]
    checks = {
        "format": (h["turn_ok"] == det["format_ok"][b, :n].tolist()
                   and abs(h["format"] - comps["format"][b]) < 1e-6),
        "success": all(v == det["success_valid"][b, t] and abs(x - det["success"][b, t]) < 1e-6
                       for t, (v, x) in enumerate(succ)),
        "outcome": h["outcome"] == comps["outcome"][b],
        "grounding": (all(v == det["grounding_valid"][b, t] and abs(x - det["grounding"][b, t])
                          < 1e-5 for t, (v, x) in enumerate(grd))
                      and abs(h["grounding"] - comps["grounding"][b]) < 1e-5),
        "calibration": abs(h["calibration"] - comps["calibration"][b]) < 1e-5,
        "R": abs(h["R"] - r[b]) < 1e-5,
    }
    for k, ok in checks.items():
      stats[k][0] += 1
      stats[k][1] += ok
      if not ok and len(stats[k][2]) < 3:
        stats[k][2].append((b, c["turns"][-1][-300:], {
            k: h[k] for k in ("turn_ok", "success", "outcome", "turn_grounding")}))
  return stats


def assert_agree(name, stats):
  print(f"\n{name}:", {k: f"{v[1]}/{v[0]}" for k, v in stats.items()})
  for k, (n, agree, bad) in stats.items():
    assert n >= 200 and agree == n, (k, f"{agree}/{n}", bad)


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def data():
  cfg = GenConfig(seed=11)
  worlds = make_worlds(cfg)
  raw = list(generate(cfg, 100, worlds=worlds))
  full = build_dataset(raw, ForesightConfig(variant="full"), worlds)
  rng = random.Random(0)
  real = [traj_case(t, "full") for t in full]
  pool = [a for c in real for a in c["golds"]]
  mutated = [mutate(rng.choice(real), rng, pool) for _ in range(260)]
  mutated += [mutate(m, rng, pool) for m in mutated[:60]]  # two mutations at once
  # every rollout-line edit on a first turn (followed by an observation: grounding is scored)
  mutated += [_sub_turn(c, rng, _rollout_line(e), pick=0) for c in real[:12] for e in LINE_EDITS]
  # a rollout with nothing to say (no rng draw: the cases after these stay as they were)
  mutated += [_sub_turn(c, rng, functools.partial(re.sub, r"<rollout>.*?</rollout>", f"<rollout>{ws}</rollout>",
                                                  flags=re.S), pick=0)
              for c, ws in zip(real[12:16], ["", " ", "\n", "\n \t\n"])]
  # the gold followed by more words: exact match, not a prefix match (no rng draw either)
  more = functools.partial(re.sub, r"</answer>", " and more</answer>")
  mutated += [_sub_turn(c, rng, more, pick=len(c["turns"]) - 1) for c in real[16:20]]
  # every success body once (the random mutations draw only some of them), and bodies whose last
  # token starts with one space (SmolLM2's " ."): the space is inside the number
  body = lambda b: functools.partial(re.sub, r"<success>.*?</success>", f"<success>{b}</success>", flags=re.S)
  mutated += [_sub_turn(c, rng, body(b), pick=0) for c, b in zip(real[20:], SUCCESS_BODIES + ["0 .", "1 ."])]
  cases = real + mutated + fanout_cases(260, rng) + champ_cases(rng)
  return {"full": full, "raw": raw, "worlds": worlds, "real": real, "cases": cases}


def _setup(tok, data):
  tables, vocab = VocabTables.build(tok), H.HostVocab.from_tokenizer(tok)
  args, ids = batch_arrays(tok, data["cases"])
  fn = lambda *a: graph_fn("full")(*a, tables)  # noqa: E731
  return {"tok": tok, "tables": tables, "vocab": vocab, "args": args, "ids": ids,
          "out": run_chunks(fn, args, len(data["cases"]))}


@pytest.fixture(scope="module")
def sp(data):
  texts = [render.render_text(t) for t in data["full"]]
  return _setup(train_sentencepiece(texts, None, 2048), data)


@pytest.fixture(scope="module")
def smol(data):
  from foresight_jax.train.stages_data import add_foresight_tokens
  return _setup(add_foresight_tokens(Tokenizer.load(assets.smollm2_gguf())), data)


# ---------------------------------------------------------------------------------------------
# Tests


def test_agreement_sentencepiece(data, sp):
  """Every reward, in-graph vs oracle, on all ~1100 cases; and the cases are not trivial."""
  assert_agree("sentencepiece",
               compare(sp["tok"], sp["vocab"], data["cases"], sp["ids"], sp["out"], "full"))
  _, comps, det = sp["out"]
  assert comps["format"][:len(data["real"])].min() == 1.0  # the builder's episodes are well formed
  for k in ("outcome", "format"):  # both right and wrong occur
    assert 0.1 < (comps[k] == 1).mean() < 0.95, k
  assert (comps["calibration"] == 0).any() and comps["calibration"].std() > 0.05
  scored = np.arange(SPEC.max_turns) < det["n_turns"][:, None]
  assert (~det["success_valid"][scored]).sum() >= 20 and det["success_valid"][scored].mean() > 0.5
  g = det["grounding"][det["grounding_valid"]]
  assert 0.1 < (g > 0).mean() < 0.95 and ((g > 0) & (g < 1)).any()
  capped = [c for c in data["cases"] if c["domain"] == "search"  # right, but over the token cap
            and len(sp["tok"].encode(H.answer_body(c["turns"][-1]) or "")) > SPEC.max_answer_tokens
            and H.outcome(c["turns"], c["golds"], "search") == 1]
  assert len(capped) >= 3


def test_agreement_smollm2(data, smol):
  raw = smol["tables"].raw  # 49k ids stay cheap: uint8 bytes, C = 32 (runs of up to 81 squeezed)
  assert raw.shape[1] <= 32 and raw.dtype == np.uint8
  assert_agree("smollm2",
               compare(smol["tok"], smol["vocab"], data["cases"], smol["ids"], smol["out"], "full"))


@pytest.mark.parametrize("variant", ["state", "none"])
def test_format_other_variants(data, sp, variant):
  """Episodes built for the variant, mutated, and full ones, under the variant's grammar."""
  tok, tables = sp["tok"], sp["tables"]
  built = build_dataset(data["raw"][:60], ForesightConfig(variant=variant), data["worlds"])
  rng = random.Random(1)
  own = [traj_case(t, variant) for t in built]
  cases = own + [mutate(rng.choice(own), rng, ["x"]) for _ in range(160)] + data["real"][:40]
  args, ids = batch_arrays(tok, cases)
  ok, n_turns = run_chunks(lambda *a: format_fn(variant)(*a[:3], tables), args, len(cases))
  agree = 0
  for b, (tids, _) in enumerate(ids):
    want, _ = H.format_reward([tok.decode(x) for x in tids], variant)
    agree += want == ok[b, :n_turns[b]].tolist() and n_turns[b] == len(tids)
  print(f"\nformat ({variant}): {agree}/{len(cases)}")
  assert agree == len(cases) >= 200
  assert 0.1 < ok[:, 0].mean() < 0.95


def test_token_bytes_concatenate_to_decode(data, sp, smol):
  for s in (sp, smol):
    tok, vocab = s["tok"], s["vocab"]
    for c in data["real"][:20] + data["cases"][-300:-280]:
      for text in c["turns"] + [o for o in c["obs"] if o]:
        ids = tok.encode(text)
        assert b"".join(vocab.id_bytes[i] for i in ids) == tok.decode(ids).encode()


def _primitives(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn.primitive.name
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from _primitives(sub)


def test_no_callbacks_and_mesh_matches_single_device(sp):
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (tests/conftest.py forces 8 host devices)")
  first = next(chunks(sp["args"]))
  fn = functools.partial(R.compute_rewards, weights=W, variant="full", spec=SPEC)
  names = set(_primitives(jax.make_jaxpr(fn)(*first, sp["tables"]).jaxpr))
  assert {"scatter", "dot_general"} <= names  # the walk sees the real ops
  assert not [n for n in names if "callback" in n], names
  want = jax.tree.map(lambda x: x[:CHUNK], sp["out"])  # computed on one device, chunk by chunk
  with jax.set_mesh(make_mesh(2, 2, 2)):
    got = graph_fn("full")(*first, sp["tables"])
    assert len(got[0].sharding.device_set) == 8
    got = jax.tree.map(np.asarray, got)
  jax.tree.map(np.testing.assert_array_equal, want, got)


def test_grounding_counts_content_words_only(sp):
  """Grounding by hand: stopwords, digits and punctuation are not content, so a forecast made of
  them scores 0 however much the observation repeats them; content words are clipped counts."""
  tok, vocab = sp["tok"], sp["vocab"]
  words = [w for w in ("search", "Doc", "Title", "information") if len(tok.encode(" " + w)) == 1]
  assert len(words) >= 2, words
  a, b = words[:2]

  def g(expect, observation):
    turn = (f"<think> go </think>\n<foresight>\n<rollout>\n1. search x -> {expect}\n</rollout>\n"
            "<success>0.5</success>\n</foresight>\n<search> x </search>")
    return H.turn_grounding(tok.encode(turn), tok.encode(" " + observation), vocab, SPEC)

  assert [len(tok.encode(" " + w)) for w in ("the", "of", "a", "is")] == [1, 1, 1, 1]
  assert g("the of a is", "the of a is the of a is") == 0.0
  assert g("the 42 , of", "the 42 , of") == 0.0
  assert g(f"the {a} of {b}", f"{a} and {b}") == 1.0        # stopwords are not in the count
  assert g(f"{a} {a} {b} {b}", f"{a} {b} {b}") == 0.75       # clipped: {a} counts once
  assert g(f"{a} {b}", "nothing here") == 0.0
  # special ids (the chat markers a tool turn's observation may hold) are never content, in the
  # device tables as in the host vocabulary, though their text ("<|user|>" -> "user") is a word
  special = sorted(tok.special_ids)
  words = [i for i in special if H.token_key(vocab.id_bytes[i])]
  assert words, [tok.decode([i]) for i in special]
  flags, canon = np.asarray(sp["tables"].flags), np.asarray(sp["tables"].canon)
  assert not any(flags[i] & CONTENT for i in special) and all(canon[i] == -1 for i in special)
  assert all(vocab.content_key(i) is None for i in special)


def test_utf8_decode_is_pythons_replace_decoder():
  """The in-graph decoder of answer bytes against `bytes.decode("utf-8", "replace")` on byte
  strings a byte-level tokenizer can emit: overlong forms, surrogates, values past U+10FFFF,
  truncated sequences (one U+FFFD per maximal subpart), stray continuation bytes, random bytes."""
  from foresight_jax.rl import vocab_tables as vt
  cases = [b"abc", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\xa0\x80", b"\xed\xa0\x80",
           b"\xed\x9f\xbf", b"\xf0\x80\x80\x80", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf",
           b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xe1\x80A", b"\xe1\x80", b"\xf1\x80\x80", b"\x80\x80",
           "\u00c9t\u00e9 \u65e5\u672c \U0001f600".encode(), b"\xc3", b"a\xffb", b"\xc2\xc2\xa9"]
  rng = random.Random(0)
  pool = list(range(0x30, 0x7b)) + list(range(0x80, 0x100)) * 2
  cases += [bytes(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(1000)]
  s = np.zeros((len(cases), 24), np.int32)
  for i, c in enumerate(cases):
    s[i, :len(c)] = list(c)
  cp, count = vt.utf8_decode(jax.numpy.asarray(s), jax.numpy.asarray([len(c) for c in cases]))
  cp, count = np.asarray(cp), np.asarray(count)
  for i, c in enumerate(cases):
    assert list(cp[i, :count[i]]) == [ord(ch) for ch in c.decode("utf-8", "replace")], c


def test_calibration_and_combine_by_hand():
  value = np.array([[0.2, 0.9, 0.5], [0.7, 0.0, 0.0], [0.3, 0.3, 0.3]], np.float32)
  valid = np.array([[True, True, False], [True, False, False], [False, False, False]])
  y = np.array([1.0, 0.0, 1.0], np.float32)
  want = [1 - ((0.2 - 1) ** 2 + (0.9 - 1) ** 2) / 2, 1 - 0.7 ** 2, 0.0]  # no estimate: 0
  np.testing.assert_allclose(R.calibration(value, valid, y), want, rtol=1e-6)
  assert H.calibration([0.2, 0.9], 1.0) == pytest.approx(want[0]) and H.calibration([], 1.0) == 0
  comps = {"outcome": np.array([1.0, 0.0]), "format": np.array([0.5, 1.0]),
           "calibration": np.array([0.9, 0.2])}
  w = {"format": 0.2, "grounding": 0, "calibration": 2.0}  # grounding dropped: no component needed
  np.testing.assert_allclose(R.combine(comps, w), [1 + 0.1 + 1.8, 0.2 + 0.4], rtol=1e-6)
  assert H.combine({k: v[0] for k, v in comps.items()}, w) == pytest.approx(2.9)
  np.testing.assert_allclose(R.combine(comps, {"outcome": 0.5}), [0.5, 0.0])
  with pytest.raises(ValueError, match="no 'grounding' component"):
    R.combine(comps, {"grounding": 0.1})
  with pytest.raises(ValueError, match="unknown reward weights"):
    R.combine(comps, {"fromat": 0.1})
  with pytest.raises(ValueError, match="unknown reward 'nope'"):
    R.get_reward("nope")
  assert set(R.REWARDS) == {"outcome", "format", "grounding", "calibration"}


@pytest.mark.slow
def test_registry_functions_match_compute_rewards(sp):
  """Each REWARDS[name] alone gives compute_rewards' component (slow: one compile each)."""
  tokens, kind, turn, golds, is_math = next(chunks(sp["args"]))
  batch = R.RewardBatch(tokens, kind, turn, golds, is_math)
  comps = jax.tree.map(lambda x: x[:CHUNK], sp["out"][1])
  for name in R.REWARDS:
    fn = jax.jit(functools.partial(R.get_reward(name), variant="full", spec=SPEC))
    np.testing.assert_allclose(fn(batch, sp["tables"]), comps[name], atol=1e-6, err_msg=name)


def test_errors_name_the_problem():
  tok = train_sentencepiece(["plain text without any tags " * 20] * 20, None, 300, extra_symbols=())
  with pytest.raises(ValueError, match="foresight tag '<think>' encodes to"):
    VocabTables.build(tok)
  with pytest.raises(ValueError, match="longer than the gold buffer's 4"):
    encode_golds([["Paris"], ["The Eiffel Tower"]], [False, False], max_len=4)
  with pytest.raises(ValueError, match="row 0 has 3 gold answers, more than the gold buffer's 2"):
    encode_golds([["a1", "b", "c"]], [False], max_golds=2)
  g = encode_golds([["The Eiffel Tower!", "x"], ["1,024", "n/a"]], [False, True])
  assert g.length.tolist() == [[12, 1], [4, -1]]  # "eiffel tower"; "1024", the non-integer dropped
