"""Trajectory <-> text in the turn format of design.md §1, and the format checker.

Rendering gives tagged segments (prompt / assistant / observation) so the training pipeline can
mask observation tokens from the loss; joined, they are exactly the text the model sees:

  <think> ... </think>
  <foresight>
  <rollout>
  1. search "q" -> salient
  </rollout>
  <success>0.64</success>
  </foresight>
  <search> q </search>
  \\n\\n<information>Doc 1(Title: t) ...</information>\\n\\n

Math turns use `<calc> expr </calc>` as their action (see schema.py) and answer
`<answer> \\boxed{N} </answer>`.

The parser and `check_format` are what the RL format/grounding rewards reuse: tags balanced and
properly nested, `<think>` first, the block (when the variant has one) before exactly one
action, nothing else at top level, rollout steps numbered 1..k with `->`, k <= horizon, at most
`max_tokens` whitespace tokens, success a number in [0, 1].
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from foresight_jax.data.schema import Step, Task, Trajectory
from foresight_jax.tokenizer.tokens import ACTION_TAGS, TAG_NAMES

ACTIONS = ACTION_TAGS
TAGS = TAG_NAMES
_TAG_RE = re.compile(r"<(/?)(" + "|".join(TAGS) + r")>")
_INFO_RE = re.compile(r"<information>(.*?)</information>", re.S)
_STEP_RE = re.compile(r"(\d+)\.\s+(.+?)\s+->\s*(.*)")
_ACT_RE = re.compile(r'(search|calc)\s+"(.*)"$|(answer)$')

_SEARCH_PROMPT = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first "
    "every time you get new information. {foresight}After reasoning, if you find you lack some "
    "knowledge, you can call a search engine by <search> query </search> and it will return the "
    "top searched results between <information> and </information>. You can search as many "
    "times as you want. If you find no further external knowledge needed, you can directly "
    "provide the answer inside <answer> and </answer>, without detailed illustrations. For "
    "example, <answer> Beijing </answer>. Question: {question}\n")
_MATH_PROMPT = (
    "Solve the given problem. You must conduct reasoning inside <think> and </think> first "
    "every time you get new information. {foresight}You can call a calculator by <calc> "
    "expression </calc> and it will return the result between <information> and "
    "</information>. Give the final answer inside <answer> and </answer> as \\boxed{{N}}, for "
    "example <answer> \\boxed{{123}} </answer>. Problem: {question}\n")
_FORESIGHT_HINT = {
    "none": "",
    "state": ("Before each action, forecast inside <foresight> and </foresight>: a <rollout> of "
              "the next steps you plan, one per line as 'k. action -> what it will return'. "),
    "full": ("Before each action, forecast inside <foresight> and </foresight>: a <rollout> of "
             "the next steps you plan, one per line as 'k. action -> what it will return', then "
             "<success> the probability, with two decimals, that your plan ends in a correct "
             "answer </success>. "),
}


@dataclass(frozen=True)
class Segment:
  # "prompt" | "assistant" | "observation" (attended, never trained on) | "context" (a slip:
  # attended, never trained on, see `slip_turns`)
  role: str
  text: str


# Search-R1's fixed reply to a turn without a usable action, with the domain's tool named (math
# has no search engine); the agent (evals/agent.py), the RL rollouts and slip augmentation use it
_INVALID = ("My previous action is invalid. If I want to {verb}, I should put the {what} between "
            "<{tool}> and </{tool}>. If I want to give the final answer, I should put the answer "
            "between <answer> and </answer>. Let me try again.")
_INVALID_TOOL = {"search": ("search", "search", "query"), "math": ("calc", "calculate", "expression")}


def invalid_message(domain: str) -> str:
  tool, verb, what = _INVALID_TOOL[domain]
  return _INVALID.format(verb=verb, what=what, tool=tool)


def slip_turns(traj: Trajectory, rate: float, seed: int) -> dict[int, str]:
  """Slip-and-recover augmentation: {step index: a slipped attempt at that turn}.

  With probability `rate` per turn (seeded by the task id, so every epoch and host agrees), the
  turn is preceded by a cut-off copy of itself (no action: what a length-capped or confused turn
  looks like) and the invalid-action reply. Renderers give the slip the role "context" (read,
  never trained on) and train the real turn after it: the model learns to recover from the reply
  without ever being taught to slip. Without it the reply (which names tags inside an
  observation) is unlike anything trained, and a model's first format slip cascades."""
  if rate <= 0:
    return {}
  import random
  rng = random.Random(f"slip:{seed}:{traj.task.id}")
  out = {}
  for i, step in enumerate(traj.steps):
    if rng.random() < rate:
      text = render_turn(step)
      cut = text.rfind(f"<{step.action.tool}>")
      out[i] = text[:rng.randint(len("<think>"), max(len("<think>"), cut))].rstrip()
  return out


