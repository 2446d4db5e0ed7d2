"""`Tokenizer`: sentencepiece, tokenizer.json and GGUF vocabularies behind one small interface.

Two backends, chosen by `Tokenizer.load`:

- sentencepiece (`.model`): control pieces (pad/bos/eos) are the "special" ids; user-defined
  pieces (the foresight tags) are ordinary text that encodes to one id. Control pieces written in
  text are NOT parsed (sentencepiece never does); use `add_bos=True` or `eos_ids`.
- `tokenizers` (tokenizer.json, or one rebuilt from GGUF metadata): added tokens written in text
  encode to their id. `encode` never runs the tokenizer.json post-processor: BOS is added only on
  request (`add_bos=True`), so every family behaves the same.

Special ids: `bos_id` (None if the family has none), `eos_ids` (the tokenizer's EOS first, then any
end-of-turn marker the vocabulary holds: `<|im_end|>`, `<|eot_id|>`, `<|end|>`, ...), `pad_id`
(the configured pad, else `eos_ids[0]`, else 0), `special_ids` (what `decode(skip_special=True)`
drops: control/special tokens; never the foresight tags).
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

from foresight_jax.tokenizer import chat as _chat
from foresight_jax.tokenizer.tokens import END_OF_TURN_TOKENS, PLAIN_CHAT_TOKENS

_UNSET: Any = object()


class _SentencePieceBackend:
  kind = "sentencepiece"

  def __init__(self, sp):
    self.sp = sp
    n = sp.get_piece_size()
    self.special_ids = frozenset(
        [i for i in range(n) if sp.is_control(i)]
        + [i for i in (self.token_to_id(t) for t in PLAIN_CHAT_TOKENS) if i is not None])

  @property
  def vocab_size(self) -> int:
    return self.sp.get_piece_size()

  def _id(self, fn) -> int | None:
    i = fn()
    return None if i < 0 else i

  def bos(self): return self._id(self.sp.bos_id)
  def eos(self): return self._id(self.sp.eos_id)
  def pad(self): return self._id(self.sp.pad_id)

  def encode(self, text: str) -> list[int]:
    return self.sp.encode(text, out_type=int)

  def encode_batch(self, texts: list[str]) -> list[list[int]]:
    return self.sp.encode(texts, out_type=int)

  def decode(self, ids: Sequence[int], skip_special: bool) -> str:
    if not self.special_ids.intersection(ids):
      return self.sp.decode(ids)
    out, run = [], []
    for i in ids:
      if i in self.special_ids:
        if run:
          out.append(self.sp.decode(run))
          run = []
        if not skip_special:
          out.append(self.sp.id_to_piece(i))
      else:
        run.append(i)
    if run:
      out.append(self.sp.decode(run))
    return "".join(out)

  def token_to_id(self, token: str) -> int | None:
    i = self.sp.piece_to_id(token)
    return i if self.sp.id_to_piece(i) == token else None

  def id_to_token(self, i: int) -> str | None:
    return self.sp.id_to_piece(i) if 0 <= i < self.vocab_size else None

  def add_tokens(self, tokens: Sequence[str], special: bool) -> int:
    missing = [t for t in tokens if self.token_to_id(t) is None or len(self.encode(t)) != 1]
    if missing:
      raise ValueError(
          f"cannot add {missing} to a sentencepiece model after training; retrain with "
          "train_sentencepiece(..., extra_symbols=...) so they are user-defined pieces")
    return self.vocab_size


class _TokenizersBackend:
  kind = "tokenizers"

  def __init__(self, tk):
    self.tk = tk

  @property
  def special_ids(self) -> frozenset[int]:
    return frozenset(i for i, t in self.tk.get_added_tokens_decoder().items() if t.special)

  @property
  def vocab_size(self) -> int:
    added = self.tk.get_added_tokens_decoder()
    return max(self.tk.get_vocab_size(with_added_tokens=True), max(added, default=-1) + 1)

  def encode(self, text: str) -> list[int]:
    return self.tk.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in self.tk.encode_batch(texts, add_special_tokens=False)]

  def decode(self, ids: Sequence[int], skip_special: bool) -> str:
    return self.tk.decode(list(ids), skip_special_tokens=skip_special)

  def token_to_id(self, token: str) -> int | None:
    return self.tk.token_to_id(token)

  def id_to_token(self, i: int) -> str | None:
    return self.tk.id_to_token(i) if i >= 0 else None

  def add_tokens(self, tokens: Sequence[str], special: bool) -> int:
    from tokenizers import AddedToken
    added = [AddedToken(t, special=special, normalized=False) for t in tokens]
    (self.tk.add_special_tokens if special else self.tk.add_tokens)(added)
    return self.vocab_size

  def template_bos(self) -> int | None:
    """The id the tokenizer.json post-processor puts before a text, if it puts exactly one."""
    bare = self.tk.encode("", add_special_tokens=False).ids
    full = self.tk.encode("", add_special_tokens=True).ids
    return full[0] if not bare and len(full) >= 1 and full[0] in self.special_ids else None


class Tokenizer:
  """One interface over a sentencepiece or `tokenizers` backend, plus a chat template.

  Build with `Tokenizer.load(path)` or `train_sentencepiece(...)`.

  Chat rendering: when the checkpoint carries its own jinja template (`jinja`: tokenizer_config.json
  `chat_template`, or GGUF `tokenizer.chat_template`), `apply_chat_template` renders that template
  as transformers does (`foresight_jax.tokenizer.jinja`); `uses_jinja` says so. Otherwise (our
  sentencepiece tokenizers, or a checkpoint without a template) it renders the built-in family
  template of `foresight_jax.tokenizer.chat`.

  `chat_template` is always a family name in `CHAT_TEMPLATES` (callers branch on it, e.g. the
  role of tool observations): detected from the jinja, else guessed from the vocabulary's markers,
  else "plain". Passing `chat_template` explicitly picks that built-in renderer instead of the
  jinja (unless `use_jinja=True`). `default_system`: with the built-in renderer, the system turn
  written when a conversation opens without one (default: the one detected in the jinja); with
  the jinja, a given string is added as a first system message (default: none added, the
  template decides). `special_tokens`: the named special tokens the template sees (`bos_token`,
  `eos_token`, ...); by default built from the special ids.
  """

  def __init__(self, backend, *, bos_id: int | None = None, eos_ids: Sequence[int] = (),
               pad_id: int | None = None, chat_template: str | None = None,
               default_system: str | None = _UNSET, jinja: str | None = None,
               default_add_bos: bool = False, source: str = "", use_jinja: bool | None = None,
               special_tokens: Mapping[str, str] | None = None):
    self._backend = backend
    self.source = source
    self.jinja_template = jinja
    self.default_add_bos = bool(default_add_bos and bos_id is not None)
    self._bos = bos_id
    eos = [i for i in eos_ids if i is not None]
    eos += [i for i in (backend.token_to_id(t) for t in END_OF_TURN_TOKENS) if i is not None]
    self._eos = tuple(dict.fromkeys(eos))
    self._pad = pad_id if pad_id is not None else (self._eos[0] if self._eos else 0)
    if use_jinja is None:
      use_jinja = chat_template is None
    self.uses_jinja = bool(use_jinja and jinja)
    detected = _chat.detect_chat_template(jinja)
    if chat_template is None:
      chat_template = detected[0] if detected else _chat.template_from_vocab(self.is_single_token)
    if chat_template not in _chat.CHAT_TEMPLATES:
      raise ValueError(
          f"unknown chat template {chat_template!r}; expected one of {_chat.CHAT_TEMPLATES}")
    self.chat_template = chat_template
    self._system_given = default_system is not _UNSET
    if default_system is _UNSET:
      default_system = detected[1] if detected and detected[0] == chat_template else None
    self.default_system = default_system
    if special_tokens is None:
      names = (("bos_token", bos_id), ("eos_token", self._eos[0] if self._eos else None),
               ("pad_token", pad_id))
      special_tokens = {k: self.id_to_token(i) for k, i in names if i is not None}
    self.special_tokens = {k: v for k, v in special_tokens.items() if isinstance(v, str)}

  # ---- construction ----------------------------------------------------------------------------
  @classmethod
  def load(cls, path: str | os.PathLike, *, chat_template: str | None = None,
           default_system: str | None = _UNSET) -> "Tokenizer":
    """Load a sentencepiece `.model`, a `tokenizer.json`, a directory holding either (with an
    optional tokenizer_config.json), or a `.gguf` file. Raises ValueError naming the path.

    `chat_template` (a family name) renders chats with that built-in template instead of the
    checkpoint's own jinja; `default_system` as in the class docstring."""
    from foresight_jax.tokenizer import loaders
    kwargs = loaders.load_kwargs(os.fspath(path))
    if chat_template is not None:  # a built-in family instead of the checkpoint's own template
      kwargs["chat_template"] = chat_template
      kwargs["use_jinja"] = False
    if default_system is not _UNSET:
      kwargs["default_system"] = default_system
    return cls(**kwargs)

  @classmethod
  def from_sentencepiece(cls, sp, **kwargs) -> "Tokenizer":
    """Wrap a loaded `sentencepiece.SentencePieceProcessor`."""
    b = _SentencePieceBackend(sp)
    kwargs.setdefault("bos_id", b.bos())
    kwargs.setdefault("eos_ids", (b.eos(),))
    kwargs.setdefault("pad_id", b.pad())
    kwargs.setdefault("default_add_bos", True)
    return cls(b, **kwargs)

  @classmethod
  def from_tokenizers(cls, tk, **kwargs) -> "Tokenizer":
    """Wrap a `tokenizers.Tokenizer` (special ids as keyword arguments)."""
    return cls(_TokenizersBackend(tk), **kwargs)

  def save(self, directory: str | os.PathLike) -> str:
    """Write `tokenizer.json` (or `tokenizer.model`) and `tokenizer_config.json` into `directory`
    so that `Tokenizer.load(directory)` gives back this tokenizer (special ids, chat family,
    default system prompt and the original jinja template included; transformers'
    `AutoTokenizer.from_pretrained(directory)` reads the same jinja). Returns the directory."""
    import json
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    if self.backend_kind == "sentencepiece":
      with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
        f.write(self._backend.sp.serialized_model_proto())
    else:
      self._backend.tk.save(os.path.join(directory, "tokenizer.json"))
    tok = lambda i: None if i is None else self.id_to_token(i)  # noqa: E731
    cfg = {
        "bos_token": tok(self._bos), "eos_token": tok(self._eos[0]) if self._eos else None,
        "pad_token": tok(self._pad), "add_bos_token": self.default_add_bos,
        "foresight_eos_tokens": [tok(i) for i in self._eos],
        "foresight_chat_template": self.chat_template,
        "foresight_use_jinja": self.uses_jinja,
    }
    cfg.update({k: v for k, v in self.special_tokens.items() if k not in cfg})
    if not self.uses_jinja or self._system_given:  # with the jinja, the template's own default rules
      cfg["foresight_default_system"] = self.default_system
    if self.backend_kind == "tokenizers":
      cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    if self.jinja_template:
      cfg["chat_template"] = self.jinja_template
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
      json.dump(cfg, f, indent=2, ensure_ascii=False)
    return directory

  # ---- properties ------------------------------------------------------------------------------
  @property
  def backend_kind(self) -> str:
    """"sentencepiece" or "tokenizers"."""
    return self._backend.kind

  @property
  def backend(self):
    """The wrapped `SentencePieceProcessor` or `tokenizers.Tokenizer`."""
    return self._backend.sp if self.backend_kind == "sentencepiece" else self._backend.tk

  @property
  def vocab_size(self) -> int:
    """Number of ids (max id + 1), added tokens included: the minimum embedding rows."""
    return self._backend.vocab_size

  def __len__(self) -> int:
    return self.vocab_size

  @property
  def bos_id(self) -> int | None:
    return self._bos

  @property
  def eos_ids(self) -> tuple[int, ...]:
    return self._eos

  @property
  def pad_id(self) -> int:
    return self._pad

  @property
  def special_ids(self) -> frozenset[int]:
    """Ids `decode(skip_special=True)` drops (control / special tokens)."""
    return self._backend.special_ids

  def __repr__(self) -> str:
    return (f"Tokenizer({self.backend_kind}, vocab_size={self.vocab_size}, bos={self._bos}, "
            f"eos={self._eos}, pad={self._pad}, chat_template={self.chat_template!r}, "
            f"source={self.source!r})")

  # ---- encode / decode -------------------------------------------------------------------------
  def encode(self, text: str, add_bos: bool = False) -> list[int]:
    """Token ids of `text`; BOS prepended only if `add_bos` and the family has one."""
    if not isinstance(text, str):
      raise TypeError(f"encode expects a str, got {type(text).__name__}")
    ids = self._backend.encode(text)
    return [self._bos] + ids if add_bos and self._bos is not None else ids

  def encode_batch(self, texts: Iterable[str], add_bos: bool = False) -> list[list[int]]:
    texts = list(texts)
    for t in texts:
      if not isinstance(t, str):
        raise TypeError(f"encode_batch expects strs, got {type(t).__name__}")
    out = self._backend.encode_batch(texts)
    return [[self._bos] + ids for ids in out] if add_bos and self._bos is not None else out

  def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
    return self._backend.decode([int(i) for i in ids], skip_special)

  def token_to_id(self, token: str) -> int | None:
    """Id of a vocabulary entry as spelled in the vocabulary (None if absent)."""
    return self._backend.token_to_id(token)

  def id_to_token(self, i: int) -> str | None:
    return self._backend.id_to_token(int(i))

  def is_single_token(self, text: str) -> bool:
    """Whether `text` encodes to exactly one id."""
    return len(self._backend.encode(text)) == 1

  def add_special_tokens(self, tokens: Sequence[str], special: bool = False) -> int:
    """Make each of `tokens` encode to one id; returns the new `vocab_size` (resize embeddings).

    tokenizer.json / GGUF backends add them as added tokens matched whole in text. With
    `special=False` (default) they survive `decode(skip_special=True)`, which the reward parser
    needs for the foresight tags; `special=True` makes them skippable. Sentencepiece models
    cannot grow: this raises ValueError unless the tokens already are single pieces.
    """
    if isinstance(tokens, str):
      tokens = [tokens]
    return self._backend.add_tokens(list(tokens), special)

  # ---- chat ------------------------------------------------------------------------------------
  def apply_chat_template(self, messages: Sequence[Mapping[str, Any]],
                          add_generation_prompt: bool = True,
                          default_system: str | None = _UNSET, **template_vars: Any) -> str:
    """Render `messages` with the checkpoint's own jinja template when it has one (as
    transformers' `apply_chat_template(..., tokenize=False)` does), else with the built-in family
    template (`foresight_jax.tokenizer.chat`).

    `default_system`: see the class docstring. `template_vars` (jinja only): extra variables for
    the template, e.g. `enable_thinking=False`, `tools=[...]`, `documents=[...]`, `date_string`."""
    if not self.uses_jinja:
      if template_vars:
        raise ValueError(f"the built-in {self.chat_template!r} chat template takes no template variables "
                         f"({sorted(template_vars)}); this tokenizer has no jinja template of its own")
      system = self.default_system if default_system is _UNSET else default_system
      return _chat.render_chat(messages, self.chat_template,
                               add_generation_prompt=add_generation_prompt, default_system=system)
    from foresight_jax.tokenizer import jinja as _jinja
    msgs = _chat.checked_messages(messages)
    if default_system is _UNSET:
      default_system = self.default_system if self._system_given else None
    if default_system is not None and msgs[0]["role"] != "system":
      msgs = [{"role": "system", "content": default_system}] + msgs
    return _jinja.render(self.jinja_template, msgs, add_generation_prompt=add_generation_prompt,
                         special_tokens=self.special_tokens, **template_vars)

  def chat_template_writes_bos(self, text: str | None = None) -> bool:
    """Whether rendered chats already start with the BOS token (so encoders must not add one)."""
    if not self.uses_jinja:
      return _chat.TEMPLATE_HAS_BOS[self.chat_template]
    bos = self.id_to_token(self._bos) if self._bos is not None else None
    if text is None:
      text = self.apply_chat_template([{"role": "user", "content": "x"}])
    return bool(bos) and text.startswith(bos)

  def encode_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                  default_system: str | None = _UNSET, **template_vars: Any) -> list[int]:
    """`encode(apply_chat_template(...))`, with BOS added when the template does not write one
    and the tokenizer adds one by default (our sentencepiece models)."""
    text = self.apply_chat_template(messages, add_generation_prompt, default_system, **template_vars)
    add_bos = self.default_add_bos and not self.chat_template_writes_bos(text)
    return self.encode(text, add_bos=add_bos)
