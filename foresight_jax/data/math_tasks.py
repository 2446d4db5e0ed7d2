"""Synthetic math tasks (integer answers 0..999) solved step by step with a `calc` tool.

Choice: each solution step is a `calc` action whose observation is the intermediate result
(`{"tool": "calc", "expr": "611 + 205"}` -> "816"), and the last step answers `\\boxed{N}`.
Real observations let rollouts be grounded exactly like search ones (`2. calc "816 % 311" ->
194`), and the policy's mistakes (a slipped constant, a misread result) propagate the way they
do in real solutions. Families: arithmetic chains, modular powers (Fermat reduction), a
committee-and-chair count, triangular numbers mod m, lcm - gcd.

A task's plan (task.meta["plan"]) is a list of {"label", "fmt"}; `fmt` refers to the agent's
own earlier results as {v0}, {v1}, ..., so a misread value flows into later expressions.
"""
from __future__ import annotations

import ast
import dataclasses
import math
import operator
import random
import re
from dataclasses import dataclass

from foresight_jax.data.policies import Noise, NOISE, run_episode
from foresight_jax.data.schema import Action, Task, Trajectory

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_FUN = {"comb": math.comb, "perm": math.perm, "factorial": math.factorial, "gcd": math.gcd,
        "lcm": math.lcm}
_LIMIT = 10 ** 30


def calc(expr: str) -> str:
  """Safe integer calculator (no eval): + - * // % **, unary -, comb/perm/factorial/gcd/lcm.

  Returns the result as a string, or "error: ..." (still a non-empty observation)."""
  try:
    return str(_eval(ast.parse(expr.replace("^", "**"), mode="eval").body))
  except (ValueError, ZeroDivisionError, SyntaxError, TypeError, OverflowError) as e:
    return f"error: {e}" if str(e) else f"error: {type(e).__name__}"


def _eval(node) -> int:
  if isinstance(node, ast.Constant) and type(node.value) is int:
    return node.value
  if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
    v = _eval(node.operand)
    return -v if isinstance(node.op, ast.USub) else v
  if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
    a, b = _eval(node.left), _eval(node.right)
    if isinstance(node.op, ast.Pow) and (b < 0 or b > 200 or abs(a) > 10 ** 6):
      raise ValueError("exponent out of range")
    out = _BIN[type(node.op)](a, b)
  elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id in _FUN and not node.keywords):
    args = [_eval(a) for a in node.args]
    if any(abs(a) > 1000 for a in args):
      raise ValueError("argument too large")
    out = _FUN[node.func.id](*args)
  else:
    raise ValueError(f"unsupported expression {type(node).__name__}")
  if abs(out) > _LIMIT:
    raise ValueError("result too large")
  return out


# ---------------------------------------------------------------------------------------------
# Task families: each returns (problem text, plan); the gold answer is the plan run cleanly.


def _chain(rng):
  a = rng.randint(12, 99)
  ops = []
  for _ in range(rng.randint(2, 3)):
    kind = rng.choice(["mul", "add", "sub"])
    c = rng.randint(3, 19) if kind == "mul" else rng.randint(20, 400)
    ops.append((kind, c))
  m = rng.randint(101, 997)
  words = {"mul": "multiply it by {c}", "add": "add {c}", "sub": "subtract {c}"}
  sym = {"mul": "*", "add": "+", "sub": "-"}
  plan, prev = [], str(a)
  for i, (kind, c) in enumerate(ops):
    plan.append({"label": words[kind].format(c=c).replace(" it", ""),
                 "fmt": f"{prev} {sym[kind]} {c}"})
    prev = f"{{v{i}}}"
  plan.append({"label": f"reduce mod {m}", "fmt": f"{prev} % {m}"})
  said = ", then ".join(words[k].format(c=c) for k, c in ops)
  text = (f"Start with {a}. {said[0].upper()}{said[1:]}. What is the remainder when the result "
          f"is divided by {m}?")
  return text, plan


def _modpow(rng):
  m = rng.choice([7, 11, 13, 17, 19])
  a = rng.choice([x for x in range(2, 13) if x % m])
  b = rng.randint(20, 500)
  plan = [{"label": f"reduce the exponent mod {m - 1}", "fmt": f"{b} % {m - 1}"},
          {"label": "compute the reduced power", "fmt": f"{a} ** {{v0}}"},
          {"label": f"reduce mod {m}", "fmt": f"{{v1}} % {m}"}]
  return f"What is the remainder when {a}^{b} is divided by {m}?", plan


def _committee(rng):
  n, k = rng.randint(6, 16), rng.randint(2, 5)
  plan = [{"label": f"choose {k} of {n}", "fmt": f"comb({n}, {k})"},
          {"label": f"pick a chair among {k}", "fmt": f"{{v0}} * {k}"},
          {"label": "reduce mod 1000", "fmt": "{v1} % 1000"}]
  return (f"A club has {n} members. In how many ways can it choose a committee of {k} members "
          f"and then a chair from that committee? Give the answer modulo 1000.", plan)


