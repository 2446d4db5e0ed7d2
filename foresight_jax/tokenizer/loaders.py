"""Path dispatch for `Tokenizer.load`: files and directories -> backend + special ids + template.

Directory layout read (all optional except one vocabulary file): `tokenizer.json` (preferred) or
`tokenizer.model`; `tokenizer_config.json` (bos/eos/pad/unk tokens, chat_template,
add_bos_token); `special_tokens_map.json` (fallback for the special tokens); `chat_template.jinja`
or `chat_template.json` (where newer transformers saves the template); `generation_config.json`
(extra EOS ids).
"""
from __future__ import annotations

import json
import os
from typing import Any

from foresight_jax.tokenizer.core import _SentencePieceBackend, _TokenizersBackend

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
# transformers' SPECIAL_TOKENS_ATTRIBUTES: the named special tokens a chat template sees
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                       "mask_token")
_EOS_GUESSES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>")


def _read_json(path: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read JSON file {path!r}: {e}") from e
  if not isinstance(data, dict):
    raise ValueError(f"{path!r} does not hold a JSON object")
  return data


def _token_str(value: Any) -> str | None:
  """A special token as tokenizer_config.json spells it: a string or {"content": ...}."""
  if isinstance(value, dict):
    value = value.get("content")
  return value if isinstance(value, str) else None


def _jinja(value: Any) -> str | None:
  """chat_template may be one string or a list of {"name", "template"} (pick "default")."""
  if isinstance(value, list):
    named = {d.get("name"): d.get("template") for d in value if isinstance(d, dict)}
    value = named.get("default", next(iter(named.values()), None))
  return value if isinstance(value, str) else None


def read_config(directory: str) -> dict[str, Any]:
  """Merged tokenizer configuration of a HF-style directory (empty if it has none)."""
  cfg: dict[str, Any] = {}
  stm = os.path.join(directory, "special_tokens_map.json")
  if os.path.isfile(stm):
    cfg.update(_read_json(stm))
  tc = os.path.join(directory, "tokenizer_config.json")
  if os.path.isfile(tc):
    cfg.update({k: v for k, v in _read_json(tc).items() if v is not None or k not in cfg})
  jinja_file = os.path.join(directory, "chat_template.jinja")
  json_file = os.path.join(directory, "chat_template.json")
  if os.path.isfile(jinja_file):
    with open(jinja_file, encoding="utf-8") as f:
      cfg["chat_template"] = f.read()
  elif os.path.isfile(json_file) and not cfg.get("chat_template"):
    cfg["chat_template"] = _read_json(json_file).get("chat_template")
  gc = os.path.join(directory, "generation_config.json")
  if os.path.isfile(gc):
    eos = _read_json(gc).get("eos_token_id")
    cfg["_generation_eos_ids"] = [eos] if isinstance(eos, int) else list(eos or [])
  return cfg


def _special_kwargs(backend, cfg: dict[str, Any], source: str) -> dict[str, Any]:
  def tid(name):
    tok = _token_str(cfg.get(name))
    if tok is None:
      return None
    i = backend.token_to_id(tok)
    if i is None:
      raise ValueError(f"{source!r}: {name} {tok!r} from the tokenizer config is not in the vocabulary")
    return i

  bos, eos, pad = tid("bos_token"), tid("eos_token"), tid("pad_token")
  if bos is None and "bos_token" not in cfg and isinstance(backend, _TokenizersBackend):
    bos = backend.template_bos()
  if bos is None and isinstance(backend, _SentencePieceBackend):
    bos = backend.bos()
  if eos is None and isinstance(backend, _SentencePieceBackend):
    eos = backend.eos()
  if eos is None and "eos_token" not in cfg:
    eos = next((i for i in map(backend.token_to_id, _EOS_GUESSES) if i is not None), None)
  if pad is None and isinstance(backend, _SentencePieceBackend):
    pad = backend.pad()
  add_bos = cfg.get("add_bos_token")
  if add_bos is None:
    add_bos = isinstance(backend, _SentencePieceBackend) or (
        isinstance(backend, _TokenizersBackend) and backend.template_bos() is not None)
  extra_eos = [backend.token_to_id(t) for t in cfg.get("foresight_eos_tokens") or []]
  # what transformers passes to the template as bos_token, eos_token, ...: the config's strings
  special = {k: _token_str(cfg.get(k)) for k in SPECIAL_TOKEN_NAMES}
  kwargs = dict(backend=backend, bos_id=bos, pad_id=pad, jinja=_jinja(cfg.get("chat_template")),
                eos_ids=[eos] + extra_eos + cfg.get("_generation_eos_ids", []),
                default_add_bos=add_bos, source=source,
                special_tokens={k: v for k, v in special.items() if v is not None} or None)
  # Written by `Tokenizer.save`: the chat family and system prompt chosen when it was saved. The
  # checkpoint's own jinja is rendered unless the save said otherwise (saves before
  # foresight_use_jinja existed rendered the family: the jinja is the truth for them too).
  if cfg.get("foresight_chat_template"):
    kwargs["chat_template"] = cfg["foresight_chat_template"]
    kwargs["use_jinja"] = bool(cfg.get("foresight_use_jinja", True))
  if "foresight_default_system" in cfg:
    kwargs["default_system"] = cfg["foresight_default_system"]
  return kwargs


def _load_sentencepiece(path: str) -> _SentencePieceBackend:
  import sentencepiece as spm
  sp = spm.SentencePieceProcessor()
  try:
    sp.Load(path)
  except Exception as e:  # noqa: BLE001 - sentencepiece raises OSError/RuntimeError variants
    raise ValueError(f"cannot load sentencepiece model {path!r}: {e}") from e
  return _SentencePieceBackend(sp)


def _load_tokenizer_json(path: str) -> _TokenizersBackend:
  from tokenizers import Tokenizer as HFTokenizer
  try:
    tk = HFTokenizer.from_file(path)
  except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception on bad files
    raise ValueError(f"cannot load tokenizer.json {path!r}: {e}") from e
  tk.no_truncation()
  tk.no_padding()
  return _TokenizersBackend(tk)


def _gguf_kwargs(path: str) -> dict[str, Any]:
  from foresight_jax.tokenizer.gguf_vocab import load_gguf_tokenizer
  tk, meta = load_gguf_tokenizer(path)
  # the named special tokens transformers' GGUF conversion sets (what a chat template sees)
  ids = {"bos_token": meta["bos_id"], "eos_token": meta["eos_id"], "unk_token": meta["unknown_id"],
         "pad_token": meta["padding_id"]}
  special = {k: tk.id_to_token(i) for k, i in ids.items() if i is not None}
  return dict(backend=_TokenizersBackend(tk), bos_id=meta["bos_id"],
              eos_ids=[meta["eos_id"], meta["eot_id"], meta["eom_id"]], pad_id=meta["padding_id"],
              jinja=meta["chat_template"], default_add_bos=bool(meta["add_bos_token"]), source=path,
              special_tokens={k: v for k, v in special.items() if v is not None})


def load_kwargs(path: str) -> dict[str, Any]:
  """Keyword arguments of `Tokenizer(...)` for whatever `path` names (see `Tokenizer.load`)."""
  if not path or not os.path.exists(path):
    raise ValueError(f"tokenizer path {path!r} does not exist")
  if os.path.isdir(path):
    cfg = read_config(path)
    for name in _TOKENIZER_FILES:
      f = os.path.join(path, name)
      if os.path.isfile(f):
        backend = _load_tokenizer_json(f) if name.endswith(".json") else _load_sentencepiece(f)
        return _special_kwargs(backend, cfg, path)
    ggufs = sorted(n for n in os.listdir(path) if n.endswith(".gguf"))
    if len(ggufs) == 1:
      return _gguf_kwargs(os.path.join(path, ggufs[0]))
    raise ValueError(f"directory {path!r} holds no tokenizer.json or tokenizer.model"
                     + (f" (and {len(ggufs)} .gguf files: pass one)" if ggufs else ""))
  lower = path.lower()
  if lower.endswith(".gguf"):
    return _gguf_kwargs(path)
  if lower.endswith(".model"):
    return _special_kwargs(_load_sentencepiece(path), read_config(os.path.dirname(path) or "."), path)
  if lower.endswith(".json"):
    if os.path.basename(lower) in ("tokenizer_config.json", "special_tokens_map.json"):
      raise ValueError(f"{path!r} is a tokenizer config, not a vocabulary; pass its directory")
    return _special_kwargs(_load_tokenizer_json(path), read_config(os.path.dirname(path) or "."), path)
  raise ValueError(f"unknown tokenizer file {path!r}: expected a sentencepiece .model, a "
                   "tokenizer.json, a .gguf file or a directory holding one")
