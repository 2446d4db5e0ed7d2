"""Sampler: cached decode == full recomputation, greedy == naive loop, determinism, top-k/top-p,
stop strings / eos / per-row limits, sharded == single device, and purity inside an outer jit."""
import functools
import itertools
import string

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foresight_jax import sampling as S
from foresight_jax import sharding
from foresight_jax.models import params as params_lib
from foresight_jax.models import presets, transformer

PRESETS = ["tiny", "tiny_mla"]
LENS = [3, 7, 5, 1, 6, 2, 7, 4]  # ragged prompt lengths for 8 left-padded rows


@functools.lru_cache(maxsize=None)
def _model(name):
  cfg = presets.model_config(name)
  return cfg, params_lib.init_params(cfg, jax.random.key(7))


def _prompts(cfg, lens=LENS, seed=0):
  """Left-padded [B, P] prompts plus the unpadded rows."""
  rng = np.random.default_rng(seed)
  rows = [rng.integers(3, cfg.vocab_size, n).astype(np.int32) for n in lens]
  width = max(lens)
  arr = np.zeros((len(rows), width), np.int32)
  for r, row in enumerate(rows):
    arr[r, width - len(row):] = row
  return arr, np.asarray(lens, np.int32), rows


_forward = jax.jit(transformer.forward, static_argnums=0)


def _naive_greedy(cfg, params, rows, n, width=None):
  """Greedy with a full no-cache forward per step (right-padded buffer: causality ignores the tail).
  A fixed `width` keeps one buffer shape across calls, so the forward compiles once."""
  b = len(rows)
  need = max(map(len, rows)) + n
  assert width is None or width >= need, (width, need)
  buf = np.zeros((b, width or need), np.int32)
  cur = np.asarray([len(r) for r in rows])
  for r, row in enumerate(rows):
    buf[r, :len(row)] = row
  toks, lps = [], []
  for _ in range(n):
    logits = np.asarray(_forward(cfg, params, jnp.asarray(buf))[0])[np.arange(b), cur - 1]
    t = logits.argmax(-1)
    lps.append(np.asarray(jax.nn.log_softmax(logits))[np.arange(b), t])
    buf[np.arange(b), cur] = t
    toks.append(t)
    cur += 1
  return np.stack(toks, 1), np.stack(lps, 1)


# (a) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_cached_decode_logits_equal_full_recomputation(name):
  cfg, params = _model(name)
  prompt, lens, rows = _prompts(cfg)
  b, p = prompt.shape
  k = 5
  cont = np.random.default_rng(1).integers(3, cfg.vocab_size, (b, k)).astype(np.int32)  # teacher-forced

  cache = transformer.init_cache(cfg, b, S.cache_length(p, k + 1))
  pos, seg = S.prompt_positions(jnp.asarray(lens), p)
  pf_logits, cache = _forward(cfg, params, jnp.asarray(prompt), pos, seg, cache, 0)
  step_logits = [np.asarray(pf_logits)[:, -1]]
  for j in range(k):
    lg, cache = _forward(cfg, params, jnp.asarray(cont[:, j:j + 1]), jnp.asarray(lens + j)[:, None],
                         jnp.ones((b, 1), jnp.int32), cache, p + j)
    step_logits.append(np.asarray(lg)[:, 0])

  # reference: each row UNPADDED (right-padded buffer, one compile; causality ignores the tail)
  seqs = np.zeros((b, p + k), np.int32)
  for r, row in enumerate(rows):
    seqs[r, :len(row) + k] = np.concatenate([row, cont[r]])
  full = np.asarray(_forward(cfg, params, jnp.asarray(seqs))[0])
  for r, row in enumerate(rows):
    n = len(row)
    # every real prompt position of the padded prefill matches the unpadded row
    err = np.abs(np.asarray(pf_logits)[r, p - n:] - full[r, :n]).max()
    assert err <= 1e-4, (r, err)
    for j, lg in enumerate(step_logits):
      err = np.abs(lg[r] - full[r, n - 1 + j]).max()
      assert err <= 1e-4, (r, j, err)


