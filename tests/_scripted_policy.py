"""A transformer whose weights make it a scripted agent, for testing RL rollouts without training.

Attention outputs and MLP down-projections are zero, so each position's hidden state is its own
token's embedding and the model is a bigram model: logits(next | current) = rms_norm(embed[cur])
@ lm_head. The scripted tokens get orthonormal embeddings (no cross-talk between their rows), and
lm_head holds one log-probability row per scripted token, so the agent follows a small
stochastic grammar exactly:

    "\\n"        -> <think>
    <think>     -> "plan"  -> </think>
    </think>    -> <foresight> (p_block) | <search> | <answer>
    <foresight> -> <rollout> -> "1." -> </rollout> -> <success> -> "0.5" -> </success> -> </foresight>
    </foresight> -> <search> | <answer>
    <search>    -> QUERY word -> </search>        (a word that retrieves documents)
    <answer>    -> ANSWER word -> </answer>

Every turn starts after a "\\n" (the chat template's assistant header and the observation's
chat suffix both end with one), so each turn is one draw from this grammar.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from foresight_jax.models import params as params_lib
from foresight_jax.models import presets
from foresight_jax.tokenizer import FORESIGHT_TOKENS, train_sentencepiece

HIDDEN = 128


def _tok_id(tok, text):
  ids = tok.encode(text)
  assert len(ids) == 1, (text, ids)
  return ids[0]


@functools.lru_cache(maxsize=None)
def scripted_agent(query_word: str, answer_word: str, texts: tuple[str, ...], p_search: float = 0.6,
                   p_block: float = 0.5, seed: int = 0):
  """(cfg, params, tokenizer) of the scripted agent; `texts` train its tokenizer, in which the
  grammar's words (and the query and answer words) are user-defined single pieces."""
  words = ("plan", "1.", "0.5", query_word, answer_word)
  tok = train_sentencepiece(list(texts), None, 600, extra_symbols=FORESIGHT_TOKENS + words)
  ids = lambda t: _tok_id(tok, t)  # noqa: E731
  nl, plan, one, half = ids("\n"), ids("plan"), ids("1."), ids("0.5")
  q, a = ids(query_word), ids(answer_word)
  tag = {t: ids(t) for t in ("<think>", "</think>", "<foresight>", "</foresight>", "<rollout>", "</rollout>",
                             "<success>", "</success>", "<search>", "</search>", "<answer>", "</answer>")}
  act = {tag["<search>"]: p_search, tag["<answer>"]: 1 - p_search}
  grammar = {
      nl: {tag["<think>"]: 1.0},
      tag["<think>"]: {plan: 1.0},
      plan: {tag["</think>"]: 1.0},
      tag["</think>"]: {tag["<foresight>"]: p_block, **{k: v * (1 - p_block) for k, v in act.items()}},
      tag["<foresight>"]: {tag["<rollout>"]: 1.0},
      tag["<rollout>"]: {one: 1.0},
      one: {tag["</rollout>"]: 1.0},
      tag["</rollout>"]: {tag["<success>"]: 1.0},
      tag["<success>"]: {half: 1.0},
      half: {tag["</success>"]: 1.0},
      tag["</success>"]: {tag["</foresight>"]: 1.0},
      tag["</foresight>"]: act,
      tag["<search>"]: {q: 1.0},
      q: {tag["</search>"]: 1.0},
      tag["<answer>"]: {a: 1.0},
      a: {tag["</answer>"]: 1.0},
  }
  cfg = presets.model_config("tiny").replace(vocab_size=tok.vocab_size, hidden_size=HIDDEN, num_heads=4,
                                             num_kv_heads=2, head_dim=32, num_layers=1,
                                             bos_token_id=tok.bos_id, eos_token_ids=tuple(tok.eos_ids))
  params = params_lib.init_params(cfg, jax.random.key(seed))
  rng = np.random.default_rng(seed)
  embed = rng.normal(size=(cfg.vocab_size, HIDDEN)) / np.sqrt(HIDDEN)
  scripted = sorted(grammar)
  basis, _ = np.linalg.qr(rng.normal(size=(HIDDEN, len(scripted))))
  # unit rows scaled by sqrt(HIDDEN): rms_norm leaves them unchanged, so row c @ basis picks c
  embed[scripted] = basis.T * np.sqrt(HIDDEN)
  head = np.zeros((HIDDEN, cfg.vocab_size))
  for j, cur in enumerate(scripted):
    logits = np.full(cfg.vocab_size, -30.0)
    for nxt, p in grammar[cur].items():
      logits[nxt] = np.log(p)
    head += np.outer(basis[:, j], logits) / np.sqrt(HIDDEN)
  layers = jax.tree.map(lambda x: x, params["layers"])
  layers["attn"]["o"] = jnp.zeros_like(layers["attn"]["o"])
  layers["mlp"]["down"] = jnp.zeros_like(layers["mlp"]["down"])
  params = {**params, "embed": jnp.asarray(embed, jnp.float32), "lm_head": jnp.asarray(head, jnp.float32),
            "layers": layers}
  return cfg, params, tok