def _triangular(rng):
  n, m = rng.randint(20, 300), rng.randint(50, 997)
  plan = [{"label": f"multiply {n} by {n + 1}", "fmt": f"{n} * {n + 1}"},
          {"label": "halve", "fmt": "{v0} // 2"},
          {"label": f"reduce mod {m}", "fmt": f"{{v1}} % {m}"}]
  return f"What is the remainder when 1 + 2 + ... + {n} is divided by {m}?", plan


def _lcm_gcd(rng):
  g = rng.randint(2, 12)
  a, b = g * rng.randint(2, 9), g * rng.randint(2, 9)
  plan = [{"label": f"gcd of {a} and {b}", "fmt": f"gcd({a}, {b})"},
          {"label": "lcm from the gcd", "fmt": f"{a} * {b} // {{v0}}"},
          {"label": "subtract the gcd", "fmt": "{v1} - {v0}"}]
  return f"What is lcm({a}, {b}) - gcd({a}, {b})?", plan


FAMILIES = {"chain": _chain, "modpow": _modpow, "committee": _committee,
            "triangular": _triangular, "lcm_gcd": _lcm_gcd}


def run_plan(plan: list[dict]) -> list[int]:
  values: list[int] = []
  for st in plan:
    values.append(int(calc(st["fmt"].format(**{f"v{i}": v for i, v in enumerate(values)}))))
  return values


def sample_math_task(rng: random.Random, qid: str, family: str | None = None) -> Task:
  for _ in range(100):
    fam = family or rng.choice(sorted(FAMILIES))
    text, plan = FAMILIES[fam](rng)
    values = run_plan(plan)
    if 0 <= values[-1] <= 999:
      return Task(id=qid, domain="math", question=text, answers=[str(values[-1])],
                  meta={"family": fam, "plan": plan, "values": values})
  raise RuntimeError("could not sample a task with an answer in 0..999")


# ---------------------------------------------------------------------------------------------
# Environment and policy


@dataclass(frozen=True)
class MathEnv:
  def observe(self, action: Action) -> str:
    return calc(action.arg)


def perturb(rng: random.Random, v: int) -> int:
  """A nearby wrong value (a slip of the kind a noisy policy or a guessed forecast makes)."""
  d = rng.choice([-10, -3, -2, -1, 1, 2, 3, 10])
  return v + d if v + d >= 0 else v + abs(d)


@dataclass(frozen=True)
class MathPolicy:
  """Executes the plan with `calc`; state = {"k": next plan step, "values": results so far}."""
  noise: Noise = Noise()

  def act(self, task, state, last_obs, rng, force_answer):
    plan, nz = task.meta["plan"], self.noise
    if state is None:
      state, head = {"k": 0, "values": []}, "Plan: " + "; ".join(s["label"] for s in plan) + ". "
    else:
      state = {"k": state["k"], "values": list(state["values"])}
      got = _int(last_obs)
      if got is None:  # calculator error: give up with what we have
        return self._answer(task, state, rng, "The calculation failed. ", force=True)
      if rng.random() < nz.misread:
        got = perturb(rng, got)
      state["values"].append(got)
      state["k"] += 1
      head = f"That gives {got}. "
    k = state["k"]
    if k >= len(plan) or force_answer or (k >= 1 and rng.random() < nz.stop_early):
      return self._answer(task, state, rng, head)
    expr = plan[k]["fmt"].format(**{f"v{i}": v for i, v in enumerate(state["values"])})
    if rng.random() < nz.wrong_query:
      nums = list(re.finditer(r"\d+", expr))
      m = rng.choice(nums)
      expr = expr[:m.start()] + str(perturb(rng, int(m.group()))) + expr[m.end():]
    return head + f"Next: {plan[k]['label']}.", Action("calc", expr), state

  def _answer(self, task, state, rng, head, force=False):
    v = state["values"][-1] if state["values"] else 0
    if not force and rng.random() < self.noise.wrong_answer:
      v = perturb(rng, v)
    return head + f"The answer is {v}.", Action("answer", f"\\boxed{{{v}}}"), state


def _int(obs: str | None) -> int | None:
  if obs is None or not re.fullmatch(r"-?\d+", obs.strip()):
    return None
  return int(obs)


def rollout_math(task: Task, noise: Noise | str = "expert", seed: int | str = 0,
                 max_steps: int | None = None) -> Trajectory:
  name = noise if isinstance(noise, str) else "custom"
  noise = NOISE[noise] if isinstance(noise, str) else noise
  max_steps = max_steps or len(task.meta["plan"]) + 2
  return run_episode(MathEnv(), MathPolicy(noise), task, random.Random(f"math:{seed}:{task.id}"),
                     max_steps, source=f"synthetic-math/policy={name}",
                     meta={"noise": dataclasses.asdict(noise), "policy": name,
                           "max_steps": max_steps})
