"""grain training pipeline: loss masks, packing invariants, determinism, exact resume, host
shards, sources, and an end-to-end check against the tiny model's loss."""
import collections
import dataclasses
import json

import numpy as np
import pytest

from foresight_jax.data.foresight import ForesightConfig, build_dataset
from foresight_jax.data.generate import GenConfig, generate, make_worlds
from foresight_jax.data.pipeline import (BATCH_KEYS, JsonlSource, PipelineConfig, RecordSource,
                                         batch_stats, example_targets, make_iterator,
                                         pipeline_counts, source_dataset, tokenize_trajectory)
from foresight_jax.data.pipeline_tokenize import ROLE_IDS
from foresight_jax.data.render import render_segments, render_text
from foresight_jax.data.schema import write_trajectories
from foresight_jax.tokenizer import train_sentencepiece

OBS, PROMPT, ASSIST = ROLE_IDS["observation"], ROLE_IDS["prompt"], ROLE_IDS["assistant"]


@pytest.fixture(scope="module")
def trajs():
  cfg = GenConfig(seed=5)
  worlds = make_worlds(cfg)
  return build_dataset(list(generate(cfg, 48, worlds=worlds)), ForesightConfig(variant="full"),
                       worlds)


@pytest.fixture(scope="module")
def tok(trajs):
  return train_sentencepiece([render_text(t) for t in trajs], None, vocab_size=700)


def run(source, tok, **kw):
  it = make_iterator(source, tok, PipelineConfig(**kw))
  return list(it), pipeline_counts(it)


def segments(batches):
  """Every packed example as (inputs, target-mask-of-its-tokens) in emission order."""
  out = []
  for b in batches:
    for r in range(b["inputs"].shape[0]):
      seg = b["segment_ids"][r]
      for s in range(1, seg.max() + 1):
        idx = np.flatnonzero(seg == s)
        out.append((b["inputs"][r, idx], b["loss_mask"][r, idx]))
  return out


def key(tokens):
  return tuple(int(t) for t in tokens)


# ---------------------------------------------------------------------------------------------
# Tokenization and masks


def test_masks_per_mode_and_boundary_exact(trajs, tok):
  tr = max(trajs, key=lambda t: len(t.steps))
  assert sum(s.observation is not None for s in tr.steps) >= 1
  segs = render_segments(tr)
  mid = tokenize_trajectory(tr, tok, "mid_training", with_roles=True)
  sft = tokenize_trajectory(tr, tok, "sft", with_roles=True)
  assert np.array_equal(mid["tokens"], sft["tokens"]) and np.array_equal(mid["roles"],
                                                                         sft["roles"])
  roles, toks = mid["roles"], mid["tokens"]
  assert toks[0] == tok.bos_id and toks[-1] == tok.eos_ids[0]
  assert mid["loss_mask"][0] == sft["loss_mask"][0] == 0  # BOS is never a target
  for ex in (mid, sft):
    assert (ex["loss_mask"][roles == OBS] == 0).all()   # observations never trained
    assert (ex["loss_mask"][roles == ASSIST] == 1).all()
  assert (mid["loss_mask"][roles == PROMPT] == 1).all()
  assert (sft["loss_mask"][roles == PROMPT] == 0).all()
  assert (roles == OBS).sum() > 0 and (roles == PROMPT).sum() > 0
  # boundary-exact: each segment's tokens are exactly its own encoding, in order
  body, pos = toks[1:-1], 0
  for s in segs:
    ids = tok.encode(s.text)
    assert list(body[pos:pos + len(ids)]) == ids
    pos += len(ids)
  assert pos == len(body) and tok.decode(body) == render_text(tr)
  # EOS belongs to the last segment: trained after a final answer, masked after an observation
  assert mid["loss_mask"][-1] == sft["loss_mask"][-1] == 1
  cut = dataclasses.replace(tr, steps=tr.steps[:-1])
  assert render_segments(cut)[-1].role == "observation"
  for mode in ("mid_training", "sft"):
    assert tokenize_trajectory(cut, tok, mode)["loss_mask"][-1] == 0


def test_config_errors():
  for bad in (dict(mode="rl"), dict(overlong="split"), dict(packing="worst_fit"),
              dict(seq_len=1), dict(num_epochs=0), dict(shard_index=0),
              dict(shard_index=2, shard_count=2)):
    with pytest.raises(ValueError):
      PipelineConfig(**bad)
  assert PipelineConfig().shard() == (0, 1)  # this process is host 0 of 1 (jax defaults)
  assert PipelineConfig(shard_index=1, shard_count=4).shard() == (1, 4)


# ---------------------------------------------------------------------------------------------
# Packing


