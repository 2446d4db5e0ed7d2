"""A `tokenizers` byte-level BPE rebuilt from a GGUF file's tokenizer metadata.

A GGUF carries no tokenizer.json, only llama.cpp's keys: `tokenizer.ggml.tokens`, `.token_type`,
`.merges`, `.model` (`gpt2` = byte-level BPE), `.pre` (the pre-tokenizer's name), the special ids
and `tokenizer.chat_template`. We build the same tokenizer transformers builds for
`AutoTokenizer.from_pretrained(dir, gguf_file=...)`:

- model: BPE over the vocabulary as spelled in the file (tokens outside the byte alphabet are
  re-spelled byte-wise), merges as given, no unk, no byte fallback;
- pre-tokenizer: the split regex named by `tokenizer.ggml.pre` when we know it (llama3, qwen2,
  gpt-4o families) followed by byte-level mapping, else GPT-2's byte-level regex (this covers
  `smollm`: its vocabulary has only single digits, so the result equals llama.cpp's digit split);
- control tokens (type 3) become special added tokens, user-defined ones (type 4) plain added
  tokens, so both always encode whole;
- decoder: byte-level; no post-processor (BOS is added by `Tokenizer.encode(add_bos=True)`).

Only `gpt2`-type vocabularies are supported; sentencepiece-type GGUFs raise ValueError.
"""
from __future__ import annotations

import functools
import os
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

# llama.cpp token types.
_CONTROL, _USER_DEFINED = 3, 4

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZER_SPLITS = {
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx"), _LLAMA3_SPLIT),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "megrez"), _QWEN2_SPLIT),
    **dict.fromkeys(("gpt-4o", "llama4"), _GPT4O_SPLIT),
}


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible byte -> printable character map."""
  bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, map(chr, cs)))


def _field(reader, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  if field is None:
    return default
  return field.contents()


def read_gguf_tokenizer(path: str) -> dict[str, Any]:
  """The tokenizer metadata of a GGUF file as a plain dict (raises ValueError naming the path)."""
  try:
    import gguf  # core dependency, imported lazily: it pulls numpy memmaps of the whole file
    reader = gguf.GGUFReader(path, "r")
  except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
    raise ValueError(f"cannot read GGUF file {path!r}: {e}") from e
  tokens = _field(reader, "tokenizer.ggml.tokens")
  if not tokens:
    raise ValueError(f"GGUF file {path!r} carries no tokenizer (tokenizer.ggml.tokens missing)")
  meta = {
      "model": _field(reader, "tokenizer.ggml.model"),
      "pre": _field(reader, "tokenizer.ggml.pre"),
      "tokens": list(tokens),
      "token_type": list(_field(reader, "tokenizer.ggml.token_type", []) or []),
      "merges": list(_field(reader, "tokenizer.ggml.merges", []) or []),
      "chat_template": _field(reader, "tokenizer.chat_template"),
      "add_bos_token": _field(reader, "tokenizer.ggml.add_bos_token"),
  }
  for name in ("bos", "eos", "eot", "eom", "padding", "unknown"):
    meta[f"{name}_id"] = _field(reader, f"tokenizer.ggml.{name}_token_id")
  del reader
  return meta


def build_gguf_tokenizer(meta: dict[str, Any], path: str = "<gguf>") -> HFTokenizer:
  """A `tokenizers.Tokenizer` equivalent to transformers' GGUF conversion (see module doc)."""
  if meta.get("model") != "gpt2":
    raise ValueError(f"GGUF file {path!r}: tokenizer model {meta.get('model')!r} is not supported "
                     "(only byte-level BPE, tokenizer.ggml.model == 'gpt2')")
  spelling = bytes_to_unicode()
  alphabet = set(spelling.values())
  tokens = meta["tokens"]
  vocab = {}
  for i, tok in enumerate(tokens):
    spelled = tok if set(tok) <= alphabet else "".join(spelling[b] for b in tok.encode("utf-8"))
    vocab[spelled] = i  # a repeated spelling keeps its last id, as transformers does
  merges = [tuple(m.split(" ", 1)) for m in meta["merges"]]
  tk = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
  split = PRE_TOKENIZER_SPLITS.get(meta.get("pre") or "")
  if split is None:
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  else:
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
  tk.decoder = decoders.ByteLevel()
  types = meta.get("token_type") or []
  # A "control" token spelled outside the byte alphabet is a llama.cpp mislabel (adding it would
  # grow the vocabulary past the model's); transformers skips those and so do we.
  control = [AddedToken(t, special=True, normalized=False)
             for t, ty in zip(tokens, types) if ty == _CONTROL and set(t) <= alphabet]
  if control:
    tk.add_special_tokens(control)
  user = [AddedToken(t, special=False, normalized=False)
          for t, ty in zip(tokens, types) if ty == _USER_DEFINED and t in vocab]
  if user:
    tk.add_tokens(user)
  return tk


def load_gguf_tokenizer(path: str) -> tuple[HFTokenizer, dict[str, Any]]:
  """`(tokenizer, metadata)` for a GGUF file."""
  if not os.path.isfile(path):
    raise ValueError(f"GGUF file {path!r} does not exist")
  meta = read_gguf_tokenizer(path)
  return build_gguf_tokenizer(meta, path), meta