def render_prompt(task: Task, variant: str = "full") -> str:
  tmpl = _MATH_PROMPT if task.domain == "math" else _SEARCH_PROMPT
  return tmpl.format(foresight=_FORESIGHT_HINT[variant], question=task.question)


def render_block(rollout: list[str], success: float | None) -> str:
  body = "\n".join(f"{k}. {line}" for k, line in enumerate(rollout, 1))
  out = f"<foresight>\n<rollout>\n{body}\n</rollout>\n"
  if success is not None:
    out += f"<success>{success:.2f}</success>\n"
  return out + "</foresight>\n"


def render_turn(step: Step) -> str:
  """One assistant turn; the block is rendered iff the step carries one (builder decides)."""
  text = f"<think> {step.thought} </think>\n"
  if step.foresight is not None:
    text += render_block(step.foresight.rollout, step.foresight.success)
  tool = step.action.tool
  return text + f"<{tool}> {step.action.arg} </{tool}>"


def render_observation(observation: str) -> str:
  return f"\n\n<information>{observation}</information>\n\n"


def render_segments(traj: Trajectory, variant: str | None = None,
                    slips: dict[int, str] | None = None) -> list[Segment]:
  """Prompt, then alternating assistant turns and observations (slipped attempts, `slip_turns`,
  as context segments with the invalid-action reply before their turn).

  `variant` only picks the prompt's instructions; by default it is inferred from the blocks.
  """
  if variant is None:
    fs = [s.foresight for s in traj.steps if s.foresight is not None]
    variant = "none" if not fs else ("full" if fs[0].success is not None else "state")
  segs = [Segment("prompt", render_prompt(traj.task, variant))]
  for i, step in enumerate(traj.steps):
    if slips and i in slips:
      segs += [Segment("context", slips[i]),
               Segment("observation", render_observation(invalid_message(traj.task.domain)))]
    segs.append(Segment("assistant", render_turn(step)))
    if step.observation is not None:
      segs.append(Segment("observation", render_observation(step.observation)))
  return segs


def render_text(traj: Trajectory, variant: str | None = None) -> str:
  return "".join(s.text for s in render_segments(traj, variant))


def response_text(traj: Trajectory) -> str:
  """Everything after the prompt (what a policy generates, observations interleaved)."""
  return "".join(s.text for s in render_segments(traj)[1:])


# ---------------------------------------------------------------------------------------------
# Parsing and format checking


@dataclass
class RolloutStep:
  k: int
  action: str         # as written: 'search "q"', 'calc "e"', 'answer', or free text
  expect: str         # predicted salient content of the observation
  tool: str | None    # search | calc | answer when the action has that form
  arg: str | None


@dataclass
class ParsedTurn:
  think: str | None = None
  rollout: list[RolloutStep] | None = None
  success: float | None = None
  action: tuple[str, str] | None = None  # (tool, argument)
  has_block: bool = False
  problems: list[str] = field(default_factory=list)


def parse_turn(text: str, variant: str | None = "full", horizon: int = 3, max_tokens: int = 64,
               strict_decimals: bool = False) -> ParsedTurn:
  """Parse one assistant turn; `problems` lists every format violation (variant None: the
  block is optional and may be state or full)."""
  out = ParsedTurn()
  bad = out.problems.append
  top: list[str] = []        # top-level elements in order
  inner: list[str] = []      # elements inside <foresight>
  stack: list[tuple[str, int]] = []
  closed: set[str] = set()   # elements already read: a repeated one is a problem, never the value
  pos = 0
  for m in _TAG_RE.finditer(text):
    closing, name = m.group(1) == "/", m.group(2)
    between = text[pos:m.start()]
    if between.strip() and (not stack or stack[-1][0] == "foresight"):
      bad(f"text outside tags: {between.strip()[:30]!r}")
    pos = m.end()
    if not closing:
      if name == "information":
        bad("<information> inside an assistant turn")
      if stack and not (stack[-1][0] == "foresight" and name in ("rollout", "success")):
        bad(f"<{name}> nested inside <{stack[-1][0]}>")
      elif not stack and name in ("rollout", "success"):
        bad(f"<{name}> outside <foresight>")
      (inner if stack else top).append(name)
      stack.append((name, m.end()))
      continue
    if not stack or stack[-1][0] != name:
      bad(f"unbalanced </{name}>" + (f" (open: <{stack[-1][0]}>)" if stack else ""))
      continue
    _, start = stack.pop()
    _content(out, name, text[start:m.start()], bad, horizon, max_tokens, strict_decimals, name not in closed)
    closed.add(name)
  if text[pos:].strip() and not stack:
    bad(f"text after the action: {text[pos:].strip()[:30]!r}")
  for name, _ in stack:
    bad(f"unclosed <{name}>")
  _order(top, inner, variant, bad)
  out.has_block = "foresight" in top
  return out