@pytest.mark.parametrize("name,overrides", [("tiny", {}), ("tiny", {"attention_bias": True, "qk_norm": True}),
                                            ("tiny_mla", {})])
def test_fused_decode_projections_equal_the_declared_ones(name, overrides):
  """`transformer.decode_params` (what the decode loop reads: q/k/v, MLA's q_a/kv_a and the MLP's
  gate/up each concatenated into one matmul) gives the same prefill and decode logits."""
  cfg = presets.model_config(name, **overrides)
  params = params_lib.init_params(cfg, jax.random.key(3))
  # biases start at zero: give each its own random values so the fused bias, and the q/k/v order
  # inside it, is checked too (one shared shift would hide k and v swapped)
  leaves, tree = jax.tree_util.tree_flatten_with_path(params)
  params = jax.tree_util.tree_unflatten(tree, [
      x + 0.1 * jax.random.normal(jax.random.key(i), x.shape, x.dtype) if "bias" in jax.tree_util.keystr(path) else x
      for i, (path, x) in enumerate(leaves)])
  fused = transformer.decode_params(cfg.replace(decode_fusion=True), params)
  assert "qkv" not in transformer.decode_params(cfg.replace(decode_fusion=False), params)["layers"][0]["attn"]
  lp, key = fused["layers"][0], "q_kv_a" if cfg.is_mla else "qkv"
  assert key in lp["attn"] and "gate_up" in lp["mlp"]
  # the default (None) fuses on a GPU backend only
  default = transformer.decode_params(cfg, params)["layers"][0]["attn"]
  assert cfg.decode_fusion is None and (key in default) == (jax.default_backend() == "gpu")
  assert "gate" not in lp["mlp"] and ("qkv_bias" in lp["attn"]) == cfg.attention_bias
  prompt, lens, _ = _prompts(cfg)
  b, p = prompt.shape
  pos, seg = S.prompt_positions(jnp.asarray(lens), p)
  step = jnp.full((b, 1), 5, jnp.int32), jnp.asarray(lens)[:, None], jnp.ones((b, 1), jnp.int32)
  outs = []
  for prm in (params, fused):
    cache = transformer.init_cache(cfg, b, p + 1)
    pf, cache = _forward(cfg, prm, jnp.asarray(prompt), pos, seg, cache, 0)
    dec, _ = _forward(cfg, prm, *step, cache, p)
    outs.append((np.asarray(pf), np.asarray(dec)))
  for a, f in zip(*outs):
    np.testing.assert_allclose(f, a, atol=2e-5)


# (b) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_greedy_equals_naive_loop(name):
  cfg, params = _model(name)
  prompt, lens, rows = _prompts(cfg, seed=2)
  n = 10
  out = S.sample_jit(cfg, params, prompt, lens, jax.random.key(0), S.SamplingParams.make(len(rows), 0.0),
                     max_new_tokens=n)
  ref_tok, ref_lp = _naive_greedy(cfg, params, rows, n)
  np.testing.assert_array_equal(np.asarray(out.tokens), ref_tok)
  np.testing.assert_allclose(np.asarray(out.logprobs), ref_lp, atol=1e-4)
  np.testing.assert_array_equal(np.asarray(out.lengths), n)
  np.testing.assert_array_equal(np.asarray(out.stop_reason), S.STOP_LENGTH)
  assert not np.asarray(out.finished).any()


# (c) ------------------------------------------------------------------------------------------------


