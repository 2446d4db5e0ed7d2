"""The peer's arithmetic GRPO task (../shared/peers/tunix_grpo_bench.py), kept identical so the
two step times compare: its tiny Qwen3 (`model_config`), its 512-piece sentencepiece BPE
(`corpus_lines`, `build_tokenizer`: the same corpus and trainer settings, so a model cached by
either side is the other's too), its prompts (`make_batches`) and their encoding (BOS + prompt
left-padded to 32), and its reward as a jnp function on token ids (`DigitTable`, `contains_gold`:
1 iff the completion's text contains the digits of a + b, equal to the peer's Python
`str(a+b) in sp.decode(completion)`; tested against that oracle in tests/test_rl_arith.py).
The jitted GRPO step on this task is rl/arith.py.
"""
from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from foresight_jax.models import presets
from foresight_jax.models.config import ModelConfig

# The peer's fixed work (tunix_grpo_bench.MODEL and constants).
MODEL = dict(num_layers=2, embed_dim=64, hidden_dim=256, num_heads=4, head_dim=16, num_kv_heads=2,
             vocab_size=512)
MAX_PROMPT_LENGTH = 32
TEMPERATURE = 0.9
LEARNING_RATE = 1e-4
BETA = 0.04
EPSILON = 0.2
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3  # the peer's sentencepiece ids
GOLD_WIDTH = 4  # digits of a + b (at most 198 for the peer's operands in [0, 99]); room for more

# digit classes of the reward table
OTHER = 10   # any character that is not an ASCII digit
NONE = -1    # no character (past the piece's text, control pieces, beyond a stream's end)


def model_config(**overrides) -> ModelConfig:
  """The peer's tiny Qwen3 in our config: the `tiny` preset with every size set."""
  kw = dict(family="qwen3", qk_norm=True, vocab_size=MODEL["vocab_size"], hidden_size=MODEL["embed_dim"],
            intermediate_size=MODEL["hidden_dim"], num_layers=MODEL["num_layers"], num_heads=MODEL["num_heads"],
            num_kv_heads=MODEL["num_kv_heads"], head_dim=MODEL["head_dim"], rms_norm_eps=1e-6,
            rope_theta=10_000.0, tie_embeddings=False, bos_token_id=BOS_ID, eos_token_ids=(EOS_ID,),
            param_dtype="float32", compute_dtype="float32",
            # two layers unrolled: same math as the scan, less to compile (the first step's cost)
            scan_layers=False)
  kw.update(overrides)
  return presets.model_config("tiny", **kw)


# ------------------------------------------------------------------------------ data (the peer's)
_SYL = ["ka", "lo", "mi", "ne", "ru", "ta", "si", "po", "ve", "du", "zo",
        "ha", "ri", "be", "fu", "go", "ja", "wi", "xe", "yo", "qu", "ce"]


def corpus_lines(n_lines: int = 6000) -> list[str]:
  """The peer's `_corpus_lines`: deterministic arithmetic Q/A plus pseudo-words."""
  r = random.Random(1234)
  words = sorted({"".join(r.choice(_SYL) for _ in range(r.randint(1, 4))) for _ in range(3000)})
  lines = []
  for _ in range(n_lines):
    a, b = r.randint(0, 99), r.randint(0, 99)
    filler = " ".join(r.choice(words) for _ in range(r.randint(3, 12)))
    lines.append(f"Q: what is {a} plus {b}? A: {a + b}. {filler}")
  return lines


def build_tokenizer(work_dir: str, vocab_size: int = MODEL["vocab_size"]):
  """The peer's `build_tokenizer`: the same sentencepiece model file name, corpus and settings,
  so a model cached by either side is the other's too."""
  import sentencepiece as spm
  os.makedirs(work_dir, exist_ok=True)
  prefix = os.path.join(work_dir, f"tunix_bench_spm_v{vocab_size}")
  if not os.path.exists(prefix + ".model"):
    # write to a private name first: a concurrent reader never sees a half-written model
    tmp = f"{prefix}.tmp{os.getpid()}"
    with open(tmp + ".corpus.txt", "w") as f:
      f.write("\n".join(corpus_lines()))
    spm.SentencePieceTrainer.train(input=tmp + ".corpus.txt", model_prefix=tmp, vocab_size=vocab_size,
                                   model_type="bpe", character_coverage=1.0, pad_id=PAD_ID, unk_id=UNK_ID,
                                   bos_id=BOS_ID, eos_id=EOS_ID, num_threads=1, minloglevel=2)
    for ext in (".corpus.txt", ".vocab", ".model"):
      os.replace(tmp + ext, prefix + ext)
  sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
  assert sp.get_piece_size() == vocab_size, sp.get_piece_size()
  return sp


def make_batches(n_prompts: int, n_steps: int, seed: int, max_operand: int = 99) -> list[dict]:
  """The peer's `make_batches` (same draws at the default `max_operand`): S batches of N prompts.
  A smaller `max_operand` gives an easier task (tests: single-digit sums)."""
  r = random.Random(seed)
  batches = []
  for _ in range(n_steps):
    prompts, answers = [], []
    for _ in range(n_prompts):
      a, b = r.randint(0, max_operand), r.randint(0, max_operand)
      prompts.append(f"Q: what is {a} plus {b}? A:")
      answers.append(str(a + b))
    batches.append({"prompts": prompts, "answer": answers})
  return batches


