"""End-to-end smoke: the real tiny model (random weights) behind the agent loop, with a small
sentencepiece tokenizer trained on rendered trajectories, plus held-out loss. Its numbers are
meaningless; the test checks that everything runs and has the right shape and keys."""
import math

import jax
import pytest

from foresight_jax import models, sharding
from foresight_jax.data.foresight import ForesightConfig, build_dataset
from foresight_jax.data.generate import GenConfig, generate, make_worlds
from foresight_jax.data.pipeline import PipelineConfig, make_iterator
from foresight_jax.data.render import render_text
from foresight_jax.evals import agent as A
from foresight_jax.evals import metrics as M
from foresight_jax.evals import receipts as R
from foresight_jax.evals import report
from foresight_jax.tokenizer import train_sentencepiece
from foresight_jax.train import step as step_lib


@pytest.fixture(scope="module")
def setup():
  gcfg = GenConfig(seed=5, n_worlds=2)
  worlds = make_worlds(gcfg)
  trajs = build_dataset(list(generate(gcfg, 24, worlds=worlds)),
                        ForesightConfig(variant="full", n_branches=2), worlds)
  tok = train_sentencepiece([render_text(t) for t in trajs], None, vocab_size=480)
  # embedding rows = the tokenizer's ids: a random model must not sample ids it cannot decode
  cfg = models.model_config("tiny", vocab_size=tok.vocab_size)
  params = models.init_params(cfg, jax.random.key(0))
  return worlds, trajs, tok, cfg, params


def test_tiny_model_agent_smoke(tmp_path, setup):
  worlds, trajs, tok, cfg, params = setup
  tasks = [next(t.task for t in trajs if t.task.domain == "search"),
           next(t.task for t in trajs if t.task.domain == "math")]
  gen = A.model_generate_fn(cfg, params, tok)
  acfg = A.AgentConfig(max_turns=2, max_new_tokens=16)
  path = tmp_path / "receipts.jsonl"
  eps, live = A.evaluate(tasks, gen, A.make_tool_fn(worlds), acfg, receipts_path=path,
                         run="tiny")
  assert len(eps) == 2
  for ep in eps:
    assert 1 <= len(ep.turns) <= 2 and ep.ended in ("answer", "max_turns")
    for t in ep.turns:
      assert t.stop_reason in ("stop", "eos", "length") and isinstance(t.text, str)
      assert (t.observation is None) == (t.action is not None and t.action[0] == "answer")
  d = live.to_dict()
  assert set(d) == {f.name for f in M.EvalMetrics.__dataclass_fields__.values()}
  assert live.n_episodes == 2 and live.n_turns == sum(len(e.turns) for e in eps)
  assert 0.0 <= live.format_turn <= 1.0 and 0.0 <= live.accuracy <= 1.0
  assert M.metrics_from_receipts(path) == live
  recs = R.read_receipts(path)
  assert sum(r["kind"] == "episode" for r in recs) == 2

  # held-out loss with the trainer's eval step over the training pipeline's batches
  it = make_iterator(trajs[-8:], tok, PipelineConfig(seq_len=256, batch_size=2, shuffle=False))
  hl = M.held_out_loss(cfg, params, it, max_batches=2)
  assert hl["batches"] == 2 and hl["tokens"] > 0
  assert math.isfinite(hl["loss"]) and 3.0 < hl["loss"] < 12.0  # ~ log(vocab) for random weights
  # the same figure through the trainer's sharded eval step
  mesh = sharding.make_mesh(2, 1, 1, devices=jax.devices()[:2])
  psh = models.param_shardings(cfg, mesh)
  it = make_iterator(trajs[-8:], tok, PipelineConfig(seq_len=256, batch_size=2, shuffle=False))
  hs = M.held_out_loss(cfg, jax.device_put(params, psh), it, max_batches=2, mesh=mesh,
                       eval_fn=step_lib.make_eval_step(cfg, mesh, psh))
  assert hs["tokens"] == hl["tokens"] and hs["loss"] == pytest.approx(hl["loss"], rel=1e-5)
  table = report.format_table({"tiny": dict(d, held_out_loss=hl["loss"])})
  assert table.splitlines()[2].startswith("tiny")
