"""The host-tool path: the same rollout as rollout.py, for tools that cannot run on the device (the
Search-R1 HTTP server, the calculator, user tools).

Jitted segments (prefill, decode, extend: the same functions the fused step traces) alternate
with Python tool calls, and the result is the same `Rollout` pytree, so rewards, advantages and
the loss are the very same jitted code as on the device path. Keys are split exactly as
`rollout.rollout` splits them, so with a tool that returns what the device tool returns, both
paths give identical rollouts (tested).

A tool is `tool(task_index, name, argument) -> observation ids` (the docs only; the wrapper
`<information>` ... is added here) or raises. A tool that raises, or takes longer than
`timeout_s`, fails its row: the row's episode ends there, `failed[b]` is set (the update gives
that sample reward 0), and the failure is logged with the task id; the run goes on. A turn's
calls run side by side (one thread per row, up to `MAX_WORKERS`) against one deadline, so a hung
tool costs a turn `timeout_s` (times the waves of `MAX_WORKERS` calls), not `timeout_s` per row.
"""
from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from foresight_jax import sampling
from foresight_jax.models.config import ModelConfig
from foresight_jax.rl.layout import KIND_GEN, KIND_OBS, KIND_PAD, KIND_PROMPT
from foresight_jax.rl.rollout import Rollout, RolloutConfig, ToolTokens, buffer_length, cache_slots
from foresight_jax.tokenizer.tokens import TOOL_TAGS

log = logging.getLogger(__name__)

HostTool = Callable[[int, str, Sequence[int]], Sequence[int]]  # (task, tool, query ids) -> obs ids
MAX_WORKERS = 64  # threads for one turn's tool calls: each waits on I/O (an HTTP server, a subprocess)


def tool_tag_ids(tokenizer, names: Sequence[str] = TOOL_TAGS) -> dict[str, tuple[int, int]]:
  """{tool: (id of <tool>, id of </tool>)} for the tags that are single tokens of `tokenizer`."""
  out = {}
  for name in names:
    o, c = tokenizer.encode(f"<{name}>"), tokenizer.encode(f"</{name}>")
    if len(o) == 1 and len(c) == 1:
      out[name] = (o[0], c[0])
  return out


def text_tool(fn: Callable[[int, str, str], str], tokenizer) -> HostTool:
  """A HostTool from a text tool `fn(task, name, argument text) -> observation text`."""
  return lambda task, name, arg: tokenizer.encode(fn(task, name, tokenizer.decode(arg).strip()))


def _turn_action(gen: list[int], answer_close: int, tags: dict[str, tuple[int, int]], blank: np.ndarray
                 ) -> tuple[str, list[int] | None]:
  """("answer" | a tool name | "invalid", argument ids) of one turn: rollout.py's rule, for any
  tool whose closing tag ends the turn."""
  if gen and gen[-1] == answer_close:
    return "answer", None
  for name, (open_id, close_id) in tags.items():
    if gen and gen[-1] == close_id:
      opens = [i for i, t in enumerate(gen) if t == open_id]
      arg = gen[opens[-1] + 1:-1] if opens else []
      if any(not blank[t] for t in arg):
        return name, arg
  return "invalid", None