def check_rows(batches, pad_id):
  for b in batches:
    assert set(b) == set(BATCH_KEYS)
    for k in BATCH_KEYS:
      assert b[k].dtype == (np.float32 if k == "loss_mask" else np.int32), k
    for r in range(b["inputs"].shape[0]):
      seg, pos = b["segment_ids"][r], b["positions"][r]
      inp, tgt, m = b["inputs"][r], b["targets"][r], b["loss_mask"][r]
      n = seg.max()
      used = np.flatnonzero(seg)
      # segments 1..n contiguous and in order, then padding only
      assert np.array_equal(seg[used], np.sort(seg[used])) and (used == np.arange(len(used))).all()
      assert set(np.unique(seg[used])) == set(range(1, n + 1))
      pad = seg == 0
      assert (m[pad] == 0).all() and (inp[pad] == pad_id).all() and (pos[pad] == 0).all()
      for s in range(1, n + 1):
        idx = np.flatnonzero(seg == s)
        assert np.array_equal(pos[idx], np.arange(len(idx)))  # positions restart
        assert np.array_equal(tgt[idx[:-1]], inp[idx[1:]])    # shifted within the segment
        assert m[idx[-1]] == 0 and tgt[idx[-1]] == pad_id     # no cross-segment target


@pytest.mark.parametrize("packing", ["first_fit", "best_fit"])
@pytest.mark.parametrize("overlong", ["truncate", "drop"])
def test_packing_invariants_and_counts(trajs, tok, packing, overlong):
  # rows of 2,048: these trajectories are 590-2,592 tokens, so some rows hold two (the boundary
  # checks of check_rows have something to check) and some trajectories are over the row length.
  # At 1,024 every row held one trajectory and a target across a boundary went unseen.
  T = 2048
  batches, counts = run(trajs, tok, seq_len=T, batch_size=4, packing=packing, overlong=overlong,
                        mode="mid_training", seed=1)
  assert all(b["inputs"].shape == (4, T) for b in batches)
  assert sum(int(b["segment_ids"][r].max()) >= 2 for b in batches for r in range(4)) >= 5
  check_rows(batches, tok.pad_id)
  expected = collections.Counter()
  masks = {}
  n_long = excess = long_tokens = 0
  for tr in trajs:
    ex = tokenize_trajectory(tr, tok, "mid_training")
    if len(ex["tokens"]) > T:
      n_long += 1
      excess += len(ex["tokens"]) - T
      long_tokens += len(ex["tokens"])
      if overlong == "drop":
        continue
      ex = {k: v[:T] for k, v in ex.items()}
    expected[key(ex["tokens"])] += 1
    masks[key(ex["tokens"])] = ex["loss_mask"]
  assert 0 < n_long < len(trajs)  # the test must exercise both paths
  got = segments(batches)
  # every (kept or truncated) example appears exactly once, whole and contiguous
  assert collections.Counter(key(s) for s, _ in got) == expected
  for s, m in got:  # per-position mask = token mask of the target
    assert np.array_equal(m[:-1], masks[key(s)][1:].astype(np.float32))
  n_tok = sum(len(s) for s, _ in got)
  assert sum(batch_stats(b)["tokens"] for b in batches) == n_tok == counts.tokens
  assert counts.examples == len(got) == sum(expected.values())
  assert counts.trained_tokens == sum(float(b["loss_mask"].sum()) for b in batches)
  if overlong == "truncate":
    assert (counts.truncated, counts.truncated_tokens, counts.dropped_overlong) == (n_long,
                                                                                    excess, 0)
  else:
    assert (counts.dropped_overlong, counts.dropped_overlong_tokens, counts.truncated) == (
        n_long, long_tokens, 0)
  assert counts.examples + counts.dropped_overlong == counts.read == len(trajs)


def test_sft_untrainable_examples_counted(trajs, tok):
  # rows too short to reach the first assistant token: nothing to train, every example counted
  batches, counts = run(trajs[:8], tok, seq_len=48, batch_size=2, mode="sft")
  assert batches == [] and counts.dropped_untrainable == 8 and counts.truncated == 0
  batches, counts = run(trajs[:8], tok, seq_len=48, batch_size=2, mode="mid_training")
  assert counts.truncated == counts.examples == 8 and len(segments(batches)) == 8


# ---------------------------------------------------------------------------------------------
# Order: shuffling, epochs, determinism, resume, host shards