def test_same_key_same_output_different_key_differs_and_no_recompile():
  cfg, params = _model("tiny")
  prompt, lens, _ = _prompts(cfg)
  traces = []

  @jax.jit
  def run(key, temperature, top_p):
    traces.append(1)  # Python runs only while tracing
    return S.sample(cfg, params, prompt, lens, key, S.SamplingParams(temperature, top_p), max_new_tokens=12)

  t1 = jnp.ones((8,), jnp.float32)
  p1 = jnp.ones((8,), jnp.float32)
  a = run(jax.random.key(1), t1, p1)
  b = run(jax.random.key(1), t1, p1)
  c = run(jax.random.key(2), t1, p1)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert (np.asarray(a.tokens) != np.asarray(c.tokens)).mean() > 0.5
  # new temperature / top_p values (per row) reuse the compiled program
  d = run(jax.random.key(1), jnp.linspace(0.0, 1.5, 8), jnp.full((8,), 0.9, jnp.float32))
  assert len(traces) == 1
  # a greedy row (temperature 0) ignores the key
  np.testing.assert_array_equal(d.tokens[0], run(jax.random.key(3), jnp.linspace(0.0, 1.5, 8),
                                                  jnp.full((8,), 0.9, jnp.float32)).tokens[0])


# (d) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_top_k_1_and_tiny_top_p_equal_greedy(name):
  cfg, params = _model(name)
  prompt, lens, _ = _prompts(cfg, seed=3)
  run = functools.partial(S.sample_jit, cfg, params, prompt, lens, max_new_tokens=8)
  greedy = run(jax.random.key(0), S.SamplingParams.make(8, 0.0)).tokens
  topk1 = run(jax.random.key(5), S.SamplingParams.make(8, 1.0, top_k=1)).tokens
  topp = run(jax.random.key(6), S.SamplingParams.make(8, 1.0, top_p=1e-6)).tokens
  topp0 = run(jax.random.key(7), S.SamplingParams.make(8, 1.0, top_p=0.0)).tokens  # the top token is always kept
  for other in (topk1, topp, topp0):
    np.testing.assert_array_equal(np.asarray(other), np.asarray(greedy))


def test_sample_logits_respects_top_k_and_top_p():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(4, 50)) * 3, jnp.float32)
  keys = jax.random.split(jax.random.key(0), 256)

  def draws(sp):
    return np.asarray(jax.vmap(lambda k: S.sample_logits(logits, k, sp))(keys))  # [256, 4]

  order = np.argsort(-np.asarray(logits), axis=-1)
  got = draws(S.SamplingParams.make(4, 1.0, top_k=3))
  for r in range(4):
    assert set(got[:, r]) <= set(order[r, :3])
    assert len(set(got[:, r])) > 1
  probs = np.asarray(jax.nn.softmax(logits))
  for top_k in (0, 10):
    got = draws(S.SamplingParams.make(4, 1.0, top_p=0.6, top_k=top_k))
    for r in range(4):
      csum = np.cumsum(probs[r, order[r]])
      nucleus = order[r, :int(np.searchsorted(csum, 0.6) + 1)]
      assert set(got[:, r]) <= set(nucleus), (top_k, r)
  # temperature 0 is argmax whatever the key
  np.testing.assert_array_equal(draws(S.SamplingParams.make(4, 0.0, top_p=0.5))[0], order[:, 0])
  # ... and, like jnp.argmax, the first of tied maxima
  tied = jnp.asarray([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, -1.0, 5.0, 5.0]], jnp.float32)
  got = S.sample_logits(tied, jax.random.key(0), S.SamplingParams.make(3, 0.0))
  np.testing.assert_array_equal(np.asarray(got), np.argmax(np.asarray(tied), axis=-1))
  assert np.asarray(got).tolist() == [1, 0, 2]


