"""Per-token-id tables for the in-graph rewards (rl/rewards.py), built once per tokenizer on the
host, plus the gold-answer buffer.

`VocabTables.build(tok)` -> a pytree of small device arrays indexed by token id (V ids, C bytes):

  tag      int8  [V]     code of a foresight tag (its index in FORESIGHT_TOKENS), else -1; a tag
                         that is not a single token is a ValueError naming it.
  flags    uint8 [V]     BLANK (text is whitespace or empty), CONTENT (grounding counts it), and
                         why an id is not content: TAG, PUNCT_ONLY, DIGITS_ONLY, STOPWORD; NEWLINE.
  canon    int32 [V]     canonical id for matching: ids with the same `token_key` (lowercased,
                         surrounding whitespace/punctuation stripped) share the smallest such id;
                         -1 for non-content ids (tags and special ids included), so they
                         never match.
  raw      uint8 [V, C]  the bytes the id decodes to (`rewards_host.token_bytes`), with raw_len
  raw_len  uint8 [V]     [V]. Bytes, not code points: uint8 keeps SmolLM2's 49k ids at 1.5 MiB,
                         and UTF-8 is decoded in-graph only where characters matter (answers).
  num_i    uint8 [V, 8]  summaries of the id's bytes for the success-number parser (NUM_* below),
  num_f    f32   [V, 2]  so a body of any length parses exactly with per-token sums.
  cp_lower int32 [65536] str.lower() of each BMP code point (identity where it is not one code
                         point: only U+0130), cp_info uint8 [65536] (CP_WS: isspace, CP_WORD:
  cp_info, cp_digit      regex \\w, CP_PUNCT: string.punctuation), cp_digit int8 [65536] (the value
                         of a regex \\d digit, else -1): SQuAD normalisation and parse_int on
                         characters. Code points >= 65536 are "other" characters, not lowercased.

C: a token longer than `min_chars` bytes first has its runs (> 4) of one repeated ASCII
whitespace or punctuation byte other than braces squeezed to 4 (no parser tells 4 from more:
whitespace is stripped/collapsed, punctuation dropped or invalid in numbers, '->' and the last
'\\boxed{' are still found); C is the longest result rounded up to 8 (SmolLM2: 32, byte runs of
up to 81 squeezed; 3.1 MB for all tables). Braces are never squeezed (\\boxed{} counts depth).
Only the byte table is squeezed: flags, keys and number summaries come from the full bytes.

`encode_golds(answers_per_row, is_math)` -> Golds: host-normalised gold answers as code points
[B, N, Lg] (SQuAD `normalize_answer`; math: the integer `parse_int` reads, canonical: sign only
if negative, no leading zeros), lengths [B, N] (-1: no gold in that slot).

The last section holds the in-graph readers of these tables (pure jnp, used by rl/rewards.py):
token windows -> compacted bytes -> UTF-8 code points -> SQuAD normalisation or the boxed
integer, compared with the Golds buffer. They live next to the tables they read.
"""
from __future__ import annotations

import re
import string
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from foresight_jax.data.scoring import normalize_answer, parse_int
from foresight_jax.evals import rewards_host as host

# flags bits. The rewards read BLANK (format: text allowed anywhere) and CONTENT (grounding:
# not a tag, not whitespace/punctuation-only, not digits-only, no stopword); the others say why
# an id is not content (for inspection and tests).
BLANK, CONTENT, PUNCT_ONLY, DIGITS_ONLY, STOPWORD, NEWLINE, TAG = 1, 2, 4, 8, 16, 32, 64
# num_i columns
NUM_FLAGS, NUM_NDOT, NUM_ND, NUM_NB, NUM_NA, NUM_VB, NUM_NZD, NUM_NZA = range(8)
# NUM_FLAGS bits
NF_NUMCHARS, NF_NONWS, NF_WS, NF_LEAD_WS, NF_TRAIL_WS, NF_INNER_WS = 1, 2, 4, 8, 16, 32
# num_f columns: all digits as a fraction (".64" -> 0.64), the digits after the first '.' likewise
NUMF_VD, NUMF_VA = 0, 1
CP_WS, CP_WORD, CP_PUNCT = 1, 2, 4
N_CP = 1 << 16

# whitespace and ASCII punctuation except braces
_SQUEEZE = re.compile(b"([" + b"".join(re.escape(bytes([b])) for b in host.WS_BYTES + bytes(
    c for c in string.punctuation.encode() if c not in b"{}")) + rb"])\1{4,}")


