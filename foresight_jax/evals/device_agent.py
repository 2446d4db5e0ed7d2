"""The eval agent on FC-RL's device tool path: search tasks played by `rl.rollout.rollout`, one
jitted call per batch of rows, with BM25 over the suite's corpus in the POLICY tokenizer's id space
(rl/device_search.py) and the observation appended to the live KV cache, exactly as an FC-RL
step samples. The rollout's token ids are then decoded turn by turn into the host agent's
`Episode`s, so receipts and figures are the same for both paths.

Where it applies (`device_tool_reason` returns None): search tasks (math needs `calc`, a host
tool), `retriever.kind=bm25` (the device tool is BM25), a tokenizer that encodes every action
and information tag as one token, and a context that holds prompt + max_turns x (turn +
observation). Elsewhere the eval command runs the host agent and its figures line says why.

Differences from the host agent, by construction: the device decides a turn's tool from its
last token (`</search>` with a non-blank query: search; `</answer>`: answer; anything else:
the invalid-action message), and passages are cut at `retriever.max_passage_tokens` tokens.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np

from foresight_jax.data.render import invalid_message, parse_turn
from foresight_jax.data.schema import Task
from foresight_jax.evals import agent
from foresight_jax.evals.rewards_host import answer_body
from foresight_jax.rl import device_search as ds
from foresight_jax.rl.layout import KIND_GEN, KIND_OBS
from foresight_jax.rl.rollout import RolloutConfig, cache_slots, rollout
from foresight_jax.rl.tasks import encode_prompts, left_pad, observation_affixes, tool_tokens
from foresight_jax.tokenizer.tokens import ACTION_TAGS

NEEDED_TAGS = tuple(f"<{t}>" for t in ACTION_TAGS) + tuple(f"</{t}>" for t in ACTION_TAGS) + (
    ds.OBS_OPEN, ds.OBS_CLOSE)


def device_tool_reason(tokenizer, tool_path: str, retriever: str, has_corpus: bool) -> str | None:
  """None when the device tool path applies to a suite's search tasks, else why it does not."""
  if tool_path == "host":
    return "tool_path=host"
  if not has_corpus:
    return "no search corpus in this suite (math tasks use the host calc tool)"
  if retriever != "bm25":
    return f"retriever.kind={retriever}: the device tool is BM25 over the policy's token ids"
  multi = [t for t in NEEDED_TAGS if len(tokenizer.encode(t)) != 1]
  if multi:
    return f"the tokenizer does not encode {multi} as single tokens"
  return None


def _split_observation(text: str, pre: str, suf: str) -> str:
  """The docs inside a decoded observation (its wrapper removed when it is intact)."""
  if text.startswith(pre) and text.endswith(suf) and len(text) >= len(pre) + len(suf):
    return text[len(pre):len(text) - len(suf)]
  return text


def _stop_reason(gen: Sequence[int], stop_ids: set[int], eos_ids: set[int], budget: int) -> str:
  if gen and gen[-1] in eos_ids:
    return "eos"
  if gen and gen[-1] in stop_ids:
    return "stop"
  return "length" if len(gen) >= budget else "stop"


def episodes_from_rollout(tasks: Sequence[Task], tokens: np.ndarray, kind: np.ndarray, turn: np.ndarray,
                          n_turns: np.ndarray, answered: np.ndarray, tokenizer, affixes: tuple[str, str],
                          cfg: agent.AgentConfig, prompts: Sequence[str]) -> list[agent.Episode]:
  """Decode each row's turns and observations into an Episode (the host agent's record)."""
  spec = cfg.format_spec()
  stop_ids = {tokenizer.encode(f"</{a}>")[0] for a in ACTION_TAGS}
  eos_ids = set(tokenizer.eos_ids)
  out = []
  for b, task in enumerate(tasks):
    recs = []
    for t in range(int(n_turns[b])):
      gen = tokens[b][(kind[b] == KIND_GEN) & (turn[b] == t)].tolist()
      obs_ids = tokens[b][(kind[b] == KIND_OBS) & (turn[b] == t)].tolist()
      # the turn's text as the host agent gets it from `sampling.generate`: a final eos is dropped
      text = tokenizer.decode(gen[:-1] if gen and gen[-1] in eos_ids else gen)
      parsed = parse_turn(text, spec.variant, spec.horizon, spec.max_tokens, spec.strict_decimals)
      last = bool(answered[b]) and t == int(n_turns[b]) - 1
      if last:  # the device ended the episode on `</answer>`: its body is the answer
        action, obs = ("answer", (answer_body(text) or "").strip()), None
      else:
        action, obs = parsed.action, _split_observation(tokenizer.decode(obs_ids), *affixes)
      invalid = obs is not None and obs == invalid_message(task.domain)
      recs.append(agent.record_turn(t + 1, text, _stop_reason(gen, stop_ids, eos_ids, cfg.max_new_tokens),
                                    parsed.success, action, invalid, obs, spec))
    out.append(agent.finish_episode(task, prompts[b], recs, spec))
  return out


