"""Built-in chat templates, written in Python per family: the fallback when a checkpoint has none.

A checkpoint that carries its own jinja template (HF tokenizer_config.json `chat_template`, GGUF
`tokenizer.chat_template`) is rendered with that template (`foresight_jax.tokenizer.jinja`, as
transformers does); these renderers serve tokenizers without one, above all our own sentencepiece
tokenizers ("plain"), and name the family (`Tokenizer.chat_template`) that callers branch on.
`detect_chat_template` maps a jinja template to its family.

Each renderer turns `[{"role": ..., "content": ...}, ...]` into the string below. The families:

- ``chatml`` (Qwen2/2.5/3, SmolLM2)::

      <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n

  A default system turn is written first when ``default_system`` is set and the conversation does
  not open with its own (SmolLM2: :data:`SMOLLM2_SYSTEM`, Qwen2.5: :data:`QWEN25_SYSTEM`, Qwen3:
  none). Any role name is written as given (``tool`` included). Unlike Qwen3's jinja we never drop
  the ``<think>`` blocks of earlier assistant turns: agent trajectories are trained on in full.
- ``llama3`` (Llama-3 Instruct)::

      <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content.strip()}<|eot_id|>...
      <|start_header_id|>assistant<|end_header_id|>\n\n

  Content is stripped, as Meta's template does (jinja ``| trim``). The BOS is part of the string,
  so encode the result with ``add_bos=False``. Llama-3.1's dated system header is not emitted
  unless passed as ``default_system``.
- ``youtu`` (Tencent Youtu-LLM-2B). ASSUMPTION, used only for a Youtu tokenizer without its own
  template: a real Youtu checkpoint's tokenizer_config.json carries its jinja, and that is what
  gets rendered. What is known (the model's tokenizer metadata as summarised in third-party
  audits): BOS ``<|begin_of_text|>`` (128000), EOS ``<|end_of_text|>`` (128001), and role markers
  ``<|User|>`` / ``<|Assistant|>``, i.e. the DeepSeek-V3 layout. We render that layout::

      <|begin_of_text|>{system}<|User|>{user}<|Assistant|>{assistant}<|end_of_text|><|User|>...<|Assistant|>

  Roles other than system/user/assistant are rejected.
- ``plain`` (our own sentencepiece tokenizers; markers are user-defined pieces, see
  :data:`~foresight_jax.tokenizer.tokens.PLAIN_CHAT_TOKENS`)::

      <|system|>\n{system}<|end|>\n<|user|>\n{user}<|end|>\n<|assistant|>\n

  Roles: system, user, assistant, tool. No BOS in the string (``encode_chat`` adds it).
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

CHAT_TEMPLATES = ("chatml", "llama3", "youtu", "plain")

# Whether the rendered string already starts with the BOS token (so encoders must not add one).
TEMPLATE_HAS_BOS = {"chatml": False, "llama3": True, "youtu": True, "plain": False}

Message = Mapping[str, str]


def _checked(messages: Sequence[Message]) -> list[tuple[str, str]]:
  if isinstance(messages, (str, bytes)) or not messages:
    raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
  out = []
  for i, m in enumerate(messages):
    try:
      role, content = m["role"], m["content"]
    except (KeyError, TypeError) as e:
      raise ValueError(f"message {i} must be a dict with 'role' and 'content': {m!r}") from e
    if not isinstance(role, str) or not isinstance(content, str):
      raise ValueError(f"message {i}: role and content must be strings, got {m!r}")
    out.append((role, content))
  return out


def checked_messages(messages: Sequence[Mapping]) -> list[dict]:
  """Copies of `messages` for a jinja template: a non-empty list of dicts, each with a string
  'role' (content may be a string, a list of content blocks, or absent next to tool_calls)."""
  if isinstance(messages, (str, bytes, Mapping)) or not messages:
    raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
  out = []
  for i, m in enumerate(messages):
    if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
      raise ValueError(f"message {i} must be a dict with a string 'role': {m!r}")
    out.append(dict(m))
  return out


def _chatml(msgs, add_generation_prompt, default_system):
  parts = []
  if default_system is not None and msgs[0][0] != "system":
    parts.append(f"<|im_start|>system\n{default_system}<|im_end|>\n")
  parts += [f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in msgs]
  if add_generation_prompt:
    parts.append("<|im_start|>assistant\n")
  return "".join(parts)


def _llama3(msgs, add_generation_prompt, default_system):
  if default_system is not None and msgs[0][0] != "system":
    msgs = [("system", default_system)] + msgs
  parts = ["<|begin_of_text|>"]
  parts += [f"<|start_header_id|>{role}<|end_header_id|>\n\n{content.strip()}<|eot_id|>"
            for role, content in msgs]
  if add_generation_prompt:
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
  return "".join(parts)


def _youtu(msgs, add_generation_prompt, default_system):
  parts = ["<|begin_of_text|>"]
  if default_system is not None and msgs[0][0] != "system":
    parts.append(default_system)
  for i, (role, content) in enumerate(msgs):
    if role == "system":
      if i != 0:
        raise ValueError("youtu template: a system message may only come first")
      parts.append(content)
    elif role == "user":
      parts.append(f"<|User|>{content}")
    elif role == "assistant":
      parts.append(f"<|Assistant|>{content}<|end_of_text|>")
    else:
      raise ValueError(f"youtu template: unsupported role {role!r} (system/user/assistant)")
  if add_generation_prompt:
    parts.append("<|Assistant|>")
  return "".join(parts)


_PLAIN_ROLES = ("system", "user", "assistant", "tool")


def _plain(msgs, add_generation_prompt, default_system):
  if default_system is not None and msgs[0][0] != "system":
    msgs = [("system", default_system)] + msgs
  parts = []
  for role, content in msgs:
    if role not in _PLAIN_ROLES:
      raise ValueError(f"plain template: unsupported role {role!r} (one of {_PLAIN_ROLES})")
    parts.append(f"<|{role}|>\n{content}<|end|>\n")
  if add_generation_prompt:
    parts.append("<|assistant|>\n")
  return "".join(parts)


_RENDERERS = {"chatml": _chatml, "llama3": _llama3, "youtu": _youtu, "plain": _plain}


def render_chat(messages: Sequence[Message], template: str = "chatml", *,
                add_generation_prompt: bool = True, default_system: str | None = None) -> str:
  """Render `messages` with the named family template (see the module docstring)."""
  if template not in _RENDERERS:
    raise ValueError(f"unknown chat template {template!r}; expected one of {CHAT_TEMPLATES}")
  return _RENDERERS[template](_checked(messages), add_generation_prompt, default_system)


# A constant default system turn inside a chatml jinja template, e.g. SmolLM2's
# `{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>\n' }}`; the
# newline may be a real one (GGUF metadata) or a `\n` escape inside the jinja string literal.
_CHATML_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\\n|\n)([^'\"{}<\\]+?)<\|im_end\|>")


def detect_chat_template(jinja: str | None) -> tuple[str, str | None] | None:
  """`(family, default_system)` for a HF/GGUF jinja chat template, or None if unrecognised."""
  if not jinja:
    return None
  if "<|im_start|>" in jinja:
    m = _CHATML_DEFAULT_SYSTEM.search(jinja)
    return "chatml", (m.group(1) if m else None)
  if "<|start_header_id|>" in jinja and "<|eot_id|>" in jinja:
    return "llama3", None
  if "<|User|>" in jinja and "<|Assistant|>" in jinja:
    return "youtu", None
  if "<|user|>" in jinja and "<|end|>" in jinja and "<|assistant|>" in jinja:
    return "plain", None
  return None


def template_from_vocab(has_token) -> str:
  """Family guessed from which marker tokens a vocabulary holds (`has_token(str) -> bool`)."""
  if has_token("<|im_start|>"):
    return "chatml"
  if has_token("<|start_header_id|>"):
    return "llama3"
  if has_token("<|User|>") and has_token("<|Assistant|>"):
    return "youtu"
  return "plain"