def rollout_host(cfg: ModelConfig, params, prompts: np.ndarray, prompt_len: np.ndarray, key: jax.Array,
                 tool: HostTool, tools: ToolTokens, tags: dict[str, tuple[int, int]], task_ids: Sequence[int],
                 affixes_ids: tuple[Sequence[int], Sequence[int]], rcfg: RolloutConfig = RolloutConfig(),
                 obs_width: int = 512, timeout_s: float = 30.0,
                 task_names: Sequence[str] | None = None) -> tuple[Rollout, np.ndarray]:
  """(Rollout, failed [B] bool). `tags`: the tools the host serves (`tool_tag_ids`); a turn that
  closes any other tag gets the invalid-action message. `affixes_ids`: ids wrapped around each
  observation (tasks.observation_affixes, encoded); `obs_width`: the most observation ids per
  turn (a longer one is cut, keeping its closing affix)."""
  b, p = prompts.shape
  n = rcfg.max_turn_tokens
  blank = np.asarray(tools.blank)
  pre, suf = list(affixes_ids[0]), list(affixes_ids[1])
  invalid = [int(t) for t in np.asarray(tools.invalid)]
  obs_w = max(obs_width, len(invalid))
  pad = tools.pad_id
  spec = sampling.StopSpec.make(b, eos_ids=tools.stop_ids, max_new_tokens_per_row=n)
  samp = sampling.SamplingParams.make(b, rcfg.temperature, rcfg.top_p, rcfg.top_k)
  key, k0 = jax.random.split(key)
  state = sampling.prefill_jit(cfg, params, jnp.asarray(prompts), jnp.asarray(prompt_len), k0, samp, spec,
                               max_new_tokens=n, pad_id=pad, cache_len=cache_slots(p, rcfg, obs_w))
  rows = [[int(t) for t in prompts[r, p - prompt_len[r]:]] for r in range(b)]
  kinds = [[KIND_PROMPT] * len(x) for x in rows]
  turns = [[-1] * len(x) for x in rows]
  lps = [[0.0] * len(x) for x in rows]
  alive = np.ones(b, bool)
  answered, failed = np.zeros(b, bool), np.zeros(b, bool)
  n_turns, searches, n_invalid = (np.zeros(b, np.int32) for _ in range(3))
  workers = max(1, min(b, MAX_WORKERS))
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
  try:
    for t in range(rcfg.max_turns):
      state = sampling.decode_jit(cfg, params, state, samp, spec)
      toks, lens, lp = jax.device_get((state.tokens, state.lengths, state.logprobs))
      obs = np.full((b, obs_w), pad, np.int32)
      obs_len = np.zeros(b, np.int32)
      calls = {}
      for r in range(b):
        glen = int(lens[r]) if alive[r] else 0
        gen = [int(x) for x in toks[r, :glen]]
        rows[r] += gen
        kinds[r] += [KIND_GEN] * glen
        turns[r] += [t] * glen
        lps[r] += [float(x) for x in lp[r, :glen]]
        if glen == 0:
          alive[r] = False
          continue
        n_turns[r] += 1
        action, arg = _turn_action(gen, tools.answer_close, tags, blank)
        if action == "answer":
          answered[r], alive[r] = True, False
        elif action == "invalid":
          obs[r, :len(invalid)] = invalid
          obs_len[r] = len(invalid)
          n_invalid[r] += 1
        else:
          calls[r] = pool.submit(tool, int(task_ids[r]), action, arg)
      # one deadline for the turn: waiting row by row would give every row a fresh timeout_s
      deadline = time.monotonic() + timeout_s * -(-len(calls) // workers)
      for r, fut in calls.items():
        name = task_names[task_ids[r]] if task_names is not None else str(task_ids[r])
        try:
          got = fut.result(timeout=max(0.0, deadline - time.monotonic()))
          ids = list(pre) + [int(x) for x in got] + list(suf)
        except Exception as e:  # noqa: BLE001 - any tool failure fails the sample, not the run
          why = repr(e) if fut.done() else f"no answer within {timeout_s:g} s"  # raised, or still running
          log.warning("tool call failed for task %s (row %d, turn %d): %s", name, r, t + 1, why)
          failed[r], alive[r] = True, False
          continue
        if len(ids) > obs_w:
          log.warning("task %s: observation of %d ids cut to %d", name, len(ids), obs_w)
          ids = ids[:obs_w - len(suf)] + list(suf)
        obs[r, :len(ids)] = ids
        obs_len[r] = len(ids)
        searches[r] += 1
      for r in range(b):
        k = int(obs_len[r])
        rows[r] += [int(x) for x in obs[r, :k]]
        kinds[r] += [KIND_OBS] * k
        turns[r] += [t] * k
        lps[r] += [0.0] * k
      key, k_turn = jax.random.split(key)
      if t + 1 < rcfg.max_turns:
        state = sampling.extend_jit(cfg, params, state, jnp.asarray(obs), jnp.asarray(obs_len), k_turn, samp,
                                    spec, active=jnp.asarray(alive))
  finally:
    pool.shutdown(wait=False, cancel_futures=True)
  s = buffer_length(p, rcfg, obs_w)

  def mat(lists, fill, dtype):
    out = np.full((b, s), fill, dtype)
    for r, x in enumerate(lists):
      out[r, :len(x)] = x[:s]
    return out

  out = Rollout(tokens=mat(rows, pad, np.int32), kind=mat(kinds, KIND_PAD, np.int32),
                turn=mat(turns, -1, np.int32), logprobs=mat(lps, 0.0, np.float32),
                length=np.asarray([len(x) for x in rows], np.int32), n_turns=n_turns, answered=answered,
                searches=searches, invalid=n_invalid)
  return out, failed


__all__ = ["HostTool", "rollout_host", "text_tool", "tool_tag_ids"]
