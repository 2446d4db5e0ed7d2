"""Multi-turn agent loop for evaluation (host-level orchestration; the in-graph RL rollout
comes later).

Per batch of tasks (Search-R1's protocol, references.md):

1. the prompt is the training data's prompt segment (`render_prompt(task, variant)`);
2. each turn samples until `</search>`, `</calc>` or `</answer>` (the stop string is kept);
3. the turn is parsed with render.py; a valid tool call is executed (world search, top-k
   formatted docs / the `calc` tool) and its result appended as
   `\\n\\n<information>...</information>\\n\\n`; a turn without a usable action gets the fixed
   invalid-action message in the same wrapper (so `split_response`/`check_format` still split the
   transcript into turns); an `<answer>` ends the episode;
4. at most `max_turns` turns; rows that finished drop out of the next generation call.

The sampler is injected as a `GenerateFn` so tests can script the model:

    generate_fn(contexts, *, stop, max_new_tokens, seed) -> list[Generation]

`contexts[i]` is the row's list of segment texts (prompt, turn, observation, turn, ...). Handing
over segments rather than one string lets the model-backed function encode each segment on its
own, which is exactly how the training pipeline tokenized the same text (pipeline_tokenize.py):
a BPE merge never straddles a prompt/turn/observation boundary at eval time either.

Every non-answer turn is followed by an observation, including the last allowed turn (its tool is
still run, though nothing is generated after it): that keeps "each rollout's step-1 expectation
vs the observation that followed" defined for every such turn.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from foresight_jax.data.math_tasks import calc
from foresight_jax.data.render import invalid_message, parse_turn, render_observation, render_prompt
from foresight_jax.data.schema import Task
from foresight_jax.data.scoring import score_answer
from foresight_jax.data.world import SearchFn, World
from foresight_jax.evals import metrics as M
from foresight_jax.evals import receipts as rc
from foresight_jax.tokenizer.tokens import ACTION_TAGS

STOP_STRINGS = tuple(f"</{a}>" for a in ACTION_TAGS)  # generation ends at an action's closing tag
DOMAIN_TOOLS = {"search": ("search",), "math": ("calc",)}


@dataclass(frozen=True)
class AgentConfig:
  variant: str = "full"          # prompt instructions and the format checked
  max_turns: int = 4
  max_new_tokens: int = 500      # per turn (Search-R1's max response length)
  horizon: int = 3               # rollout_horizon, for check_format
  rollout_max_tokens: int = 64
  strict_decimals: bool = False
  seed: int = 0                  # sampling seed; turn t uses seed * 1_000_003 + t

  def format_spec(self) -> M.FormatSpec:
    return M.FormatSpec(self.variant, self.horizon, self.rollout_max_tokens, self.strict_decimals)


@dataclass(frozen=True)
class Generation:
  text: str
  stop_reason: str = "stop"      # "stop" | "eos" | "length" (sampling.generate's names)


class GenerateFn(Protocol):
  def __call__(self, contexts: Sequence[Sequence[str]], *, stop: Sequence[str],
               max_new_tokens: int, seed: int) -> list[Generation]: ...


ToolFn = Callable[[Task, str, str], str]  # (task, tool, argument) -> observation text


@dataclass(frozen=True)
class TurnRecord:
  step: int                           # 1-based
  text: str                           # the generated turn, cut after its stop string
  stop_reason: str
  success: float | None               # the block's estimate, when it parses
  action: tuple[str, str] | None      # (tool, argument) as parsed; None: no action at all
  invalid: bool                       # no usable action: the invalid message was the observation
  observation: str | None             # full text; None after an answer
  grounding: float | None             # None after an answer
  grounding_f1: float | None          # the secondary figure (metrics.grounding_f1)
  format_ok: bool
  format_problems: tuple[str, ...]


@dataclass(frozen=True)
class Episode:
  task: Task
  prompt: str
  turns: tuple[TurnRecord, ...]
  answer: str | None
  score: float
  ended: str                          # "answer" | "max_turns"
  format_ok: bool

  @property
  def success_estimates(self) -> list[float]:
    return [t.success for t in self.turns if t.success is not None]

  @property
  def response(self) -> str:
    return M.response_text([t.text for t in self.turns], [t.observation for t in self.turns])


# ---------------------------------------------------------------------------------------------
# Tools


def make_tool_fn(worlds: Sequence[World] = (), k: int | None = None, search_fn: SearchFn | None = None
                 ) -> ToolFn:
  """Search in the task's world (task.meta["world_seed"]; a single world serves any task),
  top-k formatted docs (k: the world's config.search_k unless given); `calc` with the math
  tasks' safe calculator."""
  by_seed = {w.seed: w for w in worlds}

  def tool(task: Task, name: str, arg: str) -> str:
    if name == "calc":
      return calc(arg)
    if name == "search":
      seed = (task.meta or {}).get("world_seed")
      world = by_seed.get(seed) if seed is not None else None
      if world is None and len(by_seed) == 1:
        world = next(iter(by_seed.values()))
      if world is None:
        raise KeyError(f"task {task.id}: no world for world_seed={seed!r} "
                       f"(have {sorted(by_seed)})")
      return world.search_text(arg, k, search_fn)
    raise ValueError(f"unknown tool {name!r}")

  return tool


# ---------------------------------------------------------------------------------------------
# One turn, one episode, a batch


def cut_at_stop(text: str, stop: Sequence[str] = STOP_STRINGS) -> str:
  """Text up to and including the earliest stop string (a scripted or foreign generate
  function may run past it; the protocol says generation ends there)."""
  hits = [(text.find(s), s) for s in stop if s in text]
  if not hits:
    return text
  j, s = min(hits)
  return text[:j + len(s)]


def take_turn(task: Task, gen: Generation, step: int, cfg: AgentConfig, tool_fn: ToolFn
              ) -> TurnRecord:
  """Parse one generated turn, run its action, score it (pure given `tool_fn`)."""
  spec = cfg.format_spec()
  text = cut_at_stop(gen.text)
  parsed = parse_turn(text, spec.variant, spec.horizon, spec.max_tokens, spec.strict_decimals)
  act = parsed.action
  answered = act is not None and act[0] == "answer"
  usable = answered or (act is not None and act[0] in DOMAIN_TOOLS[task.domain]
                        and bool(act[1].strip()))
  if answered:
    obs = None
  elif usable:
    obs = tool_fn(task, act[0], act[1])
  else:
    obs = invalid_message(task.domain)
  return record_turn(step, text, gen.stop_reason, parsed.success, act, not usable, obs, spec)


def record_turn(step: int, text: str, stop_reason: str, success: float | None,
                action: tuple[str, str] | None, invalid: bool, obs: str | None, spec: M.FormatSpec
                ) -> TurnRecord:
  """A turn whose observation is known (from a host tool here, or the device tool's ids decoded:
  evals/device_agent.py), scored: format problems and the grounding of its forecast."""
  problems = tuple(M.turn_format_problems(text, spec))
  expect = M.step1_expectation(text, spec)
  grounding = None if obs is None else M.grounding_score(expect, obs)
  grounding_f1 = None if obs is None else M.grounding_f1(expect, obs)
  return TurnRecord(step=step, text=text, stop_reason=stop_reason, success=success,
                    action=action, invalid=invalid, observation=obs, grounding=grounding, grounding_f1=grounding_f1,
                    format_ok=not problems, format_problems=problems)


def finish_episode(task: Task, prompt: str, turns: Sequence[TurnRecord], spec: M.FormatSpec
                   ) -> Episode:
  last = turns[-1] if turns else None
  answered = last is not None and last.observation is None
  answer = last.action[1] if answered else None
  match = (task.meta or {}).get("answer_match", "any")  # "all": a list/table reference (FanOutQA)
  score = score_answer(task.domain, answer, task.answers, match) if answer is not None else 0.0
  ok = M.episode_format_ok([t.text for t in turns], [t.observation for t in turns], spec)
  return Episode(task, prompt, tuple(turns), answer, float(score),
                 "answer" if answered else "max_turns", ok)


def run_agent(tasks: Sequence[Task], generate_fn: GenerateFn, tool_fn: ToolFn,
              cfg: AgentConfig = AgentConfig()) -> list[Episode]:
  """Play every task for up to `cfg.max_turns` turns, batching the still-active rows."""
  if cfg.max_turns < 1:
    raise ValueError(f"max_turns must be >= 1, got {cfg.max_turns}")
  prompts = [render_prompt(t, cfg.variant) for t in tasks]
  contexts = [[p] for p in prompts]
  turns: list[list[TurnRecord]] = [[] for _ in tasks]
  active = list(range(len(tasks)))
  for t in range(cfg.max_turns):
    if not active:
      break
    gens = generate_fn([contexts[i] for i in active], stop=STOP_STRINGS,
                       max_new_tokens=cfg.max_new_tokens, seed=cfg.seed * 1_000_003 + t)
    if len(gens) != len(active):
      raise ValueError(f"generate_fn returned {len(gens)} generations for {len(active)} rows")
    still = []
    for i, gen in zip(active, gens):
      rec = take_turn(tasks[i], gen, t + 1, cfg, tool_fn)
      turns[i].append(rec)
      if rec.observation is not None:
        contexts[i] = contexts[i] + [rec.text, render_observation(rec.observation)]
        still.append(i)
    active = still
  spec = cfg.format_spec()
  return [finish_episode(task, p, tr, spec) for task, p, tr in zip(tasks, prompts, turns)]


def evaluate(tasks: Sequence[Task], generate_fn: GenerateFn, tool_fn: ToolFn,
             cfg: AgentConfig = AgentConfig(), *, receipts_path: str | Path | None = None,
             run: str = "", max_obs_chars: int = 2000, batch_size: int | None = None,
             append: bool = False) -> tuple[list[Episode], M.EvalMetrics]:
  """Run the agent (in batches of `batch_size` tasks), write receipts, return live figures."""
  bs = batch_size or max(len(tasks), 1)
  episodes: list[Episode] = []
  for s in range(0, len(tasks), bs):
    # a distinct seed per batch: two batches must not share their sampling noise
    episodes += run_agent(tasks[s:s + bs], generate_fn, tool_fn,
                          dataclasses.replace(cfg, seed=cfg.seed * 7919 + s // bs))
  spec = cfg.format_spec()
  if receipts_path is not None:
    rc.write_receipts(receipts_path, episodes, spec.to_json(), run, max_obs_chars, append)
  return episodes, M.metrics_from_episodes(episodes, spec)


# ---------------------------------------------------------------------------------------------
# The real model behind GenerateFn


def context_ids(tokenizer, segments: Sequence[str], add_bos: bool = True) -> list[int]:
  """BOS + each segment encoded on its own, concatenated (the training pipeline's rule)."""
  ids = [tokenizer.bos_id] if add_bos and tokenizer.bos_id is not None else []
  for e in tokenizer.encode_batch(list(segments)):
    ids += e
  return ids


def chat_messages(context: Sequence[str], obs_role: str = "tool") -> list[dict]:
  """The raw context [prompt, turn, observation, ...] as the conversation an FE-SFT policy was
  trained on (stages_data.chat_messages): the user prompt, then assistant turns and observations
  (`<information>...</information>`) in `obs_role` messages ("user" for templates without a
  tool role)."""
  msgs = [{"role": "user", "content": context[0].rstrip("\n")}]
  for i, piece in enumerate(context[1:]):
    msgs.append({"role": "assistant" if i % 2 == 0 else obs_role, "content": piece.strip()})
  return msgs


def model_generate_fn(cfg, params, tokenizer, *, temperature=0.0, top_p=1.0, top_k: int = 0,
                      add_bos: bool = True, chat: bool = False, prompt_multiple: int = 32,
                      batch_multiple: int = 1, progress=None) -> GenerateFn:
  """A GenerateFn over `sampling.generate` (greedy by default: evaluation should not depend
  on sampling luck unless asked). `chat`: contexts are rendered with the tokenizer's chat
  template (`chat_messages`), as FE-SFT / FC-RL policies read them; else raw segments
  (`context_ids`, the WM-AMT format). `prompt_multiple` / `batch_multiple`: see
  `sampling.generate` (an agent loop whose batch shrinks turn by turn keeps a few shapes).
  `progress`: a tqdm bar advanced by the number of rows of each call."""
  from foresight_jax import sampling
  obs_role = "user" if getattr(tokenizer, "chat_template", None) == "youtu" else "tool"

  def gen(contexts, *, stop, max_new_tokens, seed):
    if chat:
      prompts = [tokenizer.encode_chat(chat_messages(c, obs_role), add_generation_prompt=True)
                 for c in contexts]
    else:
      prompts = [context_ids(tokenizer, c, add_bos) for c in contexts]
    # rows near the position limit get fewer tokens instead of running off the RoPE range
    room = [max(0, cfg.max_position_embeddings - len(p)) for p in prompts]
    res = sampling.generate(cfg, params, tokenizer, prompts, max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, top_k=top_k, stop=list(stop),
                            include_stop_str=True, key=seed,
                            max_new_tokens_per_row=[min(r, max_new_tokens) for r in room],
                            prompt_multiple=prompt_multiple, batch_multiple=batch_multiple)
    if progress is not None:
      progress.update(len(contexts))
    return [Generation(t, r) for t, r in zip(res.texts, res.stop_reasons)]

  return gen