def test_sample_logits_draws_the_tempered_nucleus_distribution():
  """Frequencies over 8,000 draws against softmax(logits / T) renormalised over the nucleus: the
  smallest prefix of the sorted tokens whose mass reaches top_p, so the token that crosses p is in
  it. Bounds are 5 binomial standard deviations per token."""
  probs = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
  logits = jnp.asarray(np.log(probs)[None], jnp.float32)
  keys = jax.random.split(jax.random.key(1), 8000)
  for temperature, top_p, want in (
      (1.0, 1.0, probs), (0.5, 1.0, probs ** 2 / (probs ** 2).sum()),
      (2.0, 1.0, np.sqrt(probs) / np.sqrt(probs).sum()),
      (1.0, 0.6, np.array([0.4, 0.3, 0, 0, 0]) / 0.7),  # 0.4 < 0.6, then 0.3 crosses it: both kept
      (0.5, 0.6, np.array([0.16, 0.09, 0, 0, 0]) / 0.25)):  # tempered first (0.56, 0.32, ...), then the nucleus
    sp = S.SamplingParams.make(1, temperature, top_p=top_p)
    got = np.asarray(jax.vmap(lambda k: S.sample_logits(logits, k, sp))(keys))[:, 0]
    freq = np.bincount(got, minlength=5) / len(got)
    tol = 5 * np.sqrt(want * (1 - want) / len(got)) + 1e-9
    assert (np.abs(freq - want) <= tol).all(), (temperature, top_p, freq, want)


# (e) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_stops_eos_and_per_row_limits(name):
  cfg, params = _model(name)
  prompt, lens, _ = _prompts(cfg, seed=4)
  n = 16
  greedy = S.SamplingParams.make(8, 0.0)
  seqs = np.full((8, 3, 4), -1, np.int32)
  eos = np.full((8, 2), -1, np.int32)
  limits = np.full((8,), 1000, np.int32)

  def run(eos, seqs, limits):  # same shapes every time: one compiled prefill + decode for the test
    stop = S.StopSpec.make(8, eos, seqs, limits)
    state = S.prefill_jit(cfg, params, jnp.asarray(prompt), jnp.asarray(lens), jax.random.key(0), greedy, stop,
                          max_new_tokens=n)
    return S.decode_jit(cfg, params, state, greedy, stop)

  ref = np.asarray(run(eos, seqs, limits).tokens)  # no stop fires
  seqs[0, 1, 2:] = ref[0, 4:6]  # a 2-token stop sequence (second variant slot)
  eos[1, 1] = ref[1, 3]  # per-row eos...
  seqs[1, 2, 3:] = ref[1, 3]  # ...and the same token as a stop sequence: eos takes priority
  limits[2] = 5
  # row 3: nothing set
  seqs[4, 0, 1:] = [ref[4, 7], ref[4, 8], (ref[4, 9] + 1) % cfg.vocab_size]  # a near miss...
  seqs[4, 2, 3:] = ref[4, 10]  # ...and a single-token stop
  limits[5] = 0  # no tokens at all
  seqs[6, 0, :] = ref[6, 0:4]  # a full-width stop sequence at the very start
  eos[7, 0] = ref[7, 2]
  limits[7] = 2  # the limit comes first (unless the eos token also occurs earlier)

  def expected(r):  # a plain-Python reference of the stopping rules
    for e in range(1, n + 1):
      if ref[r, e - 1] in eos[r]:
        return e, S.STOP_EOS
      if any(e >= len(s) > 0 and list(ref[r, e - len(s):e]) == list(s)
             for s in (x[x >= 0] for x in seqs[r])):
        return e, S.STOP_SEQUENCE
      if e >= min(limits[r], n):
        return e, S.STOP_LENGTH
    return 0, S.STOP_LENGTH

  exp = {r: expected(r) for r in range(8)}
  exp[5] = (0, S.STOP_LENGTH)
  assert exp[0][1] == exp[4][1] == exp[6][1] == S.STOP_SEQUENCE and exp[1][1] == S.STOP_EOS
  assert exp[2] == (5, S.STOP_LENGTH) and exp[3] == (n, S.STOP_LENGTH) and exp[6] == (4, S.STOP_SEQUENCE)

  out = run(eos, seqs, limits).output()
  tokens, lengths, reasons, lps = map(np.asarray, (out.tokens, out.lengths, out.stop_reason, out.logprobs))
  for r, (length, reason) in exp.items():
    assert (lengths[r], reasons[r]) == (length, reason), (r, lengths[r], reasons[r], length, reason)
    np.testing.assert_array_equal(tokens[r, :length], ref[r, :length])
    assert (tokens[r, length:] == 0).all() and (lps[r, length:] == 0).all()
  np.testing.assert_array_equal(np.asarray(out.finished), np.isin(reasons, [S.STOP_EOS, S.STOP_SEQUENCE]))

  # the while_loop exits as soon as every row is done
  state = run(np.full_like(eos, -1), np.full_like(seqs, -1), np.arange(8) % 4)
  assert int(state.step) == 3
  np.testing.assert_array_equal(np.asarray(state.lengths), np.arange(8) % 4)


