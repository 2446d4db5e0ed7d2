"""A checkpoint's own jinja chat template, rendered the way transformers renders it.

HF checkpoints carry their template in tokenizer_config.json (`chat_template`, or a
`chat_template.jinja` file beside it), GGUF files in `tokenizer.chat_template`. We render that
template with the same jinja set-up as transformers' `apply_chat_template`
(`transformers/utils/chat_template_utils.py`, 5.x):

- `jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with the
  `loopcontrols` extension (`{% break %}`, `{% continue %}`) and a `{% generation %}` block tag
  that renders its body unchanged (transformers uses it to track assistant spans);
- the `tojson` filter replaced by plain `json.dumps` (no HTML escaping, `ensure_ascii=False`,
  `indent` / `separators` / `sort_keys` options);
- globals `raise_exception(msg)` (raises `jinja2.exceptions.TemplateError`), `strftime_now(fmt)`,
  a restricted `dict` and a `namespace` that refuses underscore-prefixed names;
- variables `messages`, `tools`, `documents`, `add_generation_prompt`, the tokenizer's named special
  tokens (`bos_token`, `eos_token`, `unk_token`, `pad_token`, ...) and any extra template variables
  the caller passes (`enable_thinking=False`, `date_string=...`); caller variables win over the
  special tokens, as in transformers;
- messages copied as plain JSON data, keys whose value is None dropped, and a message's reasoning
  (`reasoning_content` / `thinking` / `reasoning`) made visible under the first two names.

Requires jinja2 >= 3.1.6 (earlier versions have known sandbox escapes; transformers refuses them
too). Compiled templates are cached by their text.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from datetime import datetime
from typing import Any, Mapping, Sequence

_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
_MIN_JINJA = (3, 1, 6)


def _version(v: str) -> tuple[int, ...]:
  out = []
  for part in v.split(".")[:3]:
    digits = "".join(ch for ch in part if ch.isdigit())
    out.append(int(digits or 0))
  return tuple(out)


@functools.lru_cache(maxsize=1)
def _environment():
  try:
    import jinja2
    import jinja2.exceptions
    import jinja2.ext
    import jinja2.nodes
    import jinja2.sandbox
    import jinja2.utils
  except ImportError as e:  # a core dependency (setup.py); only a broken install gets here
    raise ImportError("rendering a checkpoint's chat template needs jinja2>=3.1.6 (pip install jinja2)") from e
  if _version(jinja2.__version__) < _MIN_JINJA:
    raise ImportError(f"rendering a checkpoint's chat template needs jinja2>=3.1.6 (older versions have "
                      f"known sandbox escapes); found {jinja2.__version__}")

  class Generation(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: renders the body as is."""
    tags = {"generation"}

    def parse(self, parser):
      lineno = next(parser.stream).lineno
      body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
      return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
      return caller()

  def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

  def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

  def strftime_now(fmt):
    return datetime.now().strftime(fmt)

  class TemplateDict:
    """`dict(...)` and `dict.fromkeys(...)` only: no attribute access to the dict type."""

    def __call__(self, *args, **kwargs):
      return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
      return dict.fromkeys(*args, **kwargs)

  def check_name(name):
    if isinstance(name, str) and name.startswith("_"):
      raise jinja2.exceptions.SecurityError(
          f"chat templates cannot store underscore-prefixed attributes on a namespace, got {name!r}")

  class TemplateNamespace(jinja2.utils.Namespace):
    def __init__(*args, **kwargs):  # jinja's Namespace signature trick: namespace(self=...) works
      self, args = args[0], args[1:]
      attrs = dict(*args, **kwargs)
      for name in attrs:
        check_name(name)
      jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
      check_name(name)
      jinja2.utils.Namespace.__setitem__(self, name, value)

  env = jinja2.sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
  env.filters["tojson"] = tojson
  env.globals["raise_exception"] = raise_exception
  env.globals["strftime_now"] = strftime_now
  env.globals["dict"] = TemplateDict()
  env.globals["namespace"] = TemplateNamespace
  return env


@functools.lru_cache(maxsize=32)
def compile_template(template: str):
  """The compiled jinja template (cached by its text). Raises jinja2.TemplateSyntaxError."""
  return _environment().from_string(template)


def _plain(value: Any) -> Any:
  """A copy built from JSON types only (what the sandboxed template may see)."""
  if value is None or type(value) in (str, int, float, bool):
    return value
  if isinstance(value, str):
    return str.__str__(value)
  if isinstance(value, int):
    return int.__int__(value)
  if isinstance(value, float):
    return float.__float__(value)
  if isinstance(value, Mapping):
    return {_plain(k): _plain(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_plain(v) for v in value]
  if isinstance(value, tuple):
    return tuple(_plain(v) for v in value)
  if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
    return _plain(value.item())  # numpy scalars
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
  return f"<{type(value).__name__}>"


def _message(m: Mapping[str, Any]) -> dict[str, Any]:
  msg = {k: _plain(v) for k, v in m.items() if v is not None}
  reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
  if reasoning is not None:
    msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
  return msg


def render(template: str, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool,
           special_tokens: Mapping[str, str] | None = None, tools: Sequence[Mapping] | None = None,
           documents: Sequence[Mapping] | None = None, **variables: Any) -> str:
  """`template` rendered for `messages` (see the module docstring for what the template sees)."""
  if tools is not None and not all(isinstance(t, Mapping) for t in tools):
    raise ValueError("tools must be JSON-schema dicts")
  if documents is not None and not all(isinstance(d, Mapping) for d in documents):
    raise TypeError("documents must be dicts with 'title' and 'text' keys")
  context = _plain({**(special_tokens or {}), **variables})
  return compile_template(template).render(
      messages=[_message(m) for m in messages], tools=_plain(None if tools is None else list(tools)),
      documents=_plain(None if documents is None else list(documents)),
      add_generation_prompt=add_generation_prompt, **context)