@flax.struct.dataclass
class ArithBatch:
  """N prompts: BOS + prompt ids LEFT-padded to P, their lengths, the gold digits of a + b."""
  prompts: Any    # int32 [N, P]
  prompt_len: Any  # int32 [N]
  gold: Any       # int32 [N, Lg] digits 0..9, NONE after gold_len
  gold_len: Any   # int32 [N]


def encode_prompts(sp, prompts: Sequence[str], width: int = MAX_PROMPT_LENGTH) -> tuple[np.ndarray, np.ndarray]:
  """BOS + ids (as Tunix's sampler tokenises), left-padded with PAD_ID to `width`."""
  out = np.full((len(prompts), width), PAD_ID, np.int32)
  lens = np.zeros(len(prompts), np.int32)
  for i, p in enumerate(prompts):
    ids = [BOS_ID] + list(sp.encode(p))
    if len(ids) > width:
      raise ValueError(f"prompt {p!r} is {len(ids)} tokens with BOS, more than {width}")
    out[i, width - len(ids):] = ids
    lens[i] = len(ids)
  return out, lens


def encode_golds(answers: Sequence[str], width: int = GOLD_WIDTH) -> tuple[np.ndarray, np.ndarray]:
  g = np.full((len(answers), width), NONE, np.int32)
  n = np.zeros(len(answers), np.int32)
  for i, a in enumerate(answers):
    if not a.isdigit() or not a.isascii() or len(a) > width:
      raise ValueError(f"gold {a!r} must be 1..{width} ASCII digits")
    g[i, :len(a)] = [int(c) for c in a]
    n[i] = len(a)
  return g, n


def encode_batch(sp, batch: dict, width: int = MAX_PROMPT_LENGTH) -> ArithBatch:
  toks, lens = encode_prompts(sp, batch["prompts"], width)
  gold, gold_len = encode_golds(batch["answer"])
  return ArithBatch(prompts=toks, prompt_len=lens, gold=gold, gold_len=gold_len)


# ------------------------------------------------------------------------------ reward
class DigitTable(NamedTuple):
  """What each id adds to the decoded text, as digit classes: chars [V, C] int32 (0..9 a digit,
  OTHER any other character, NONE past the piece's text). Control ids (pad, bos, eos) add
  nothing, `<unk>` adds " ⁇ ", a piece's '▁' is a space: sentencepiece's DecodeIds, piece by piece
  (dropping the leading space of the first piece, as DecodeIds does, never changes which digit
  strings the text contains)."""
  chars: Any

  @classmethod
  def build(cls, sp) -> DigitTable:
    texts = []
    for i in range(sp.get_piece_size()):
      if sp.is_control(i):
        texts.append("")
      elif sp.is_unknown(i):
        texts.append(sp.decode([i]))
      else:
        texts.append(sp.id_to_piece(i).replace("\u2581", " "))
    return cls(chars=jnp.asarray(digit_classes(texts)))


def digit_classes(texts: Sequence[str]) -> np.ndarray:
  c = max(1, max(len(t) for t in texts))
  out = np.full((len(texts), c), NONE, np.int32)
  for i, t in enumerate(texts):
    out[i, :len(t)] = [int(ch) if ch in "0123456789" else OTHER for ch in t]
  return out


def contains_gold(table: DigitTable, tokens: jax.Array, valid: jax.Array, gold: jax.Array,
                  gold_len: jax.Array) -> jax.Array:
  """1.0 where the text of the valid ids of a row contains its gold digit string, else 0.0.

  tokens/valid [B, T], gold [B, Lg] (digits, then anything), gold_len [B] >= 1. The rows' texts
  are the ids' digit-class strings concatenated ([B, T*C], NONE entries moved to the end by a
  scatter), and the gold is matched at every offset."""
  chars = jnp.where(valid[..., None], table.chars[tokens], NONE)  # [B, T, C]
  b = chars.shape[0]
  flat = chars.reshape(b, -1)
  keep = flat != NONE
  idx = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, flat.shape[1])
  stream = jax.vmap(lambda i, v: jnp.full(v.shape, NONE, v.dtype).at[i].set(v, mode="drop"))(idx, flat)
  lg = gold.shape[1]
  stream = jnp.pad(stream, ((0, 0), (0, lg)), constant_values=NONE)
  n = flat.shape[1]
  hit = jnp.ones((b, n), bool)
  for k in range(lg):
    hit &= (k >= gold_len[:, None]) | (stream[:, k:k + n] == gold[:, k:k + 1])
  # a gold digit never equals NONE, so a match never runs past the row's text
  return jnp.any(hit, axis=1).astype(jnp.float32)


__all__ = [
  "MODEL",
  "ArithBatch",
  "DigitTable",
  "build_tokenizer",
  "contains_gold",
  "corpus_lines",
  "digit_classes",
  "encode_batch",
  "encode_golds",
  "encode_prompts",
  "make_batches",
  "model_config",
]
