"""Train a sentencepiece tokenizer in-process, with the foresight tags as single pieces.

Fixed choices (so every model we train agrees):

- ids: pad 0 `<pad>`, unk 1 `<unk>`, bos 2 `<s>`, eos 3 `</s>` (control pieces), then the
  user-defined symbols in order: `extra_symbols` (default the 14 foresight tags) followed by the
  plain chat markers `<|system|> <|user|> <|assistant|> <|tool|> <|end|>`, then the 256 byte pieces
  `<0x00>`..`<0xFF>`, then learned pieces;
- `byte_fallback=True` and identity normalisation with no whitespace collapsing and no dummy
  prefix, so any UTF-8 text (newlines, tabs, runs of spaces, emoji) decodes back exactly and
  `encode(a) + encode(b)` usually equals `encode(a + b)` at segment boundaries;
- `split_digits=True` (numbers become digit pieces, as in Llama);
- single-threaded and no sentence sampling by default, so the same texts give the same model bytes.
"""
from __future__ import annotations

import io
import os
from typing import Iterable, Sequence

from foresight_jax.tokenizer.core import Tokenizer
from foresight_jax.tokenizer.tokens import (FORESIGHT_TOKENS, PLAIN_CHAT_TOKENS, SP_BOS_ID,
                                            SP_EOS_ID, SP_PAD_ID, SP_UNK_ID)


def train_sentencepiece(texts: Iterable[str], model_prefix: str | os.PathLike | None,
                        vocab_size: int, model_type: str = "bpe",
                        extra_symbols: Sequence[str] = FORESIGHT_TOKENS, *,
                        character_coverage: float = 1.0, num_threads: int = 1,
                        max_sentence_length: int = 1 << 16,
                        chat_template: str = "plain") -> Tokenizer:
  """Train on `texts` (one training "sentence" each; may contain newlines) and return a Tokenizer.

  Writes `{model_prefix}.model` and `.vocab` when `model_prefix` is given; with None the model
  only lives in memory (`tok.backend.serialized_model_proto()` gives its bytes). Texts longer than
  `max_sentence_length` bytes are skipped by sentencepiece, so split long documents first.
  """
  import sentencepiece as spm
  if model_type not in ("bpe", "unigram"):
    raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
  if isinstance(extra_symbols, str):
    extra_symbols = [extra_symbols]
  symbols = list(dict.fromkeys([*extra_symbols, *PLAIN_CHAT_TOKENS]))
  bad = [s for s in symbols if not s or any(c.isspace() for c in s)]
  if bad:
    raise ValueError(f"extra symbols must be non-empty and contain no whitespace: {bad}")

  def sentences():
    for t in texts:
      if not isinstance(t, str):
        raise TypeError(f"texts must be strings, got {type(t).__name__}")
      if t:
        yield t

  writer = io.BytesIO()
  if model_prefix is None:
    out = dict(model_writer=writer)
  else:
    prefix = os.fspath(model_prefix)
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    out = dict(model_prefix=prefix)
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences(), vocab_size=vocab_size, model_type=model_type,
        pad_id=SP_PAD_ID, unk_id=SP_UNK_ID, bos_id=SP_BOS_ID, eos_id=SP_EOS_ID, pad_piece="<pad>",
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", user_defined_symbols=symbols,
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=character_coverage, max_sentence_length=max_sentence_length,
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=num_threads,
        minloglevel=2, **out)
  except RuntimeError as e:
    raise ValueError(f"sentencepiece training failed: {e}") from e
  if model_prefix is None:
    proto, source = writer.getvalue(), "<in-memory sentencepiece>"
  else:
    source = prefix + ".model"
    with open(source, "rb") as f:
      proto = f.read()
  sp = spm.SentencePieceProcessor(model_proto=proto)
  return Tokenizer.from_sentencepiece(sp, chat_template=chat_template, source=source)