@functools.lru_cache(maxsize=8)
def _jitted_rollout(mcfg, rcfg: RolloutConfig):
  # one jitted function per (model, rollout) config: suites and repeated runs reuse its programs
  return jax.jit(functools.partial(rollout, mcfg, rcfg=rcfg))


def run_device(tasks: Sequence[Task], mcfg, params, tokenizer, cfg: agent.AgentConfig, *,
               docs: Sequence[tuple[str, str]] | None = None, worlds: Sequence | None = None, chat: bool = True,
               temperature: float = 0.0, top_p: float = 1.0, batch_size: int = 32, seed: int = 0, topk: int = 3,
               max_passage_tokens: int = 256) -> list[agent.Episode]:
  """Play search `tasks` with the device tool over `docs` (one corpus) or `worlds` (each task
  searches its own world, task.meta["world_seed"]). Raises ValueError when the context cannot
  hold the rollout (the caller then uses the host agent)."""
  from foresight_jax.data.render import render_prompt
  if any(t.domain != "search" for t in tasks):
    raise ValueError("the device tool path plays search tasks only")
  groups = None
  if worlds is not None:
    by_seed = {w.seed: i for i, w in enumerate(worlds)}
    docs = [d for w in worlds for d in w.docs]
    doc_groups = [i for i, w in enumerate(worlds) for _ in w.docs]
    groups = np.asarray([by_seed[t.meta["world_seed"]] for t in tasks], np.int32)
  else:
    doc_groups = None
  affixes = observation_affixes(tokenizer, chat)
  index = ds.build_index(docs, tokenizer, affixes=affixes, doc_groups=doc_groups, topk=topk,
                         max_passage_tokens=max_passage_tokens)
  tools = tool_tokens(tokenizer, chat)
  encoded = encode_prompts(tasks, tokenizer, cfg.variant, chat)
  width = -(-max(len(e) for e in encoded) // 32) * 32
  prompts, plen = left_pad(encoded, width, int(tokenizer.pad_id))
  rcfg = RolloutConfig(max_turns=cfg.max_turns, max_turn_tokens=cfg.max_new_tokens, temperature=temperature,
                       top_p=top_p)
  obs_w = max(index.max_obs_tokens, int(tools.invalid.shape[0]))
  need = cache_slots(width, rcfg, obs_w)
  if need > mcfg.max_position_embeddings:
    raise ValueError(f"the device rollout needs {need} positions (prompt {width} + {cfg.max_turns} x (turn "
                     f"{cfg.max_new_tokens} + observation {obs_w} + 1)), more than the model's "
                     f"{mcfg.max_position_embeddings}; lower max_turns / max_new_tokens / retriever.max_passage_tokens")
  play = _jitted_rollout(mcfg, rcfg)
  key = jax.random.key(seed)
  out: list[agent.Episode] = []
  for s in range(0, len(tasks), batch_size):
    rows = np.arange(s, min(s + batch_size, len(tasks)))
    padded = np.concatenate([rows, np.full(batch_size - len(rows), rows[-1])])  # one shape for every batch
    ro = play(params, prompts[padded], plen[padded], jax.random.fold_in(key, s // batch_size), index, tools,
              None if groups is None else groups[padded])
    ro = jax.device_get(ro)
    m = len(rows)
    out += episodes_from_rollout([tasks[i] for i in rows], ro.tokens[:m], ro.kind[:m], ro.turn[:m],
                                 ro.n_turns[:m], ro.answered[:m], tokenizer, affixes, cfg,
                                 [render_prompt(tasks[i], cfg.variant) for i in rows])
  return out


__all__ = ["NEEDED_TAGS", "device_tool_reason", "episodes_from_rollout", "run_device"]