class ToyTokenizer:
  """Greedy longest-match over 512 pieces: specials, printable chars, then two-char merges."""

  pad_id, bos_id, eos_id = 0, 1, 2
  eos_ids = (2,)

  def __init__(self, vocab_size=512):
    chars = list(string.ascii_letters + string.digits + " .,\n!?()")
    merges = [".\n", "\n\n", " a", "ab", "b.", "op"]
    merges += ["".join(p) for p in itertools.product(chars, repeat=2) if "".join(p) not in merges]
    self.pieces = ["<pad>", "<bos>", "<eos>"] + chars + merges[:vocab_size - 3 - len(chars)]
    self.ids = {p: i for i, p in enumerate(self.pieces)}

  def encode(self, text, add_bos=False):
    out, i = ([self.bos_id] if add_bos else []), 0
    while i < len(text):
      n = 2 if text[i:i + 2] in self.ids else 1
      out.append(self.ids[text[i:i + n]])
      i += n
    return out

  def decode(self, ids):
    return "".join(self.pieces[i] for i in ids if i > 2)


def test_make_stop_spec_variants():
  tok = ToyTokenizer()
  enc = tok.encode
  v = S.stop_string_variants(enc, "\n\n")
  assert (tok.ids["\n\n"],) in v  # canonical
  assert (tok.ids[".\n"], tok.ids["\n"]) in v  # "." merges with the stop's first newline
  for variant in v:  # every variant's text contains the stop string
    assert "\n\n" in tok.decode(list(variant))
  spec = S.make_stop_spec(enc, [["\n\n"], None, ["b.", "op"]], eos_ids=[2], stop_token_ids_per_row=[[], [7], []],
                          max_new_tokens_per_row=[5, 6, 7])
  seqs = np.asarray(spec.stop_seqs)
  assert seqs.shape[0] == 3 and seqs.shape[1] % 4 == 0 and seqs.shape[2] % 4 == 0
  assert {tuple(x[x >= 0]) for x in seqs[1]} == {(), (7,)}
  assert (tok.ids["b."],) in {tuple(x[x >= 0]) for x in seqs[2]}
  assert (seqs[:, :, -1] >= 0).any(-1).all()  # right-aligned
  np.testing.assert_array_equal(np.asarray(spec.max_new_tokens_per_row), [5, 6, 7])
  # in-graph matching of those variants
  window = jnp.full((3, seqs.shape[2]), -1).at[0, -2:].set(jnp.asarray([tok.ids[".\n"], tok.ids["\n"]]))
  window = window.at[1, -1].set(7).at[2, -1].set(tok.ids["op"] + 1)
  np.testing.assert_array_equal(np.asarray(S.core._match_stop(window, spec.stop_seqs)), [True, True, False])