def test_shuffle_per_epoch_and_determinism(trajs, tok):
  ids = [t.task.id for t in trajs]
  order = [t.task.id for t in source_dataset(trajs, PipelineConfig(seed=3, num_epochs=2))]
  e1, e2 = order[:len(ids)], order[len(ids):]
  assert sorted(e1) == sorted(e2) == sorted(ids) and e1 != e2 and e1 != ids
  again = [t.task.id for t in source_dataset(trajs, PipelineConfig(seed=3, num_epochs=2))]
  other = [t.task.id for t in source_dataset(trajs, PipelineConfig(seed=4, num_epochs=2))]
  assert again == order and other != order
  kw = dict(seq_len=1024, batch_size=2, seed=7)
  a, _ = run(trajs, tok, **kw)
  b, _ = run(trajs, tok, **kw)
  c, _ = run(trajs, tok, **{**kw, "seed": 8})
  assert len(a) == len(b) and all(
      np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in BATCH_KEYS)
  assert any(not np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, c))


@pytest.mark.parametrize("packing,threads", [("first_fit", 0), ("best_fit", 2)])
def test_exact_resume(trajs, tok, packing, threads):
  cfg = PipelineConfig(seq_len=512, batch_size=3, num_epochs=None, seed=11, packing=packing,
                       num_packing_bins=5, read_threads=threads)
  n, m = 23, 9  # crosses epoch boundaries (48 examples, ~3 rows a batch of 512 tokens)
  ref = make_iterator(trajs, tok, cfg)
  full = [next(ref) for _ in range(n + m)]
  it = make_iterator(trajs, tok, cfg)
  for _ in range(n):
    next(it)
  saved = json.dumps(it.get_state())   # JSON-serialisable
  fresh = make_iterator(trajs, tok, cfg)
  fresh.set_state(json.loads(saved))
  assert pipeline_counts(fresh) == pipeline_counts(json.loads(saved))
  assert 0 < pipeline_counts(fresh).examples <= pipeline_counts(it).examples
  for want in full[n:]:
    got = next(fresh)
    for k in BATCH_KEYS:
      np.testing.assert_array_equal(got[k], want[k])
  assert pipeline_counts(fresh) == pipeline_counts(ref)
  assert pipeline_counts(ref).examples > len(trajs)  # really went past one epoch


def test_host_shards_disjoint_and_complete(trajs, tok):
  ids = [t.task.id for t in trajs]
  shard_ids = [[t.task.id for t in source_dataset(trajs, PipelineConfig(shard_index=i,
                                                                        shard_count=2))]
               for i in range(2)]
  assert not set(shard_ids[0]) & set(shard_ids[1])
  assert sorted(shard_ids[0] + shard_ids[1]) == sorted(ids)
  # through the whole pipeline too: packed examples of the two hosts partition the data
  per_host = [collections.Counter(key(s) for s, _ in segments(
      run(trajs, tok, seq_len=8192, batch_size=2, shard_index=i, shard_count=2)[0]))
      for i in range(2)]
  whole = collections.Counter(key(s) for s, _ in segments(run(trajs, tok, seq_len=8192,
                                                                batch_size=2)[0]))
  assert not set(per_host[0]) & set(per_host[1]) and per_host[0] + per_host[1] == whole
  assert sum(whole.values()) == len(trajs)


# ---------------------------------------------------------------------------------------------
# Sources


def test_jsonl_and_record_sources(trajs, tok, tmp_path):
  sub = trajs[:10]
  path = tmp_path / "t.jsonl"
  write_trajectories(path, sub)
  with open(path, "a", encoding="utf-8") as f:
    f.write('{"task": {"id": "x"}}\n{not json\n')
  src = JsonlSource(path)
  assert (len(src), src.accepted, src.rejected) == (10, 10, 2) and "rejected=2" in src.summary()
  kw = dict(seq_len=2048, batch_size=2, seed=2)
  from_file, _ = run(str(path), tok, **kw)
  from_mem, _ = run(sub, tok, **kw)
  assert all(np.array_equal(x[k], y[k]) for x, y in zip(from_file, from_mem) for k in BATCH_KEYS)

  class ArrayRecordLike:  # what tfds.data_source gives: random access to dicts of bytes
    def __init__(self, recs):
      self.recs = recs

    def __len__(self):
      return len(self.recs)

    def __getitem__(self, i):
      return self.recs[i]

  recs = [{"trajectory": t.dumps().encode(), "id": t.task.id} for t in sub]
  recs.insert(3, {"trajectory": b'{"task": 1}', "id": "bad"})
  recs.insert(7, {"trajectory": b"\xff\xfe", "id": "bad2"})
  batches, counts = run(RecordSource(ArrayRecordLike(recs)), tok, **kw)
  assert counts.rejected == 2 and counts.examples == 10 and counts.read == 12
  assert collections.Counter(key(s) for s, _ in segments(batches)) == collections.Counter(
      key(s) for s, _ in segments(from_mem))
  with pytest.raises(TypeError):
    RecordSource(iter(recs))


