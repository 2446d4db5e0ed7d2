"""Tokenizers behind one interface, with the foresight tags as single tokens and chat templates.

    from foresight_jax.tokenizer import Tokenizer, train_sentencepiece, FORESIGHT_TOKENS
    tok = Tokenizer.load("path/to/model.gguf")        # or tokenizer.json / dir / .model
    ids = tok.encode_chat([{"role": "user", "content": "hi"}])

Chats render with the checkpoint's own jinja template when it has one (as transformers does),
else with a built-in family template (our sentencepiece tokenizers: "plain").

Modules: `core` (Tokenizer), `loaders` (path dispatch), `gguf_vocab` (GGUF -> tokenizers BPE),
`train` (sentencepiece training), `jinja` (checkpoint templates), `chat` (built-in per-family
templates, the fallback), `tokens` (constants).
"""
from foresight_jax.tokenizer.chat import (CHAT_TEMPLATES, QWEN25_SYSTEM, SMOLLM2_SYSTEM,
                                          detect_chat_template, render_chat)
from foresight_jax.tokenizer.core import Tokenizer
from foresight_jax.tokenizer.tokens import FORESIGHT_TOKENS, PLAIN_CHAT_TOKENS
from foresight_jax.tokenizer.train import train_sentencepiece

__all__ = [
    "CHAT_TEMPLATES", "FORESIGHT_TOKENS", "PLAIN_CHAT_TOKENS", "QWEN25_SYSTEM", "SMOLLM2_SYSTEM",
    "Tokenizer", "detect_chat_template", "render_chat", "train_sentencepiece",
]