class Golds(NamedTuple):
  chars: np.ndarray   # int32 [B, N, Lg] code points of the normalised gold, 0-padded
  length: np.ndarray  # int32 [B, N], -1 for an empty slot


class VocabTables(NamedTuple):
  tag: object
  flags: object
  canon: object
  raw: object
  raw_len: object
  num_i: object
  num_f: object
  cp_lower: object
  cp_info: object
  cp_digit: object

  @property
  def vocab_size(self) -> int:
    return self.tag.shape[0]

  @classmethod
  def build(cls, tok, *, min_chars: int = 8) -> "VocabTables":
    """Tables for `tok` (its `vocab_size` ids, added tokens included); see the module doc."""
    tags = host.tag_ids(tok)  # raises for a multi-token tag
    raws = host.token_bytes(tok)
    arrays = host_arrays(raws, tags, min_chars, special=tok.special_ids)
    return cls(**{k: jnp.asarray(v) for k, v in arrays.items()})


def squeeze(raw: bytes, limit: int) -> bytes:
  """Runs of one repeated whitespace/punctuation byte cut to 4, for tokens over `limit` bytes."""
  if len(raw) <= limit:
    return raw
  return _SQUEEZE.sub(lambda m: m.group(1) * 4, raw)


def host_arrays(raws: Sequence[bytes], tags: dict[int, int], min_chars: int = 8,
                special: frozenset[int] = frozenset()) -> dict:
  """The tables as numpy arrays (what `VocabTables.build` puts on the device); `special`: the
  tokenizer's special/control ids, never content (chat-template markers in observations)."""
  v = len(raws)
  table = [squeeze(r, min_chars) for r in raws]  # only the byte table is squeezed
  c = max(min_chars, -(-max(len(r) for r in table) // 8) * 8)
  if c > 255:
    longest = max(range(v), key=lambda i: len(table[i]))
    raise ValueError(f"token {longest} is {len(table[longest])} bytes after squeezing; the byte "
                     "table stores lengths as uint8 (at most 255)")
  raw = np.zeros((v, c), np.uint8)
  raw_len = np.zeros(v, np.uint8)
  tag = np.full(v, -1, np.int8)
  flags = np.zeros(v, np.uint8)
  canon = np.full(v, -1, np.int32)
  num_i = np.zeros((v, 8), np.uint8)
  num_f = np.zeros((v, 2), np.float32)
  first: dict[str, int] = {}
  for i, (r, t) in enumerate(zip(raws, table)):
    raw[i, :len(t)] = np.frombuffer(t, np.uint8)
    raw_len[i] = len(t)
    if i in tags:
      tag[i] = tags[i]
      flags[i] |= TAG
    if host.is_blank(r.decode("utf-8", "replace")):
      flags[i] |= BLANK
    key = host.token_key(r)
    flags[i] |= ((PUNCT_ONLY if not key and not flags[i] & BLANK else 0)
                 | (DIGITS_ONLY if key.isdigit() else 0)
                 | (STOPWORD if key in host.STOPWORDS else 0) | (NEWLINE if b"\n" in r else 0))
    if host.is_content(key, i in tags or i in special):
      flags[i] |= CONTENT
      canon[i] = first.setdefault(key, i)
    num_i[i], num_f[i] = _number_summary(r)
  return dict(tag=tag, flags=flags, canon=canon, raw=raw, raw_len=raw_len, num_i=num_i,
              num_f=num_f, **codepoint_arrays())


def _number_summary(r: bytes) -> tuple[list[int], list[float]]:
  """What the success parser needs of a token's bytes (module doc; rl.rewards.success_estimates)."""
  ws = [b in host.WS_BYTES for b in r]
  nonws = [k for k, w in enumerate(ws) if not w]
  f = 0
  if all(w or 48 <= b <= 57 or b == 46 for b, w in zip(r, ws)):
    f |= NF_NUMCHARS
  if nonws:
    f |= NF_NONWS
    if nonws[0] > 0:
      f |= NF_LEAD_WS
    if nonws[-1] < len(r) - 1:
      f |= NF_TRAIL_WS
    if any(ws[nonws[0]:nonws[-1]]):
      f |= NF_INNER_WS
  if any(ws):
    f |= NF_WS
  digits = bytes(b for b in r if 48 <= b <= 57)
  dot = r.find(b".")
  before = digits if dot < 0 else bytes(b for b in r[:dot] if 48 <= b <= 57)
  after = b"" if dot < 0 else bytes(b for b in r[dot + 1:] if 48 <= b <= 57)
  nz = lambda d: sum(b != 48 for b in d)  # noqa: E731
  frac = lambda d: float(int(d) / 10 ** len(d)) if d else 0.0  # noqa: E731
  ints = [f, min(r.count(b"."), 2), len(digits), len(before), len(after),
          min(int(before), 2) if before else 0, nz(digits), nz(after)]
  return [min(x, 255) for x in ints], [frac(digits), frac(after)]


def codepoint_arrays() -> dict:
  """BMP tables for character-level SQuAD normalisation and parse_int (tokenizer independent)."""
  lower = np.arange(N_CP, dtype=np.int32)
  info = np.zeros(N_CP, np.uint8)
  digit = np.full(N_CP, -1, np.int8)
  word, dig = re.compile(r"\w"), re.compile(r"\d")
  for cp in range(N_CP):
    ch = chr(cp)
    lo = ch.lower()
    if len(lo) == 1:
      lower[cp] = ord(lo)
    if ch.isspace():
      info[cp] |= CP_WS
    if word.match(ch):
      info[cp] |= CP_WORD
    if ch in string.punctuation:
      info[cp] |= CP_PUNCT
    if dig.match(ch):
      digit[cp] = int(ch)
  return dict(cp_lower=lower, cp_info=info, cp_digit=digit)


def canonical_int(text: str) -> str | None:
  """The integer `parse_int` reads, written canonically ("-12", "0", "1024"), or None."""
  v = parse_int(text)
  return None if v is None else str(v)


def encode_golds(answers_per_row: Sequence[Sequence[str]], is_math: Sequence[bool],
                 max_golds: int | None = None, max_len: int | None = None) -> Golds:
  """Gold answers as the code points the in-graph outcome compares against.

  Search rows: `normalize_answer(gold)`; math rows: `canonical_int(gold)` (golds that are not
  integers are dropped: `math_match` can never match them). `max_golds` N and `max_len` Lg
  default to what the rows need; a row with more golds or a gold longer than given is a
  ValueError naming it (dropping or cutting one would change the reward)."""
  if len(answers_per_row) != len(is_math):
    raise ValueError(f"{len(answers_per_row)} rows of answers but {len(is_math)} is_math flags")
  rows = []
  for r, (answers, m) in enumerate(zip(answers_per_row, is_math)):
    if isinstance(answers, str):
      raise ValueError(f"row {r}: answers must be a list of strings, got the string {answers!r}")
    norm = [canonical_int(a) for a in answers] if m else [normalize_answer(a) for a in answers]
    rows.append([n for n in norm if n is not None])
  need_n = max([len(g) for g in rows] + [1])
  need_l = max([len(g) for row in rows for g in row] + [1])
  n = need_n if max_golds is None else max_golds
  lg = need_l if max_len is None else max_len
  for r, row in enumerate(rows):
    if len(row) > n:
      raise ValueError(f"row {r} has {len(row)} gold answers, more than the gold buffer's "
                       f"{n} slots (max_golds)")
    for g in row:
      if len(g) > lg:
        raise ValueError(f"row {r}: gold answer {g[:40]!r} is {len(g)} characters after "
                         f"normalisation, longer than the gold buffer's {lg} (max_len)")
  chars = np.zeros((len(rows), n, lg), np.int32)
  length = np.full((len(rows), n), -1, np.int32)
  for r, row in enumerate(rows):
    for k, g in enumerate(row):
      chars[r, k, :len(g)] = [ord(ch) for ch in g]
      length[r, k] = len(g)
  return Golds(chars, length)


# ---------------------------------------------------------------------------------------------
# In-graph readers of the tables (pure jnp, used by rl/rewards.py): token windows -> bytes ->
# code points -> SQuAD normalisation / parse_int, compared with the Golds buffer.


def compact1(x, m):
  """The entries of x where m, moved to the front in order (0 after them), and their count."""
  idx = jnp.where(m, jnp.cumsum(m) - 1, x.shape[0])
  return jnp.zeros_like(x).at[idx].set(x, mode="drop"), jnp.sum(m)


compact = jax.vmap(compact1)


def shift_left(x, k, fill):  # x[..., i + k]
  pad = [(0, 0)] * (x.ndim - 1) + [(0, k)]
  return jnp.pad(x[..., k:], pad, constant_values=fill)


def shift_right(x, k, fill):  # x[..., i - k]
  pad = [(0, 0)] * (x.ndim - 1) + [(k, 0)]
  return jnp.pad(x[..., :x.shape[-1] - k], pad, constant_values=fill)


def row_first(m):  # [N, L] -> [N]; L where none
  return jnp.min(jnp.where(m, jnp.arange(m.shape[-1]), m.shape[-1]), axis=-1)


def row_last(m):
  return jnp.max(jnp.where(m, jnp.arange(m.shape[-1]), -1), axis=-1)


def take_at(x, i):  # x[n, i[n]] (i clipped)
  return jnp.take_along_axis(x, jnp.clip(i, 0, x.shape[-1] - 1)[:, None], axis=-1)[:, 0]


def window_bytes(tables, toks, valid):
  """Byte streams of token windows [N, W] -> ([N, W*C] int32 compacted, count [N]), and each
  token's byte offset [N, W]."""
  raw = tables.raw[toks].astype(jnp.int32)
  ln = jnp.where(valid, tables.raw_len[toks].astype(jnp.int32), 0)
  m = jnp.arange(raw.shape[-1]) < ln[..., None]
  n = toks.shape[0]
  stream, nb = compact(raw.reshape(n, -1), m.reshape(n, -1))
  return stream, nb, jnp.cumsum(ln, axis=-1) - ln


def utf8_decode(s, n):
  """Code points of compacted UTF-8 byte streams [N, L], compacted, and their count: Python's
  `bytes.decode("utf-8", "replace")` (and Rust's `from_utf8_lossy`, which tokenizers' decoders
  use), i.e. Unicode's well-formed sequences only (no overlong forms, surrogates or values past
  U+10FFFF) and one U+FFFD for each maximal subpart of an ill-formed sequence."""
  b1, b2, b3 = (shift_left(s, k, 0) for k in (1, 2, 3))
  cont = lambda x: (x & 0xC0) == 0x80  # noqa: E731
  between = lambda x, lo, hi: (x >= lo) & (x <= hi)  # noqa: E731
  need = jnp.where(between(s, 0xC2, 0xDF), 1, jnp.where(between(s, 0xE0, 0xEF), 2, jnp.where(
      between(s, 0xF0, 0xF4), 3, 0)))  # continuation bytes a lead byte asks for
  # the second byte's range depends on the lead (Unicode Table 3-7): no overlong forms, no
  # surrogates (ED A0..BF), nothing past U+10FFFF (F4 90..)
  lo2 = jnp.where(s == 0xE0, 0xA0, jnp.where(s == 0xF0, 0x90, 0x80))
  hi2 = jnp.where(s == 0xED, 0x9F, jnp.where(s == 0xF4, 0x8F, 0xBF))
  ok1 = (need >= 1) & between(b1, lo2, hi2)
  ok2 = ok1 & (need >= 2) & cont(b2)
  ok3 = ok2 & (need >= 3) & cont(b3)
  got = ok1.astype(jnp.int32) + ok2 + ok3  # continuation bytes present, in order
  valid = (need > 0) & (got == need)
  span = 1 + got  # a valid sequence, or the maximal subpart one U+FFFD replaces
  eaten = (shift_right(span > 1, 1, False) | shift_right(span > 2, 2, False)
           | shift_right(span > 3, 3, False))  # bytes inside the span of an earlier lead
  start = (jnp.arange(s.shape[-1]) < n[:, None]) & ~eaten
  c = lambda x: x & 0x3F  # noqa: E731
  multi = jnp.where(need == 1, ((s & 0x1F) << 6) | c(b1), jnp.where(
      need == 2, ((s & 0x0F) << 12) | (c(b1) << 6) | c(b2),
      ((s & 0x07) << 18) | (c(b1) << 12) | (c(b2) << 6) | c(b3)))
  cp = jnp.where(s < 0x80, s, jnp.where(valid, multi, 0xFFFD))
  return compact(cp, start)


def cp_lookup(tables, x, name):  # BMP table lookup; code points above get 0 / themselves / -1
  small = x < N_CP
  v = getattr(tables, name)[jnp.where(small, x, 0)].astype(jnp.int32)
  return jnp.where(small, v, {"cp_info": 0, "cp_lower": x, "cp_digit": -1}[name])


def squad_normalize(x, n, tables, lg):
  """SQuAD normalize_answer on code points [N, L] -> (chars [N, lg+1], length [N])."""
  info = cp_lookup(tables, x, "cp_info")
  keep = (jnp.arange(x.shape[-1]) < n[:, None]) & ((info & CP_PUNCT) == 0)
  y, n = compact(cp_lookup(tables, x, "cp_lower"), keep)
  info = cp_lookup(tables, y, "cp_info")
  inr = jnp.arange(y.shape[-1]) < n[:, None]
  word = inr & ((info & CP_WORD) != 0)
  nw = lambda k: ~shift_left(word, k, False)  # noqa: E731
  ch = lambda k, c: shift_left(y, k, 0) == ord(c)  # noqa: E731
  start = word & ~shift_right(word, 1, False)
  is_a = start & ch(0, "a") & nw(1)
  is_an = start & ch(0, "a") & ch(1, "n") & nw(2)
  is_the = start & ch(0, "t") & ch(1, "h") & ch(2, "e") & nw(3)
  art = (is_a | is_an | shift_right(is_an, 1, False) | is_the | shift_right(is_the, 1, False)
         | shift_right(is_the, 2, False))
  solid = inr & ((info & CP_WS) == 0) & ~art  # characters that survive, words split by the rest
  first = solid & ~shift_right(solid, 1, False)
  piece = jnp.cumsum(first, axis=-1) - 1
  pos = jnp.cumsum(solid, axis=-1) - 1 + piece  # one space before every piece but the first
  size = lg + 1
  out = jax.vmap(lambda p, v: jnp.zeros(size, jnp.int32).at[p].set(v, mode="drop"))(
      jnp.where(solid, pos, size), y)
  out = jax.vmap(lambda o, p: o.at[p].set(32, mode="drop"))(
      out, jnp.where(first & (piece > 0), pos - 1, size))
  return out, jnp.sum(solid, -1) + jnp.maximum(jnp.sum(first, -1) - 1, 0)


def boxed_int(x, n, tables, lg):
  """parse_int(extract_boxed(text)) written canonically: (chars [N, lg+1], length, ok [N])."""
  idx = jnp.arange(x.shape[-1])[None]
  inr = idx < n[:, None]
  box = inr & (idx + 7 <= n[:, None])
  for k, c in enumerate("\\boxed{"):
    box &= shift_left(x, k, -1) == ord(c)
  last = row_last(box)
  start = (last + 7)[:, None]
  after = inr & (idx >= start)
  depth = 1 + jnp.cumsum(jnp.where(after & (x == ord("{")), 1, 0)
                         - jnp.where(after & (x == ord("}")), 1, 0), axis=-1)
  end = row_first(after & (x == ord("}")) & (depth == 0))[:, None]
  ok = (last >= 0) & (end[:, 0] < x.shape[-1])
  ws = (cp_lookup(tables, x, "cp_info") & CP_WS) != 0
  core = (idx >= start) & (idx < end) & ~ws                    # .strip()
  inner = (idx >= row_first(core)[:, None]) & (idx <= row_last(core)[:, None])
  core = inner & (x != ord("$"))                               # .strip("$")
  inner = (idx >= row_first(core)[:, None]) & (idx <= row_last(core)[:, None])
  keep = inner & (x != ord(",")) & (x != ord(" "))            # .replace(",", "").replace(" ", "")
  sign = keep & (jnp.cumsum(keep, axis=-1) == 1) & ((x == ord("+")) | (x == ord("-")))
  dig = cp_lookup(tables, x, "cp_digit")
  body = keep & ~sign
  ok &= jnp.all(~body | (dig >= 0), axis=-1) & jnp.any(body, axis=-1)
  nzp = row_first(body & (dig > 0))[:, None]
  zero = nzp[:, 0] == x.shape[-1]
  emit = body & (idx >= nzp)
  pre = (jnp.any(sign & (x == ord("-")), axis=-1) & ~zero).astype(jnp.int32)
  pos = jnp.where(emit, pre[:, None] + jnp.cumsum(emit, axis=-1) - 1, lg + 1)
  out = jax.vmap(lambda p, v: jnp.zeros(lg + 1, jnp.int32).at[p].set(v, mode="drop"))(pos, 48 + dig)
  out = out.at[:, 0].set(jnp.where(zero, ord("0"), jnp.where(pre > 0, ord("-"), out[:, 0])))
  return out, jnp.where(zero, 1, pre + jnp.sum(emit, axis=-1)), ok


def match_golds(out, length, golds):
  g, gl = jnp.asarray(golds.chars, jnp.int32), jnp.asarray(golds.length, jnp.int32)
  k = jnp.arange(g.shape[-1])
  same = jnp.all((out[:, None, :g.shape[-1]] == g) | (k >= gl[..., None]), axis=-1)
  return jnp.any(same & (gl == length[:, None]), axis=-1)