def test_generate_strings_with_stops():
  cfg, params = _model("tiny")
  tok = ToyTokenizer(cfg.vocab_size)
  prompts = ["hello world", "a", "the quick brown fox jumps"]
  base = S.generate(cfg, params, tok, prompts, max_new_tokens=12, eos_ids=())
  for r in range(3):
    assert base.texts[r] == tok.decode(base.token_ids[r])
    assert len(base.token_ids[r]) == 12 and base.stop_reasons[r] == "length"
  text0 = base.texts[0]
  s = text0[len(text0) // 2: len(text0) // 2 + 2]
  res = S.generate(cfg, params, tok, prompts, max_new_tokens=12, eos_ids=(), stop=[[s], None, None],
                   max_new_tokens_per_row=[12, 12, 3])
  assert res.texts[0] == text0[:text0.find(s)] and res.stop_reasons[0] == "stop"
  assert res.token_ids[0] == base.token_ids[0][:len(res.token_ids[0])]
  assert res.texts[1] == base.texts[1]
  assert res.token_ids[2] == base.token_ids[2][:3] and res.stop_reasons[2] == "length"
  # (same padded shapes as the call above: no recompilation)
  inc = S.generate(cfg, params, tok, prompts, max_new_tokens=12, eos_ids=(), stop=[s], include_stop_str=True)
  assert inc.texts[0] == text0[:text0.find(s) + len(s)]


# (f) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
# (2,2,2) splits rows and weights at once; the data-only (8,1,1) mesh runs with the slow marker
@pytest.mark.parametrize("mesh_shape", [pytest.param((8, 1, 1), marks=pytest.mark.slow), (2, 2, 2)])
def test_sharded_sampling_equals_single_device(name, mesh_shape):
  cfg, params = _model(name)
  prompt, lens, _ = _prompts(cfg, seed=5)
  n = 8
  stop = S.StopSpec.make(8, eos_ids=[5], max_new_tokens_per_row=[8, 7, 6, 5, 8, 8, 3, 8])
  # greedy, plain, nucleus and low-temperature rows in one batch (per-row params, one compile)
  samplings = [S.SamplingParams.make(8, [0, 1, 0.7, 1, 0, 1, 0.5, 1], [1, 1, 0.9, 0.8, 1, 1, 1, 0.95],
                                     top_k=20 if mesh_shape[2] > 1 else 0)]
  host_params = jax.device_get(params)
  refs = [S.sample_jit(cfg, host_params, prompt, lens, jax.random.key(9), sp, stop, max_new_tokens=n)
          for sp in samplings]

  mesh = sharding.make_mesh(*mesh_shape)
  p = params_lib.init_params(cfg, jax.random.key(7), mesh)
  with jax.set_mesh(mesh):
    for sp, ref in zip(samplings, refs):
      state = S.prefill_jit(cfg, p, jnp.asarray(prompt), jnp.asarray(lens), jax.random.key(9), sp, stop,
                            max_new_tokens=n)
      cache_spec = state.cache["segment"].sharding.spec
      assert cache_spec[0] in (("data", "fsdp"), "data"), cache_spec  # batch-sharded KV cache
      out = S.decode_jit(cfg, p, state, sp, stop).output()
      np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
      np.testing.assert_array_equal(np.asarray(out.lengths), np.asarray(ref.lengths))
      np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs), atol=1e-4)


# (g) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_sample_inside_outer_jit(name):
  cfg, params = _model(name)
  prompt, lens, _ = _prompts(cfg, seed=6)
  n = 6
  stop = S.StopSpec.make(8, max_new_tokens_per_row=[6, 6, 4, 6, 6, 2, 6, 6])

  def rollout_step(params, prompt, lens, key):
    # sample, then score the samples with a no-cache forward and reduce: one fused program
    out = S.sample(cfg, params, prompt, lens, key, S.SamplingParams(1.0), stop, max_new_tokens=n)
    seq = jnp.concatenate([prompt, out.tokens], axis=1)
    b, p = prompt.shape
    pos_p, seg_p = S.prompt_positions(lens, p)
    gen = jnp.arange(n)[None, :]
    pos = jnp.concatenate([pos_p, lens[:, None] + gen], axis=1)
    seg = jnp.concatenate([seg_p, (gen < out.lengths[:, None]).astype(jnp.int32)], axis=1)
    logits, _ = transformer.forward(cfg, params, seq, pos, seg)
    lp = jnp.take_along_axis(jax.nn.log_softmax(logits[:, p - 1:-1]), out.tokens[..., None], -1)[..., 0]
    lp = jnp.where(gen < out.lengths[:, None], lp, 0.0)
    return out, lp, jnp.sum(lp)

  jaxpr = str(jax.make_jaxpr(rollout_step)(params, prompt, lens, jax.random.key(3)))
  assert "callback" not in jaxpr and "while" in jaxpr
  out, lp, total = jax.jit(rollout_step)(params, prompt, lens, jax.random.key(3))
  direct = S.sample_jit(cfg, params, prompt, lens, jax.random.key(3), S.SamplingParams(1.0), stop, max_new_tokens=n)
  np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(direct.tokens))
  np.testing.assert_array_equal(np.asarray(out.lengths), [6, 6, 4, 6, 6, 2, 6, 6])
  # the sampler's logprobs are exactly what a trainer would recompute with a full forward
  np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(lp), atol=1e-4)
  assert np.isfinite(float(total))


