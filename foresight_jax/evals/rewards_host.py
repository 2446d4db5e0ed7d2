"""Host (plain-Python) versions of the FC-RL rewards (design.md §3): the oracles the in-graph
rewards of `foresight_jax.rl.rewards` are tested against, and what evaluation code can call on
receipts. No jax here.

This module also holds the few DEFINITIONS both sides share (the sizes in `RewardSpec`, the
stopword list, the content-token key, the byte whitespace class), so the in-graph tables
(`rl/vocab_tables.py`) are built from the very rules the oracles apply.

Where each oracle works from:
  format       the turn TEXT, through `render.parse_turn` (the grammar of design.md §1), minus the
               checks the in-graph state machine does not make (rollout line syntax, numbering,
               horizon, token counts), plus the success-number grammar below and "only the last
               turn may answer". See `rl.rewards.turn_format` for the exact list.
  success      the text of the turn's first `<success> ... </success>`: optional whitespace, digits
               with at most one '.', at least one digit, optional whitespace; valid iff it lies
               in [0, 1] (decided exactly, with Decimal).
  outcome      `scoring.score_answer` on the body of the last turn's first `<answer> ... </answer>`
               (0 without one, or when it has more than `max_answer_tokens` tokens).
  grounding    TOKEN IDS of the policy tokenizer, in plain loops (the in-graph figure is defined on
               ids: content tokens, canonical keys, BLEU-clipped precision).
  calibration  1 - mean_t (s_t - y)^2 over the episode's valid estimates; 0 with no estimate.

Whitespace in the byte-level parsers (success number, rollout line) is `WS_BYTES`, the ASCII
characters `str.isspace()` accepts, so bytes and str agree on ASCII text.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Mapping, Sequence

from foresight_jax.data.render import parse_turn
from foresight_jax.data.scoring import score_answer
from foresight_jax.tokenizer.tokens import FORESIGHT_TOKENS

VARIANTS = ("none", "state", "full")
TAG_CODE = {t: i for i, t in enumerate(FORESIGHT_TOKENS)}  # tag text -> code (its index)

# ASCII whitespace as str.isspace() sees it: \t \n \v \f \r, \x1c-\x1f, space.
WS_BYTES = bytes([9, 10, 11, 12, 13, 28, 29, 30, 31, 32])
_WS_CLASS = "[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f ]"
_WS_CHARS = WS_BYTES.decode("ascii")
_SUCCESS_NUM = re.compile(_WS_CLASS + r"*(?:[0-9]+\.?[0-9]*|\.[0-9]+)" + _WS_CLASS + "*")
# render._STEP_RE in bytes with the class above (and '->' as its own group, for its end).
_STEP1 = re.compile(("([0-9]+)\\." + _WS_CLASS + "+(.+?)" + _WS_CLASS + "+(->)" + _WS_CLASS
                     + "*(.*)").encode())
_SUCCESS_BODY = re.compile(r"<success>(.*?)</success>", re.S)
_ANSWER_BODY = re.compile(r"<answer>(.*?)</answer>", re.S)

# Short, on purpose: frequent function words that would make any forecast "grounded".
STOPWORDS = frozenset(
    "a an the of in on at to for by with from and or but not no is are was were be been being "
    "it its this that these those as than then there their they he she his her i you we my our "
    "will would can could should may might do does did has have had which who whom what when "
    "where how".split())

# parse_turn problems about what the in-graph grammar does not check (rl.rewards.turn_format);
# the success check is replaced by the grammar above.
_UNCHECKED = ("rollout line is not", "rollout step numbered", "rollout has ",
              "<success> is not a probability")


@dataclass(frozen=True)
class RewardSpec:
  """Static sizes of the in-graph rewards (the oracles apply the same caps).

  max_turns          T_max: turns 0..T_max-1 are scored (the rollout's max_turns).
  max_answer_tokens  an answer body longer than this many tokens scores 0 (a window of that many
                     tokens is parsed in-graph; golds are short).
  rollout_window     tokens of the rollout body read for its first line, from its first
                     non-blank token.
  max_expect         E: the step-1 expectation's first E content tokens are scored.
  max_obs_tokens     O: the observation's first O tokens are matched against.
  """
  max_turns: int = 8
  max_answer_tokens: int = 256
  rollout_window: int = 96
  max_expect: int = 64
  max_obs_tokens: int = 512

  def __post_init__(self):
    for f in ("max_turns", "max_answer_tokens", "rollout_window", "max_expect", "max_obs_tokens"):
      if getattr(self, f) < 1:
        raise ValueError(f"RewardSpec.{f} must be >= 1, got {getattr(self, f)}")


def check_variant(variant: str) -> str:
  if variant not in VARIANTS:
    raise ValueError(f"variant {variant!r} not in {VARIANTS}")
  return variant


# ---------------------------------------------------------------------------------------------
# Token-level definitions (shared with rl/vocab_tables.py)


def is_blank(text: str) -> bool:
  """A token that is whitespace or empty: allowed anywhere in a turn."""
  return not text.strip()


def _strip_ws_punct(s: str) -> str:
  i, j = 0, len(s)
  while i < j and (s[i].isspace() or s[i] in string.punctuation):
    i += 1
  while j > i and (s[j - 1].isspace() or s[j - 1] in string.punctuation):
    j -= 1
  return s[i:j]


def token_key(raw: bytes) -> str:
  """Matching key of a token: its text lowercased and stripped of surrounding whitespace and
  ASCII punctuation, so " Paris", "Paris" and "Paris," match. Bytes that are not UTF-8 on their
  own (a piece of a character) keep their identity (surrogate escapes)."""
  return _strip_ws_punct(raw.decode("utf-8", "surrogateescape").lower())


def is_content(key: str, is_markup: bool) -> bool:
  """Content tokens: not markup (a foresight tag or a special/control id such as a chat
  template's <|im_start|>), not whitespace/punctuation only, not digits only, no stopword."""
  return not is_markup and bool(key) and not key.isdigit() and key not in STOPWORDS


def token_bytes(tok) -> list[bytes]:
  """The bytes each id contributes to a decoded text (concatenating them gives `tok.decode(ids)`
  for our tokenizers: byte-level BPE, and sentencepiece with byte fallback and no dummy prefix).
  A byte-fallback or byte-level piece that is part of a character gets its raw byte."""
  n = tok.vocab_size
  if tok.backend_kind == "sentencepiece":
    sp, special = tok.backend, tok.special_ids
    out = []
    for i in range(n):
      piece = sp.id_to_piece(i)
      if sp.is_byte(i):
        out.append(bytes([int(piece[3:5], 16)]))
      elif i in special or sp.is_control(i) or sp.is_unknown(i):
        out.append(tok.decode([i]).encode())
      else:
        out.append(piece.replace("\u2581", " ").encode())
    return out
  from tokenizers import decoders
  tk = tok.backend
  added = {i: t.content for i, t in tk.get_added_tokens_decoder().items()}
  inv = _byte_decoder() if isinstance(tk.decoder, decoders.ByteLevel) else None
  out = []
  for i in range(n):
    piece = tk.id_to_token(i)
    if i in added:
      out.append(added[i].encode())
    elif inv is not None and piece is not None and all(c in inv for c in piece):
      out.append(bytes(inv[c] for c in piece))
    else:  # another decoder: trust the per-id decode (pieces of characters become U+FFFD)
      out.append(tok.decode([i]).encode())
  return out


def _byte_decoder() -> dict[str, int]:
  """GPT-2's byte <-> printable-unicode map, inverted (what ByteLevel pieces are spelled in)."""
  bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
  cs, k = list(bs), 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + k)
      k += 1
  return {chr(c): b for b, c in zip(bs, cs)}


def tag_ids(tok) -> dict[int, int]:
  """id -> tag code for the foresight tags; ValueError naming a tag that is not one token."""
  out = {}
  for t in FORESIGHT_TOKENS:
    ids = tok.encode(t)
    if len(ids) != 1:
      raise ValueError(
          f"foresight tag {t!r} encodes to {len(ids)} tokens {ids} with this tokenizer "
          f"({getattr(tok, 'source', '')}); the in-graph rewards need every tag of "
          "FORESIGHT_TOKENS to be a single token (train_sentencepiece adds them as pieces, "
          "train.stages_data.add_foresight_tokens adds them to a tokenizer.json/GGUF vocabulary)")
    out[ids[0]] = TAG_CODE[t]
  return out


# ---------------------------------------------------------------------------------------------
# Text oracles: format, success, outcome, calibration


def success_body_value(body: str) -> float | None:
  """The success grammar: optional whitespace, digits with at most one '.', at least one digit,
  optional whitespace; a value in [0, 1] (decided exactly)."""
  if not _SUCCESS_NUM.fullmatch(body):
    return None
  s = body.strip(_WS_CHARS)
  return float(s) if Decimal(s) <= 1 else None


def success_estimate(turn_text: str) -> float | None:
  """The number in the turn's FIRST `<success> ... </success>`, or None."""
  m = _SUCCESS_BODY.search(turn_text)
  return None if m is None else success_body_value(m.group(1))


def turn_problems(turn_text: str, variant: str, is_last: bool) -> list[str]:
  """The in-graph grammar's verdict on one turn, with reasons (empty: the turn is well formed)."""
  check_variant(variant)
  p = parse_turn(turn_text, variant, horizon=1 << 30, max_tokens=1 << 30)
  problems = [x for x in p.problems if not x.startswith(_UNCHECKED)]
  m = _SUCCESS_BODY.search(turn_text)
  if variant == "full" and m is not None and success_body_value(m.group(1)) is None:
    problems.append(f"<success> is not a probability: {m.group(1)[:20]!r}")
  if p.action is not None and p.action[0] == "answer" and not is_last:
    problems.append("<answer> before the last turn")
  return problems


def format_reward(turn_texts: Sequence[str], variant: str) -> tuple[list[bool], float]:
  """(ok per turn, mean over turns; 0 without turns)."""
  n = len(turn_texts)
  ok = [not turn_problems(t, variant, i == n - 1) for i, t in enumerate(turn_texts)]
  return ok, (sum(ok) / n if n else 0.0)


def answer_body(turn_text: str) -> str | None:
  m = _ANSWER_BODY.search(turn_text)
  return None if m is None else m.group(1)


def outcome(turn_texts: Sequence[str], golds: Sequence[str], domain: str, *,
            count_tokens: Callable[[str], int] | None = None,
            max_answer_tokens: int | None = None) -> float:
  """Score of the last turn's first answer body (`scoring.score_answer`); 0 without one.

  `count_tokens` (the policy tokenizer's `len(encode(.))`) applies the in-graph length cap."""
  body = answer_body(turn_texts[-1]) if turn_texts else None
  if body is None:
    return 0.0
  if count_tokens is not None and max_answer_tokens is not None:
    if count_tokens(body) > max_answer_tokens:
      return 0.0
  return float(score_answer(domain, body, list(golds)))


def calibration(estimates: Sequence[float], y: float) -> float:
  """RLCR-style Brier reward 1 - mean (s - y)^2; 0 for an episode with no estimate (it must not
  beat a badly calibrated one by staying silent)."""
  if not estimates:
    return 0.0
  return 1.0 - sum((s - y) ** 2 for s in estimates) / len(estimates)


def combine(components: Mapping[str, float], weights: Mapping[str, float]) -> float:
  r = weights.get("outcome", 1.0) * components["outcome"]
  for k, w in weights.items():
    if k != "outcome" and w != 0:
      r += w * components[k]
  return r


# ---------------------------------------------------------------------------------------------
# Grounding on token ids


@dataclass(frozen=True)
class HostVocab:
  """What the grounding oracle needs of the policy tokenizer: per-id bytes and tag codes."""
  id_bytes: tuple[bytes, ...]
  tags: Mapping[int, int]
  special: frozenset[int] = frozenset()  # the tokenizer's special/control ids

  @classmethod
  def from_tokenizer(cls, tok) -> "HostVocab":
    return cls(tuple(token_bytes(tok)), tag_ids(tok), frozenset(tok.special_ids))

  def blank(self, i: int) -> bool:
    return is_blank(self.id_bytes[i].decode("utf-8", "replace"))

  def content_key(self, i: int) -> str | None:
    key = token_key(self.id_bytes[i])
    return key if is_content(key, i in self.tags or i in self.special) else None


def _span(ids: Sequence[int], vocab: HostVocab, name: str) -> list[int] | None:
  """Ids strictly between the first <name> and the next </name>."""
  codes = [vocab.tags.get(i) for i in ids]
  o, c = TAG_CODE[f"<{name}>"], TAG_CODE[f"</{name}>"]
  if o not in codes:
    return None
  a = codes.index(o)
  if c not in codes[a + 1:]:
    return None
  return list(ids[a + 1:codes.index(c, a + 1)])


def step1_expectation_ids(turn_ids: Sequence[int], vocab: HostVocab, spec: RewardSpec
                          ) -> list[int] | None:
  """Ids of the first rollout line's expectation (None: no parsable step 1).

  The first line is read from the rollout body's first non-blank token, over at most
  `rollout_window` tokens, up to the first newline byte; it must match render's step regex
  `k. action -> expectation` (bytes, `WS_BYTES` whitespace). The expectation's tokens are those
  that START after the '->' and before the newline."""
  body = _span(turn_ids, vocab, "rollout")
  if body is None:
    return None
  first = next((k for k, i in enumerate(body) if not vocab.blank(i)), None)
  if first is None:
    return None
  window = body[first:first + spec.rollout_window]
  pieces = [vocab.id_bytes[i] for i in window]
  stream = b"".join(pieces)
  ls = next((k for k, b in enumerate(stream) if b not in WS_BYTES), len(stream))
  le = stream.find(b"\n", ls)
  le = len(stream) if le < 0 else le
  m = _STEP1.fullmatch(stream[ls:le])
  if m is None:
    return None
  arrow_end, out, start = ls + m.end(3), [], 0
  for i, b in zip(window, pieces):
    if b and arrow_end <= start < le:
      out.append(i)
    start += len(b)
  return out


def turn_grounding(turn_ids: Sequence[int], obs_ids: Sequence[int], vocab: HostVocab,
                   spec: RewardSpec) -> float:
  """Clipped token precision of the step-1 expectation's content tokens (first E) against the
  observation's first O tokens; 0 without a parsable step 1 or without content tokens."""
  exp = step1_expectation_ids(turn_ids, vocab, spec)
  if exp is None:
    return 0.0
  keys = [k for k in (vocab.content_key(i) for i in exp) if k is not None][:spec.max_expect]
  if not keys:
    return 0.0
  have = Counter(k for k in (vocab.content_key(i) for i in obs_ids[:spec.max_obs_tokens]) if k)
  return sum(min(c, have[k]) for k, c in Counter(keys).items()) / len(keys)


def grounding(turn_ids: Sequence[Sequence[int]], obs_ids: Sequence[Sequence[int] | None],
              vocab: HostVocab, spec: RewardSpec) -> tuple[list[float | None], float]:
  """(per-turn precision, None for a turn with no observation; mean over turns that have one,
  0 when none has)."""
  per = [None if o is None else turn_grounding(t, o, vocab, spec)
         for t, o in zip(turn_ids, obs_ids)]
  got = [g for g in per if g is not None]
  return per, (sum(got) / len(got) if got else 0.0)


def grounding_from_text(turn_text: str, observation: str, tok, spec: RewardSpec,
                        vocab: HostVocab | None = None) -> float:
  """Receipts store text: re-encode it with the policy tokenizer (approximately the sampled ids)."""
  from foresight_jax.data.render import render_observation
  vocab = vocab or HostVocab.from_tokenizer(tok)
  return turn_grounding(tok.encode(turn_text), tok.encode(render_observation(observation)),
                        vocab, spec)


def episode_rewards(turn_texts: Sequence[str], turn_ids: Sequence[Sequence[int]],
                    obs_ids: Sequence[Sequence[int] | None], golds: Sequence[str], domain: str,
                    vocab: HostVocab, variant: str, spec: RewardSpec = RewardSpec(),
                    weights: Mapping[str, float] | None = None,
                    count_tokens: Callable[[str], int] | None = None) -> dict:
  """Every component of one episode as the in-graph `compute_rewards` defines it, plus R."""
  turn_texts, turn_ids = list(turn_texts)[:spec.max_turns], list(turn_ids)[:spec.max_turns]
  obs_ids = list(obs_ids)[:spec.max_turns]
  ok, fmt = format_reward(turn_texts, variant)
  y = outcome(turn_texts, golds, domain, count_tokens=count_tokens,
              max_answer_tokens=spec.max_answer_tokens)
  est = [success_estimate(t) for t in turn_texts]
  per, ground = grounding(turn_ids, obs_ids, vocab, spec)
  comps = {"outcome": y, "format": fmt, "grounding": ground,
           "calibration": calibration([s for s in est if s is not None], y)}
  out = dict(comps, turn_ok=ok, success=est, turn_grounding=per)
  if weights is not None:
    out["R"] = combine(comps, weights)
  return out