def _content(out, name, body, bad, horizon, max_tokens, strict_decimals, first):
  # The FIRST think / rollout / success / action is the turn's value, as the in-graph rewards and
  # their host oracle read it (rl/rewards.py): a second one is a format problem, not a new value.
  if name == "think":
    if first:
      out.think = body.strip()
  elif name in ACTIONS:
    if out.action is None:
      out.action = (name, body.strip())
    if name != "answer" and not body.strip():
      bad(f"empty <{name}>")
  elif name == "success":
    s = body.strip()
    try:
      v = float(s)
    except ValueError:
      v = None
    if v is None or not 0.0 <= v <= 1.0:
      bad(f"<success> is not a probability: {s[:20]!r}")
    else:
      if first:
        out.success = v
      if strict_decimals and not re.fullmatch(r"[01]\.\d\d", s):
        bad(f"<success> not written with two decimals: {s!r}")
  elif name == "rollout":
    steps = _rollout(body, bad, horizon, max_tokens)
    if first:
      out.rollout = steps


def _rollout(body: str, bad, horizon: int, max_tokens: int) -> list[RolloutStep]:
  steps = []
  lines = [ln.strip() for ln in body.strip().splitlines() if ln.strip()]
  if not lines:
    bad("empty <rollout>")
  for ln in lines:
    m = _STEP_RE.fullmatch(ln)
    if not m:
      bad(f"rollout line is not 'k. action -> expectation': {ln[:40]!r}")
      continue
    k, action, expect = int(m.group(1)), m.group(2).strip(), m.group(3).strip()
    if k != len(steps) + 1:
      bad(f"rollout step numbered {k}, expected {len(steps) + 1}")
    a = _ACT_RE.fullmatch(action)
    tool, arg = (None, None) if not a else ((a.group(1), a.group(2)) if a.group(1)
                                            else ("answer", None))
    steps.append(RolloutStep(k, action, expect, tool, arg))
  if len(steps) > horizon:
    bad(f"rollout has {len(steps)} steps, more than the horizon {horizon}")
  n_tok = len(body.split())
  if n_tok > max_tokens:
    bad(f"rollout has {n_tok} tokens, more than {max_tokens}")
  return steps


def _order(top: list[str], inner: list[str], variant: str | None, bad) -> None:
  actions = [i for i, n in enumerate(top) if n in ACTIONS]
  if not actions:
    bad("no action (<search>, <calc> or <answer>)")
  elif len(actions) > 1:
    bad(f"{len(actions)} actions in one turn")
  if top[:1] != ["think"]:
    bad("turn does not start with <think>")
  for n in ("think", "foresight"):
    if top.count(n) > 1:
      bad(f"more than one <{n}>")
  if "foresight" in top:
    if actions and top.index("foresight") > actions[0]:
      bad("<foresight> after the action")
    if variant == "none":
      bad("foresight block in variant 'none'")
    want = {"full": ["rollout", "success"], "state": ["rollout"]}.get(variant)
    if want is not None and inner != want:
      bad(f"block contains {inner}, expected {want} for variant {variant!r}")
    elif want is None and inner not in (["rollout", "success"], ["rollout"]):
      bad(f"block contains {inner}, expected [rollout, success] or [rollout]")
  elif variant in ("state", "full"):
    bad("missing <foresight> block")


def split_response(text: str) -> tuple[list[str], list[str]]:
  """(assistant turns, observations) of a response; observations sit between turns."""
  turns, obs, pos = [], [], 0
  for m in _INFO_RE.finditer(text):
    turns.append(text[pos:m.start()])
    obs.append(m.group(1))
    pos = m.end()
  if text[pos:].strip() or not turns:
    turns.append(text[pos:])
  return turns, obs


def parse_response(text: str, variant: str | None = "full", horizon: int = 3,
                   max_tokens: int = 64) -> list[ParsedTurn]:
  return [parse_turn(t, variant, horizon, max_tokens) for t in split_response(text)[0]]


def check_format(text: str, variant: str | None = "full", horizon: int = 3, max_tokens: int = 64,
                 require_final_answer: bool = True, strict_decimals: bool = False) -> list[str]:
  """All format problems of a response (empty list = the grammar holds)."""
  problems = []
  turns = split_response(text)[0]
  for i, t in enumerate(turns):
    p = parse_turn(t, variant, horizon, max_tokens, strict_decimals)
    problems += [f"turn {i + 1}: {x}" for x in p.problems]
    if p.action and p.action[0] == "answer" and i < len(turns) - 1:
      problems.append(f"turn {i + 1}: answer is followed by more turns")
    if i == len(turns) - 1 and require_final_answer and (not p.action or p.action[0] != "answer"):
      problems.append(f"turn {i + 1}: response does not end with <answer>")
  return problems