# (f) extend: multi-turn sampling over one live cache ---------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_extend_multi_turn_equals_naive_greedy_on_the_compacted_sequence(name):
  """prompt -> decode (rows stop after different lengths) -> extend with ragged 'observations'
  (one row inactive) -> decode -> extend -> decode: every generated token and log-prob equals
  greedy decoding with full recomputation over each row's compacted sequence (prompt, turn 1
  including its last token, observation 1, turn 2, ...), i.e. cache gaps are never attended and
  positions stay contiguous."""
  cfg, params = _model(name)
  prompt, lens, rows = _prompts(cfg, seed=3)
  b = len(rows)
  n = 6
  greedy = S.SamplingParams.make(b, 0.0)
  rng = np.random.default_rng(4)
  limits = [np.asarray([2, 6, 3, 1, 6, 4, 5, 6], np.int32), np.asarray([6, 1, 4, 2, 6, 3, 6, 5], np.int32),
            np.asarray([3, 3, 6, 2, 1, 6, 2, 4], np.int32)]
  obs_lens = [np.asarray([3, 0, 5, 1, 4, 2, 5, 3], np.int32), np.asarray([2, 4, 1, 5, 3, 3, 0, 2], np.int32)]
  active = [np.asarray([1, 0, 1, 1, 1, 1, 1, 1], bool), np.ones(b, bool)]
  obs = [rng.integers(3, cfg.vocab_size, (b, 5)).astype(np.int32) for _ in obs_lens]
  segments = []
  cache_len = prompt.shape[1] + 3 * (n + 6)
  state = S.prefill(cfg, params, jnp.asarray(prompt), jnp.asarray(lens), jax.random.key(0), greedy,
                    S.StopSpec.make(b, max_new_tokens_per_row=limits[0]), max_new_tokens=n,
                    cache_len=cache_len)
  state = S.decode(cfg, params, state, greedy, S.StopSpec.make(b, max_new_tokens_per_row=limits[0]))
  segments.append(state.output())
  for t in range(2):
    stop = S.StopSpec.make(b, max_new_tokens_per_row=limits[t + 1])
    state = S.extend(cfg, params, state, jnp.asarray(obs[t]), jnp.asarray(obs_lens[t]), jax.random.key(t + 1),
                     greedy, stop, active=jnp.asarray(active[t]))
    state = S.decode(cfg, params, state, greedy, stop)
    segments.append(state.output())

  for r in range(b):
    seq = list(rows[r])
    alive = True
    for t, out in enumerate(segments):
      length = int(out.lengths[r])
      if not alive:
        assert length == 0, (r, t)
        continue
      assert length == limits[t][r], (r, t, length)
      ref_tok, ref_lp = _naive_greedy(cfg, params, [np.asarray(seq, np.int32)], length, width=cache_len)
      np.testing.assert_array_equal(np.asarray(out.tokens)[r, :length], ref_tok[0], err_msg=f"row {r} turn {t}")
      np.testing.assert_allclose(np.asarray(out.logprobs)[r, :length], ref_lp[0], atol=1e-4, err_msg=f"row {r} turn {t}")
      seq += [int(x) for x in np.asarray(out.tokens)[r, :length]]
      if t < len(obs_lens):
        alive = bool(active[t][r]) and length > 0  # an inactive row is finished for good
        seq += [int(x) for x in obs[t][r, :obs_lens[t][r]]]
