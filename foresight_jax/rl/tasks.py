"""Host side of FC-RL: tasks -> the device arrays one fused step consumes.

    env = TaskEnv.build(tasks, tokenizer, worlds=worlds, chat=True, variant="full")
    batch = env.batch(indices, group_size)      # prompts, lengths, golds, groups (numpy)

Everything here runs once per run (the index, the tool ids, encoded prompts and golds), so the
step itself never touches a tokenizer. Prompts are rendered as the evaluation agent renders
them (`render_prompt`, in the tokenizer's chat template for chat-trained policies, as
`demo.chat_generate_fn` does), and observations are wrapped the way the policy was trained to
read them: raw format `\\n\\n<information>...</information>\\n\\n` (WM-AMT), or the chat template's
end-of-turn + tool turn around `<information>...</information>` (FE-SFT, chat_messages).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from foresight_jax.data.render import render_observation, render_prompt
from foresight_jax.data.schema import Task
from foresight_jax.evals.agent import invalid_message
from foresight_jax.rl import device_search as ds
from foresight_jax.rl.rollout import ToolTokens
from foresight_jax.rl.vocab_tables import Golds, encode_golds
from foresight_jax.tokenizer.tokens import ACTION_TAGS
from foresight_jax.train.stages_config import ConfigError

_MARK = "\x00"  # a character no template writes: where a message's content goes


def observation_affixes(tokenizer, chat: bool) -> tuple[str, str]:
  """(text before, text after) an observation's docs, as the policy reads it."""
  if not chat:
    pre, suf = render_observation(_MARK).split(_MARK)
    return pre, suf
  role = "user" if tokenizer.chat_template == "youtu" else "tool"  # as stages_data.chat_messages
  msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a" + _MARK},
          {"role": role, "content": f"<information>{_MARK}</information>"}]
  # "...a<MARK>" + end of the assistant turn + tool header + "<information>" <MARK> "</information>"
  # + end of the tool turn + the next assistant header
  _, pre, suf = tokenizer.apply_chat_template(msgs, add_generation_prompt=True).split(_MARK)
  return pre, suf


def encode_prompts(tasks: Sequence[Task], tokenizer, variant: str, chat: bool) -> list[list[int]]:
  """Each task's prompt ids, exactly what the evaluation agent feeds the same policy."""
  out = []
  for t in tasks:
    text = render_prompt(t, variant)
    if chat:
      out.append(tokenizer.encode_chat([{"role": "user", "content": text.rstrip("\n")}], add_generation_prompt=True))
    else:
      out.append(tokenizer.encode(text, add_bos=tokenizer.bos_id is not None))
  return out