def test_sources_from_every_supported_item(trajs, tmp_path):
  from foresight_jax.data.pipeline_sources import MemorySource, open_source, to_trajectory
  t = trajs[0]
  for item in (t, t.to_json(), t.dumps(), t.dumps().encode(), np.asarray(t.dumps()), {"trajectory": t.dumps()},
               {"blob": t.dumps().encode()}):
    got = to_trajectory(item, field="blob" if isinstance(item, dict) and "blob" in item else "trajectory")
    assert got.dumps() == t.dumps(), type(item)
  for bad, msg in ((b"\xff", "not UTF-8"), ("{oops", "malformed JSON"), (3, "unsupported record type int")):
    with pytest.raises(ValueError, match=msg):
      to_trajectory(bad)
  # several files: one source over all of them, each file's rejected lines counted
  paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
  write_trajectories(paths[0], trajs[:3])
  write_trajectories(paths[1], trajs[3:5])
  with open(paths[0], "a", encoding="utf-8") as f:
    f.write("{not json\n")
  src = open_source([str(p) for p in paths])
  assert isinstance(src, JsonlSource) and (len(src), src.rejected) == (5, 1)
  assert [x.task.id for x in src] == [x.task.id for x in trajs[:5]]  # files in the order given
  assert isinstance(open_source(list(trajs[:2])), MemorySource)


def test_tfds_array_record_source(trajs, tok, tmp_path):
  """A real `tfds` array_record data source (tfds_builders.py) plugs straight in."""
  tfds = pytest.importorskip("tensorflow_datasets")
  builders = pytest.importorskip("foresight_jax.data.tfds_builders")
  sub = trajs[:12]
  write_trajectories(tmp_path / "a.jsonl", sub)
  b = builders.build_trajectory_corpus([tmp_path / "a.jsonl"], tmp_path / "tfds", name="pipe")
  src = tfds.builder_from_directory(str(b.data_dir)).as_data_source("train")
  batches, counts = run(src, tok, seq_len=2048, batch_size=2)
  assert counts.rejected == 0 and counts.examples == len(src) > 0
  want = {key(tokenize_trajectory(t, tok)["tokens"][:2048]) for t in sub}
  assert {key(s) for s, _ in segments(batches)} <= want


# ---------------------------------------------------------------------------------------------
# End to end: synthetic world -> foresight blocks (full) -> pipeline -> tiny model


@pytest.fixture(scope="module")
def tiny_model(tok):
  import jax

  from foresight_jax.models.params import init_params
  from foresight_jax.models.presets import model_config
  from foresight_jax.train.losses import causal_lm_loss

  cfg = model_config("tiny", vocab_size=tok.vocab_size)
  params = init_params(cfg, jax.random.PRNGKey(0))
  loss_fn = jax.jit(lambda p, b: causal_lm_loss(cfg, p, b))
  return params, lambda batch: loss_fn(params, {k: np.asarray(v) for k, v in batch.items()})


@pytest.mark.parametrize("mode", ["mid_training", "sft"])
def test_end_to_end_tiny_model_loss(trajs, tok, tiny_model, mode):
  _, loss_fn = tiny_model
  assert all(s.foresight is not None and s.foresight.success is not None
             for t in trajs for s in t.steps)
  assert "<success>" in render_text(trajs[0])
  T = 2048
  # the first batch in which a row really holds several examples
  batch = next(b for b in make_iterator(trajs, tok, PipelineConfig(seq_len=T, batch_size=2,
                                                                   mode=mode, seed=5))
               if (b["segment_ids"].max(axis=1) >= 2).any())
  loss, aux = loss_fn(batch)
  assert np.isfinite(float(loss)) and float(aux["tokens"]) == batch["loss_mask"].sum() > 0
  # the same examples, unpacked, one per row (independent tokenization, no packing)
  by_tokens = {}
  for tr in trajs:
    ex = tokenize_trajectory(tr, tok, mode)
    by_tokens[key(ex["tokens"][:T])] = {k: v[:T] for k, v in ex.items()}
  num = den = 0.0
  packed = segments([batch])
  for s, _ in packed:
    single = example_targets(by_tokens[key(s)])
    # the model's defaults for an unpacked row (positions 0..L-1, one segment); the row is
    # right-padded to a multiple of 512 with loss_mask 0 so few shapes get compiled: causal
    # attention never lets a real token see the padding after it
    pad = -single["inputs"].shape[1] % 512
    row = {k: np.pad(single[k], ((0, 0), (0, pad))) for k in ("inputs", "targets", "loss_mask")}
    l1, _ = loss_fn(row)
    n = float(single["loss_mask"].sum())
    num += float(l1) * n
    den += n
  assert den == float(aux["tokens"])
  assert abs(num / den - float(loss)) < 1e-5, (num / den, float(loss))
