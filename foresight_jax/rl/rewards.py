"""FC-RL rewards (design.md §3) on token ids, in-graph: pure jnp on the layout of rl/layout.py
(tokens/kind/turn [B, S]), fixed shapes, no host callbacks, rows independent (every reduction is
over a row's own positions; [B, ...] arrays carry `constrain(x, ("batch", ...))`, a no-op
without a mesh). Per-id facts come from `VocabTables` (rl/vocab_tables.py, which also holds the
in-graph byte/character readers); the host versions in evals/rewards_host.py are the oracles.
Turn indices must not decrease along a row (the rollout writes turns in order); tokens of turns
>= spec.max_turns are ignored.

API (static: `variant` in none/state/full, `spec` a RewardSpec, `weights` Python floats):
  turn_format(tokens, kind, turn, tables, *, variant, spec) -> ok [B, T] bool, n_turns [B]
  success_estimates(tokens, kind, turn, tables, *, spec) -> value [B, T] f32, valid [B, T] bool
  outcome(tokens, kind, turn, golds, is_math, tables, *, spec) -> [B] f32
  grounding(tokens, kind, turn, tables, *, spec) -> precision [B, T] f32, valid [B, T] bool
  calibration(value, valid, y) -> [B];  episode_mean(x, valid) -> [B]
  REWARDS / get_reward(name): episode rewards fn(batch: RewardBatch, tables, *, variant, spec)
  combine(components, weights) -> [B];  compute_rewards(...) -> (R, components, details)

FORMAT, per generated turn (GEN tokens of turn t; "tag" = a FORESIGHT_TOKENS id, "blank" = a
token whose text is whitespace or empty). Checked, exactly:
  1. its tag tokens, in order, are exactly
       full:  <think> </think> <foresight> <rollout> </rollout> <success> </success>
              </foresight> <A> </A>
       state: <think> </think> <foresight> <rollout> </rollout> </foresight> <A> </A>
       none:  <think> </think> <A> </A>
     with A one of search/calc/answer (think first; block before exactly one action; every tag
     balanced and properly nested; nothing else nested; no <information> in a turn);
  2. every non-tag non-blank token lies inside think, rollout, success or the action (none
     before <think>, between blocks, directly inside <foresight>, or after the action);
  3. the rollout holds a non-blank token; a search/calc holds a non-blank token;
  4. full: the success body is a valid estimate (below);
  5. an answer only in the last turn (t = n_turns - 1); the last turn need not answer (a rollout
     cut at max_turns is not a format error: outcome already gives it 0).
Not checked: the `k. action -> expectation` syntax, numbering, horizon and token count of rollout
lines; two-decimal success; what <think> holds. A tag spelled with several tokens is plain text
here (a text parser would see a tag). The oracle (rewards_host.turn_problems) is parse_turn
with exactly this list. Episode format = mean over turns of ok; 0 without a turn.

SUCCESS: the body between a turn's FIRST <success> and the next </success>: optional whitespace,
digits with at most one '.', at least one digit, optional whitespace; valid iff that holds and the
value is in [0, 1] (decided exactly from digit counts, not from the float). Parsed from per-token
byte summaries (vocab_tables.NUM_*), so a body of any length parses exactly.

OUTCOME: the last turn's first <answer> ... next </answer> body (0 without one, or when longer
than spec.max_answer_tokens tokens); its bytes are gathered, UTF-8 decoded to code points, and
  search: SQuAD-normalised (lower via a BMP table, drop ASCII punctuation, remove a/an/the as
          regex-\\b words, collapse whitespace) and compared with the normalised golds;
  math:   the LAST \\boxed{...} (nested braces), parse_int'ed (strip, strip '$', drop ',' and
          ' ', [+-]?\\d+), written canonically and compared with the canonical gold integers.

GROUNDING: design.md §3 on ids. Step 1 = the FIRST non-blank line of the rollout body (from its
first non-blank token, over spec.rollout_window tokens, to the first '\\n' byte); it must match
render's `(\\d+)\\.\\s+(.+?)\\s+->\\s*(.*)` (ASCII whitespace); its expectation = the content
tokens (vocab_tables CONTENT) that start after the '->' and before the newline, the first E.
Precision = sum_key min(count in expectation, count in the observation's first O tokens) /
#expectation (canonical ids; BLEU clipping); 0 without a parsable step 1 or without content
tokens. valid = the turn has an observation; episode value = mean over valid turns, 0 if none.

CALIBRATION: 1 - mean_t (s_t - y)^2 over the turns' valid estimates (whatever the turn's format:
the estimate is still a forecast); 0 for an episode with no estimate (silence must not pay more
than a forecast: the worst possible estimate also earns 0).

Known divergences from the text-level definitions (rare, by construction): lowercasing of final
sigma and U+0130; code points above U+FFFF (not lowercased, never word characters); malformed
UTF-8; a token that is a piece of a non-ASCII whitespace character is not blank; metrics.py's
lenient parser takes the first rollout line that parses.
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from foresight_jax.evals.rewards_host import TAG_CODE, WS_BYTES, RewardSpec, check_variant
from foresight_jax.rl import vocab_tables as vt
from foresight_jax.rl.layout import KIND_GEN, KIND_OBS
from foresight_jax.rl.vocab_tables import Golds, VocabTables, encode_golds  # noqa: F401
from foresight_jax.sharding import constrain
from foresight_jax.tokenizer.tokens import ACTION_TAGS

OPEN = {n: TAG_CODE[f"<{n}>"] for n in ("think", "foresight", "rollout", "success") + ACTION_TAGS}
CLOSE = {n: TAG_CODE[f"</{n}>"] for n in OPEN}
ACTIONS = tuple(OPEN[a] for a in ACTION_TAGS)
assert all(CLOSE[a] == OPEN[a] + 1 for a in ACTION_TAGS)  # the action-slot check relies on it
_ACT, _ACT_C = -1, -2  # the action slot in a grammar
_F32 = jnp.float32


def _b(x):
  """Shard a [B, ...] array on the batch axes (no-op without a mesh)."""
  return constrain(x, ("batch",) + (None,) * (x.ndim - 1))


class _Turns(NamedTuple):
  tokens: jax.Array   # [B, S] int32
  kind: jax.Array
  turn: jax.Array
  gen: jax.Array      # [B, S] GEN token of a scored turn
  tag: jax.Array      # [B, S] tag code of a GEN token, else -1
  tid: jax.Array      # [B, S] turn clipped into [0, T)
  oh: jax.Array       # [B, S, T] GEN token of turn t
  n_turns: jax.Array  # [B]


def _turns(tokens, kind, turn, tables: VocabTables, t_max: int) -> _Turns:
  tokens, kind, turn = (_b(jnp.asarray(x, jnp.int32)) for x in (tokens, kind, turn))
  gen = (kind == KIND_GEN) & (turn >= 0) & (turn < t_max)
  tag = jnp.where(gen, tables.tag[tokens].astype(jnp.int32), -1)
  oh = _b(gen[..., None] & (turn[..., None] == jnp.arange(t_max)))
  n_turns = jnp.max(jnp.where(gen, turn + 1, 0), axis=1)
  return _Turns(tokens, kind, turn, gen, tag, jnp.clip(turn, 0, t_max - 1), oh, n_turns)


def _pos(x):
  return jnp.arange(x.shape[1])[None, :, None]


def _first(mask):  # [B, S, T] -> [B, T]; S where none
  return jnp.min(jnp.where(mask, _pos(mask), mask.shape[1]), axis=1)


def _last(mask):  # [B, S, T] -> [B, T]; -1 where none
  return jnp.max(jnp.where(mask, _pos(mask), -1), axis=1)


def _tsum(tr, x):  # [B, S] -> per-turn sums [B, T]
  return jnp.sum(jnp.where(tr.oh, x[..., None], 0), axis=1)


def _tany(tr, m):
  return jnp.any(tr.oh & m[..., None], axis=1)


def _at(tr, y):  # [B, T] -> the value of each position's turn [B, S]
  return jnp.take_along_axis(y, tr.tid, axis=1)


def _wcum(tr, x):
  """Inclusive cumsum of x (zero outside scored GEN tokens) within each position's turn: the row
  cumsum minus what earlier turns summed to (turns are in order)."""
  per = _tsum(tr, x)
  return jnp.cumsum(x, axis=1) - _at(tr, jnp.cumsum(per, axis=1) - per)


def _span(tr, name):
  """Each turn's first <name> and the first </name> after it ([B, T], S if none), and the
  positions strictly between them [B, S]."""
  o = _first(tr.oh & (tr.tag == OPEN[name])[..., None])
  s = jnp.arange(tr.tokens.shape[1])[None]
  c = _first(tr.oh & ((tr.tag == CLOSE[name])[..., None]) & (_pos(tr.oh) > o[:, None, :]))
  inside = tr.gen & (s > _at(tr, o)) & (s < _at(tr, c))
  return o, c, inside


# ---------------------------------------------------------------------------------------------
# Success estimates and format


def _success(tr, tables):
  """(value, valid) [B, T] from per-token byte summaries; see the module doc."""
  _, c, body = _span(tr, "success")
  ni = tables.num_i[tr.tokens].astype(jnp.int32)
  col = lambda k: jnp.where(body, ni[..., k], 0)  # noqa: E731
  flag = lambda b: body & ((ni[..., vt.NUM_FLAGS] & b) != 0)  # noqa: E731
  s = jnp.arange(tr.tokens.shape[1])[None]
  nonws = tr.oh & flag(vt.NF_NONWS)[..., None]
  lo, hi = _at(tr, _first(nonws)), _at(tr, _last(nonws))
  one = lo == hi
  # the non-whitespace bytes must be contiguous: whitespace only before the first token holding
  # one (lo) and after the last (hi)
  bad_ws = _tany(tr, flag(vt.NF_INNER_WS) | (flag(vt.NF_WS) & (s > lo) & (s < hi))
                 | ((s == lo) & flag(vt.NF_TRAIL_WS) & ~one)
                 | ((s == hi) & flag(vt.NF_LEAD_WS) & ~one))
  ndot, nd = col(vt.NUM_NDOT), col(vt.NUM_ND)
  after = (_wcum(tr, ndot) - ndot) > 0  # a '.' came earlier: all digits are fractional
  here = ndot > 0
  i_s = jnp.where(after, 0, col(vt.NUM_NB))                      # integer-part digits
  later = _at(tr, _tsum(tr, i_s)) - _wcum(tr, i_s)             # integer digits after the token
  vb = jnp.where(after, 0, col(vt.NUM_VB))                       # its integer digits, clipped to 2
  # The integer part only matters as 0, 1 or more: a nonzero digit not in the units place is >= 10.
  big = jnp.minimum(_tsum(tr, jnp.where(vb == 0, 0, jnp.where((vb == 1) & (later == 0), 1, 2))), 2)
  f_s = jnp.where(after, nd, jnp.where(here, col(vt.NUM_NA), 0))  # fractional digits
  f_before = (_wcum(tr, f_s) - f_s).astype(_F32)
  nf = tables.num_f[tr.tokens]
  fv = jnp.where(after, nf[..., vt.NUMF_VD], jnp.where(here, nf[..., vt.NUMF_VA], 0.))
  fv = jnp.where(body, fv, 0.)  # each token's fractional digits as a fraction ("64" -> .64)
  frac = _tsum(tr, fv * jnp.power(_F32(10), -f_before))
  nz = _tsum(tr, jnp.where(after, col(vt.NUM_NZD), jnp.where(here, col(vt.NUM_NZA), 0)))
  valid = ((c < tr.tokens.shape[1]) & ~_tany(tr, body & ~flag(vt.NF_NUMCHARS))
           & (_tsum(tr, ndot) <= 1) & (_tsum(tr, nd) >= 1) & ~bad_ws
           & ((big == 0) | ((big == 1) & (nz == 0))))
  return _b(jnp.where(valid, big.astype(_F32) + frac, 0.)), _b(valid)


def _grammar(variant):
  block = [] if variant == "none" else (
      ["foresight", "rollout", "/rollout"] + (["success", "/success"] if variant == "full" else [])
      + ["/foresight"])
  names = ["think", "/think"] + block + ["A", "/A"]
  seq = [_ACT if x == "A" else _ACT_C if x == "/A" else
         CLOSE[x[1:]] if x[0] == "/" else OPEN[x] for x in names]
  # after its k-th tag (count k+1) a token sits in the body of seq[k]; text is allowed there
  # only for think / rollout / success / the action
  text_at = tuple(k + 1 for k, c in enumerate(seq)
                  if c in (OPEN["think"], OPEN["rollout"], OPEN["success"], _ACT))
  roll_at = names.index("rollout") + 1 if "rollout" in names else None
  return seq, text_at, roll_at, names.index("A")


def _format(tr, tables, variant, succ_valid):
  seq, text_at, roll_at, a = _grammar(check_variant(variant))
  is_tag = tr.tag >= 0
  blank = (tables.flags[tr.tokens] & vt.BLANK) != 0
  cnt = _wcum(tr, is_tag.astype(jnp.int32))            # tags so far in the turn, inclusive
  rank = is_tag[..., None] & (cnt[..., None] - 1 == jnp.arange(len(seq)))
  val = jnp.where(rank, (tr.tag + 1)[..., None], 0).astype(_F32)
  got = jnp.einsum("bst,bsk->btk", tr.oh.astype(_F32), val,
                   precision=jax.lax.Precision.HIGHEST).astype(jnp.int32) - 1  # -1: no such tag
  act = got[..., a]
  ok = (_tsum(tr, is_tag.astype(jnp.int32)) == len(seq)) & jnp.isin(act, jnp.array(ACTIONS))
  ok &= got[..., a + 1] == act + 1
  for k, code in enumerate(seq):
    if code >= 0:
      ok &= got[..., k] == code
  text = tr.gen & ~is_tag & ~blank
  ok &= ~_tany(tr, text & ~jnp.isin(cnt, jnp.array(text_at)))
  ok &= (act == OPEN["answer"]) | _tany(tr, text & (cnt == a + 1))
  if roll_at is not None:
    ok &= _tany(tr, text & (cnt == roll_at))
  if variant == "full":
    ok &= succ_valid
  t = jnp.arange(tr.oh.shape[-1])[None]
  ok &= ((act != OPEN["answer"]) | (t == tr.n_turns[:, None] - 1)) & (t < tr.n_turns[:, None])
  return _b(ok)


def turn_format(tokens, kind, turn, tables, *, variant="full", spec=RewardSpec()):
  tr = _turns(tokens, kind, turn, tables, spec.max_turns)
  return _format(tr, tables, variant, _success(tr, tables)[1]), tr.n_turns


def success_estimates(tokens, kind, turn, tables, *, spec=RewardSpec()):
  return _success(_turns(tokens, kind, turn, tables, spec.max_turns), tables)


# ---------------------------------------------------------------------------------------------
# Outcome


def _outcome(tr, tables, golds, is_math, spec):
  s = tr.tokens.shape[1]
  pos = jnp.arange(s)[None]
  last = tr.gen & (tr.turn == tr.n_turns[:, None] - 1)
  ao = jnp.min(jnp.where(last & (tr.tag == OPEN["answer"]), pos, s), axis=1)
  ac = jnp.min(jnp.where(last & (tr.tag == CLOSE["answer"]) & (pos > ao[:, None]), pos, s), axis=1)
  answered = (ac < s) & (ac - ao - 1 <= spec.max_answer_tokens)
  p = ao[:, None] + 1 + jnp.arange(spec.max_answer_tokens)[None]
  toks = jnp.take_along_axis(tr.tokens, jnp.clip(p, 0, s - 1), axis=1)
  stream, nb, _ = vt.window_bytes(tables, toks, p < ac[:, None])
  x, n = vt.utf8_decode(stream, nb)
  lg = golds.chars.shape[-1]
  em = vt.match_golds(*vt.squad_normalize(x, n, tables, lg), golds)
  out, length, ok = vt.boxed_int(x, n, tables, lg)
  hit = jnp.where(jnp.asarray(is_math, bool), ok & vt.match_golds(out, length, golds), em)
  return _b((answered & hit).astype(_F32))


def outcome(tokens, kind, turn, golds: Golds, is_math, tables, *, spec=RewardSpec()):
  return _outcome(_turns(tokens, kind, turn, tables, spec.max_turns), tables, golds, is_math, spec)


# ---------------------------------------------------------------------------------------------
# Grounding


def _step1(y, n):
  """render's step regex on the first line of byte streams [N, L]: (end of its '->', end of the
  line, matched) [N]. With k the first byte after the whitespace run that follows the step number
  and its '.', the lazy `(.+?)` after the greedy `\\s+` finds the first whitespace-preceded '->'
  at or after k + 2; failing that, the regex backtracks into the run, which then needs >= 3
  bytes (one each for `\\s+`, `(.+?)` and the `\\s+` before '->') and gives the '->' at k."""
  big = y.shape[-1]
  idx = jnp.arange(big)[None]
  inr = idx < n[:, None]
  ws = jnp.isin(y, jnp.array(list(WS_BYTES))) & inr
  dig = (y >= 48) & (y <= 57)
  ls = vt.row_first(inr & ~ws)
  le = jnp.minimum(vt.row_first(inr & (idx >= ls[:, None]) & (y == 10)), n)
  line = (idx >= ls[:, None]) & (idx < le[:, None])
  j = vt.row_first(line & ~dig)
  ok = (vt.take_at(dig, ls) & (j < le) & (vt.take_at(y, j) == ord("."))  # (\d+)\.
        & (j + 1 < le) & vt.take_at(ws, j + 1))                            # \s+
  k = vt.row_first(line & (idx > j[:, None]) & ~ws)
  arrow = ((y == ord("-")) & (vt.shift_left(y, 1, 0) == ord(">")) & vt.shift_right(ws, 1, False)
           & (idx + 1 < le[:, None]))
  p = vt.row_first(arrow & (idx >= k[:, None] + 2))
  p = jnp.where(p < big, p, jnp.where(vt.take_at(arrow, k) & (k >= j + 4), k, big))
  return p + 2, le, ok & (k < le) & (p < le)


def _grounding(tr, tables, spec):
  b, s = tr.tokens.shape
  t, w, e, o = spec.max_turns, spec.rollout_window, spec.max_expect, spec.max_obs_tokens
  _, c, inside = _span(tr, "rollout")
  blank = (tables.flags[tr.tokens] & vt.BLANK) != 0
  fnb = _first(tr.oh & (inside & ~blank)[..., None])
  p = fnb[..., None] + jnp.arange(w)
  toks = jnp.take_along_axis(tr.tokens, jnp.clip(p, 0, s - 1).reshape(b, t * w), axis=1)
  valid = (p < c[..., None]) & (c < s)[..., None]  # a rollout that is never closed has no step 1
  toks, valid = toks.reshape(b * t, w), valid.reshape(b * t, w)
  stream, nb, start = vt.window_bytes(tables, toks, valid)
  arrow_end, le, ok = _step1(stream, nb)
  content = (tables.flags[toks] & vt.CONTENT) != 0
  exp = (valid & content & ok[:, None] & (start >= arrow_end[:, None]) & (start < le[:, None])
         & (tables.raw_len[toks] > 0))
  canon_e, n_e = vt.compact(jnp.where(exp, tables.canon[toks], -1), exp)
  canon_e = jnp.pad(canon_e, ((0, 0), (0, max(e - w, 0))), constant_values=-1)[:, :e]
  canon_e, n_e = _b(canon_e.reshape(b, t, e)), jnp.minimum(n_e, e).reshape(b, t)
  ve = jnp.arange(e) < n_e[..., None]
  obs = (tr.kind == KIND_OBS)[..., None] & (tr.turn[..., None] == jnp.arange(t))
  oo = _first(obs)
  po = (oo[..., None] + jnp.arange(o)).reshape(b, t * o)
  pc = jnp.clip(po, 0, s - 1)
  vo = ((po < s) & (jnp.take_along_axis(tr.kind, pc, 1) == KIND_OBS)
        & (jnp.take_along_axis(tr.turn, pc, 1) == jnp.repeat(jnp.arange(t), o)[None]))
  canon_o = jnp.where(vo, tables.canon[jnp.take_along_axis(tr.tokens, pc, 1)], -2)
  canon_o = _b(canon_o.reshape(b, t, o))
  have = jnp.sum(canon_e[..., :, None] == canon_o[..., None, :], axis=-1)  # [B, T, E] via [E x O]
  want = jnp.sum((canon_e[..., :, None] == canon_e[..., None, :]) & ve[..., None, :], axis=-1)
  clipped = jnp.where(ve, jnp.minimum(want, have) / jnp.maximum(want, 1), 0.)
  prec = jnp.where(n_e > 0, jnp.sum(clipped, -1) / jnp.maximum(n_e, 1), 0.).astype(_F32)
  return _b(prec), _b(oo < s)


def grounding(tokens, kind, turn, tables, *, spec=RewardSpec()):
  return _grounding(_turns(tokens, kind, turn, tables, spec.max_turns), tables, spec)


# ---------------------------------------------------------------------------------------------
# Episode values, registry, combination


def episode_mean(x, valid):
  """Mean of x over valid turns; 0 for a row with none."""
  n = jnp.sum(valid, axis=-1)
  return jnp.where(n > 0, jnp.sum(jnp.where(valid, x, 0.), -1) / jnp.maximum(n, 1), 0.).astype(_F32)


def calibration(value, valid, y):
  """1 - mean over valid estimates of (s - y)^2; 0 with no estimate."""
  sq = (value - jnp.asarray(y, _F32)[:, None]) ** 2
  return jnp.where(jnp.any(valid, -1), 1. - episode_mean(sq, valid), 0.).astype(_F32)


class RewardBatch(NamedTuple):
  tokens: jax.Array
  kind: jax.Array
  turn: jax.Array
  golds: Golds
  is_math: jax.Array


def _format_reward(bt, tables, *, variant="full", spec=RewardSpec()):
  ok, n = turn_format(bt.tokens, bt.kind, bt.turn, tables, variant=variant, spec=spec)
  return episode_mean(ok.astype(_F32), jnp.arange(ok.shape[-1]) < n[:, None])


def _outcome_reward(bt, tables, *, variant="full", spec=RewardSpec()):
  return outcome(bt.tokens, bt.kind, bt.turn, bt.golds, bt.is_math, tables, spec=spec)


def _grounding_reward(bt, tables, *, variant="full", spec=RewardSpec()):
  return episode_mean(*grounding(bt.tokens, bt.kind, bt.turn, tables, spec=spec))


def _calibration_reward(bt, tables, *, variant="full", spec=RewardSpec()):
  value, valid = success_estimates(bt.tokens, bt.kind, bt.turn, tables, spec=spec)
  return calibration(value, valid, _outcome_reward(bt, tables, spec=spec))


# Small pure functions picked by name (Tunix algo_core style); a fixed table, no registration.
REWARDS: dict[str, Callable] = {
    "outcome": _outcome_reward, "format": _format_reward, "grounding": _grounding_reward,
    "calibration": _calibration_reward,
}


def get_reward(name: str) -> Callable:
  if name not in REWARDS:
    raise ValueError(f"unknown reward {name!r}; known: {sorted(REWARDS)}")
  return REWARDS[name]


def combine(components: Mapping[str, jax.Array], weights: Mapping[str, float]) -> jax.Array:
  """design.md §3: R = w_outcome·outcome (w_outcome defaults to 1) + sum of w_k·component_k.
  A weight that is the Python number 0 drops its term (its component need not exist); traced
  weights always count."""
  unknown = set(weights) - set(REWARDS)
  if unknown:
    raise ValueError(f"unknown reward weights {sorted(unknown)}; known: {sorted(REWARDS)}")
  terms = {"outcome": weights.get("outcome", 1.0), **weights}
  r = jnp.zeros_like(jnp.asarray(next(iter(components.values())), _F32)) if components else 0.
  for k, w in terms.items():
    if isinstance(w, (int, float)) and w == 0:
      continue
    if k not in components:
      raise ValueError(f"weight {k}={w} but no {k!r} component (have {sorted(components)})")
    r = r + w * components[k]
  return jnp.asarray(r, _F32)


def compute_rewards(tokens, kind, turn, golds: Golds, is_math, tables: VocabTables,
                    weights: Mapping[str, float], variant: str = "full", spec=RewardSpec()):
  """The fused step's single entry point: (R [B], components {outcome, format, grounding,
  calibration} [B] f32, details {format_ok [B, T] bool, n_turns [B], success [B, T] f32,
  success_valid, grounding [B, T] f32, grounding_valid}). Jit with weights/variant/spec bound:
  `jax.jit(functools.partial(compute_rewards, weights=w, variant=v, spec=s))`; `golds` from
  `encode_golds`, `is_math [B]` picks the boxed-integer rule per row."""
  tr = _turns(tokens, kind, turn, tables, spec.max_turns)
  value, valid = _success(tr, tables)
  ok = _format(tr, tables, variant, valid)
  y = _outcome(tr, tables, golds, is_math, spec)
  prec, has_obs = _grounding(tr, tables, spec)
  scored = jnp.arange(spec.max_turns)[None] < tr.n_turns[:, None]
  comps = {"outcome": y, "format": episode_mean(ok.astype(_F32), scored),
           "grounding": episode_mean(prec, has_obs), "calibration": calibration(value, valid, y)}
  details = {"format_ok": ok, "n_turns": tr.n_turns, "success": value, "success_valid": valid,
             "grounding": prec, "grounding_valid": has_obs}
  return _b(combine(comps, weights)), comps, details


__all__ = ["REWARDS", "Golds", "RewardBatch", "RewardSpec", "VocabTables", "calibration",
           "combine", "compute_rewards", "encode_golds", "episode_mean", "get_reward",
           "grounding", "outcome", "success_estimates", "turn_format"]