def left_pad(rows: Sequence[Sequence[int]], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  if max(len(r) for r in rows) > width:
    raise ConfigError(f"a prompt has {max(len(r) for r in rows)} tokens, more than the prompt width {width} "
                     f"(rl.max_prompt_tokens)")
  arr = np.full((len(rows), width), pad_id, np.int32)
  for i, r in enumerate(rows):
    arr[i, width - len(r):] = r
  return arr, np.asarray([len(r) for r in rows], np.int32)


def _single(tokenizer, text: str) -> int:
  ids = tokenizer.encode(text)
  if len(ids) != 1:
    raise ValueError(f"{text!r} must be a single token of the policy tokenizer (it is {ids}); add the "
                     "foresight tags (Tokenizer.add_special_tokens(FORESIGHT_TOKENS))")
  return ids[0]


def tool_tokens(tokenizer, chat: bool, domain: str = "search") -> ToolTokens:
  pre, suf = observation_affixes(tokenizer, chat)
  # the invalid message ends `<information>` the same way the host agent wraps it
  invalid = tokenizer.encode(pre) + tokenizer.encode(invalid_message(domain)) + tokenizer.encode(suf)
  stop = [_single(tokenizer, f"</{a}>") for a in ACTION_TAGS] + list(tokenizer.eos_ids)
  blank = np.array([not tokenizer.decode([i]).strip() for i in range(tokenizer.vocab_size)], bool)
  return ToolTokens(stop_ids=jnp.asarray(sorted(set(stop)), jnp.int32), blank=jnp.asarray(blank),
                    invalid=jnp.asarray(invalid, jnp.int32), search_open=_single(tokenizer, "<search>"),
                    search_close=_single(tokenizer, "</search>"),
                    answer_close=_single(tokenizer, "</answer>"), pad_id=int(tokenizer.pad_id))


@dataclasses.dataclass
class TaskEnv:
  """The tasks of a run with everything the device needs about them."""
  tasks: list[Task]
  prompts: np.ndarray        # [T, P] left-padded
  prompt_len: np.ndarray     # [T]
  groups: np.ndarray         # [T] the task's corpus in `index` (its world)
  golds: Golds               # [T, N, Lg] normalised gold answers (rl/vocab_tables.encode_golds)
  is_math: np.ndarray        # [T] bool: boxed-integer outcome instead of exact match
  index: ds.DeviceIndex
  tools: ToolTokens
  chat: bool
  variant: str

  @classmethod
  def build(cls, tasks: Sequence[Task], tokenizer, *, worlds: Sequence[Any], chat: bool, variant: str,
            max_prompt_tokens: int, max_passage_tokens: int = 256) -> "TaskEnv":
    """Search tasks of the synthetic `worlds` (task.meta["world_seed"] picks the world): one
    index over every world's docs, each doc grouped by its world. `max_prompt_tokens` <= 0: the
    longest prompt, rounded up to a multiple of 32. A search returns the worlds' config.search_k
    documents (the same in every world)."""
    tasks = list(tasks)
    bad = [t.id for t in tasks if t.domain != "search"]
    if bad:
      raise ValueError(f"the device tool path serves search tasks; {len(bad)} are not (e.g. {bad[:3]}): "
                       "use the host tool path for math (calc) tasks")
    by_seed = {w.seed: i for i, w in enumerate(worlds)}
    missing = sorted({(t.meta or {}).get("world_seed") for t in tasks} - set(by_seed))
    if missing:
      raise ValueError(f"tasks refer to worlds {missing[:5]} that were not given (have {sorted(by_seed)[:5]}...)")
    topks = {w.config.search_k for w in worlds}
    if len(topks) != 1:
      raise ValueError(f"the worlds disagree on how many documents a search returns: {sorted(topks)}")
    docs = [d for w in worlds for d in w.docs]
    doc_groups = [i for i, w in enumerate(worlds) for _ in w.docs]
    index = ds.build_index(docs, tokenizer, max_passage_tokens=max_passage_tokens, topk=topks.pop(),
                           affixes=observation_affixes(tokenizer, chat), doc_groups=doc_groups)
    encoded = encode_prompts(tasks, tokenizer, variant, chat)
    if max_prompt_tokens <= 0:  # fit the longest prompt (rounded up: similar runs share a program)
      max_prompt_tokens = -(-max(len(e) for e in encoded) // 32) * 32
    prompts, lens = left_pad(encoded, max_prompt_tokens, int(tokenizer.pad_id))
    groups = np.asarray([by_seed[t.meta["world_seed"]] for t in tasks], np.int32)
    is_math = np.asarray([t.domain == "math" for t in tasks], bool)
    golds = encode_golds([t.answers for t in tasks], is_math)
    return cls(tasks, prompts, lens, groups, golds, is_math, index, tool_tokens(tokenizer, chat), chat, variant)

  def batch(self, indices: Sequence[int], group_size: int) -> dict[str, np.ndarray]:
    """Rows for prompts `indices`, each repeated `group_size` times in a row (GRPO groups)."""
    idx = np.repeat(np.asarray(indices, np.int64), group_size)
    return {"prompts": self.prompts[idx], "prompt_len": self.prompt_len[idx], "groups": self.groups[idx],
            "gold_chars": self.golds.chars[idx], "gold_len": self.golds.length[idx], "is_math": self.is_math[idx],
            "task": idx.astype(np.int32)}


__all__ = ["TaskEnv", "encode_prompts", "left_pad", "observation_affixes", "tool_tokens"]
