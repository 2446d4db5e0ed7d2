"""`evals/eval_config.check`: the defaults pass, and each value just outside its range is refused
with one error naming its key, before any model is loaded."""
import pytest

from foresight_jax.evals import eval_config
from foresight_jax.train.stages_config import ConfigError

BAD = [  # (key=value overrides, the key the error must name)
    ({"suites": " , "}, "suites"),
    ({"n": 0}, "n"),
    ({"k": 0}, "k"),
    ({"k": 4, "samples": 3}, "samples"),
    ({"k": 2, "temperature": 0.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"variant": "rollout"}, "variant"),
    ({"max_turns": 0}, "max_turns/max_new_tokens"),
    ({"max_new_tokens": 0}, "max_turns/max_new_tokens"),
    ({"batch_size": 0}, "batch_size"),
    ({"tool_path": "gpu"}, "tool_path"),
    ({"retriever.kind": "splade"}, "retriever.kind"),
    ({"retriever.topk": 0}, "retriever.topk"),
    ({"retriever.kind": "http", "retriever.url": "localhost:8000/retrieve"}, "retriever.url"),
    ({"judge.kind": "remote"}, "judge.kind"),
    ({"judge.kind": "http", "judge.base_url": "api.openai.com/v1"}, "judge.base_url"),
    ({"judge.kind": "http", "judge.base_url": "https://api.openai.com/v1"}, "judge.model"),
]


def _with(**values):
  cfg = eval_config.default_config()
  for key, v in values.items():
    node, *rest = key.split(".")
    if rest:
      cfg[node][rest[0]] = v
    else:
      cfg[key] = v
  return cfg


def test_defaults_and_edges_pass():
  eval_config.check(eval_config.default_config())
  eval_config.check(_with(k=1, temperature=0.0, top_p=1.0, samples=0, n=1, batch_size=1, max_turns=1))
  eval_config.check(_with(**{"k": 2, "samples": 2, "retriever.kind": "http", "retriever.url": "http://h/retrieve",
                             "judge.kind": "http", "judge.base_url": "https://x/v1", "judge.model": "m"}))


@pytest.mark.parametrize("values,key", BAD, ids=[k for _, k in BAD])
def test_each_bad_value_is_refused_naming_its_key(values, key):
  with pytest.raises(ConfigError, match=rf"^{key}: "):
    eval_config.check(_with(**values))
