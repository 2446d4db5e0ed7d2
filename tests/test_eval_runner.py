"""`evals/runner.play`: which rows take the device tool path and which the host agent, the order
episodes come back in, the sampling temperature, and how a refused or failing device path is
reported. The model, the device rollout and the host agent are stood in for (their own tests run
them for real: test_eval_cli.py, test_evals_device_record.py), so each rule is seen alone."""
import os
import types

import pytest

from foresight_jax import configs
from foresight_jax.evals import runner
from foresight_jax.train.stages_config import ConfigError

ROWS = [types.SimpleNamespace(id=f"t{i}", domain=d) for i, d in enumerate(["search", "math", "search", "math", "math"])]
SUITE = types.SimpleNamespace(name="mixed", docs=["a doc"], worlds=None, tool_fn=None)


@pytest.fixture
def calls(monkeypatch):
  """Stand-ins that record what play() asked of each path; episodes are tagged by path and row."""
  seen = {"device": [], "host": [], "temperature": [], "reason": None, "device_error": None}

  def run_device(rows, *a, temperature, **k):
    if seen["device_error"]:
      raise ValueError(seen["device_error"])
    seen["device"] += [r.id for r in rows]
    seen["temperature"].append(temperature)
    return [("device", r.id) for r in rows]

  def generate_fn(*a, temperature, **k):
    seen["temperature"].append(temperature)

  def evaluate(rows, gen, tool_fn, acfg, batch_size):
    seen["host"] += [r.id for r in rows]
    return [("host", r.id) for r in rows], None

  monkeypatch.setattr(runner, "run_device", run_device)
  monkeypatch.setattr(runner, "device_tool_reason", lambda *a: seen["reason"])
  monkeypatch.setattr(runner.agent, "model_generate_fn", generate_fn)
  monkeypatch.setattr(runner.agent, "evaluate", evaluate)
  return seen


EVAL_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "eval.py")


def _cfg(*overrides):
  return configs.load(EVAL_CONFIG + ":cpu", list(overrides))


def test_rows_split_by_path_and_come_back_in_row_order(calls):
  eps, path, reason = runner.play(SUITE, ROWS, (None, None, None), _cfg())
  assert (path, reason) == ("device", None)
  assert calls["device"] == ["t0", "t2"] and calls["host"] == ["t1", "t3", "t4"]
  assert [e[1] for e in eps] == [r.id for r in ROWS]  # row i's episode at i, whichever path ran it
  assert [e[0] for e in eps] == ["device", "host", "device", "host", "host"]


def test_one_sample_is_greedy_and_several_sample_at_the_configured_temperature(calls):
  runner.play(SUITE, ROWS, (None, None, None), _cfg("k=1", "samples=0"))
  assert calls["temperature"] == [0.0, 0.0]
  calls["temperature"].clear()
  cfg = _cfg("k=2", "temperature=0.7")
  runner.play(SUITE, ROWS, (None, None, None), cfg)
  assert calls["temperature"] == [0.7, 0.7]


def test_a_refused_device_path(calls):
  calls["reason"] = "retriever.kind=dense has no device index"
  with pytest.raises(ConfigError, match=r"tool_path=device does not apply to suite 'mixed': retriever\.kind=dense"):
    runner.play(SUITE, ROWS, (None, None, None), _cfg("tool_path=device"))
  # auto: every row on the host, the reason reported; a math-only suite never needs the search tool
  eps, path, reason = runner.play(SUITE, ROWS, (None, None, None), _cfg())
  assert (path, reason) == ("host", calls["reason"]) and calls["host"] == [r.id for r in ROWS]
  runner.play(SUITE, [r for r in ROWS if r.domain == "math"], (None, None, None), _cfg("tool_path=device"))


def test_a_failing_device_path(calls):
  calls["device_error"] = "passage table larger than the device budget"
  with pytest.raises(ConfigError, match=r"tool_path=device, suite 'mixed': passage table larger"):
    runner.play(SUITE, ROWS, (None, None, None), _cfg("tool_path=device"))
  eps, path, reason = runner.play(SUITE, ROWS, (None, None, None), _cfg())  # auto: the host takes them all
  assert (path, reason) == ("host", calls["device_error"]) and [e[1] for e in eps] == [r.id for r in ROWS]
