"""Slip-and-recover augmentation: slipped attempts are read, never trained; the real turns are
trained exactly as without slips; raw and chat renderings agree; off by default."""
import numpy as np

from foresight_jax.data.foresight import ForesightConfig, build_dataset
from foresight_jax.data.generate import GenConfig, generate, make_worlds
from foresight_jax.data.pipeline_tokenize import tokenize_trajectory
from foresight_jax.data.render import invalid_message, render_segments, render_turn, slip_turns
from foresight_jax.tokenizer import train_sentencepiece
from foresight_jax.train import stages_data


def _data():
  g = GenConfig(seed=3, n_worlds=2)
  w = make_worlds(g)
  trajs = build_dataset(list(generate(g, 12, worlds=w)), ForesightConfig(variant="full", rollout_horizon=1), w)
  tok = train_sentencepiece(["".join(s.text for s in render_segments(t)) for t in trajs], None, 1024)
  return trajs, tok


def test_slips_are_context_and_the_trained_tokens_are_unchanged():
  trajs, tok = _data()
  assert slip_turns(trajs[0], 0.0, 0) == {}  # off by default
  for t in trajs:
    slips = slip_turns(t, 1.0, 0)
    assert set(slips) == set(range(len(t.steps)))
    for i, s in slips.items():
      assert render_turn(t.steps[i]).startswith(s) and len(s) < len(render_turn(t.steps[i]))
    segs = render_segments(t, None, slips)
    roles = [s.role for s in segs]
    assert roles.count("context") == len(t.steps)
    assert all(segs[k + 1].text.strip() == f"<information>{invalid_message(t.task.domain)}</information>"
               for k, r in enumerate(roles) if r == "context")
    for mode in ("mid_training", "sft"):
      plain = tokenize_trajectory(t, tok, mode)
      slipped = tokenize_trajectory(t, tok, mode, slip_rate=1.0)
      # the same tokens are trained, in the same order: slips and their replies add only masked tokens
      np.testing.assert_array_equal(plain["tokens"][plain["loss_mask"] > 0][:-1],
                                    slipped["tokens"][slipped["loss_mask"] > 0][:-1])
      assert len(slipped["tokens"]) > len(plain["tokens"])


def test_chat_slips_are_untrained_assistant_messages():
  trajs, tok = _data()
  t = trajs[0]
  plain = stages_data.tokenize_chat(t, tok, "sft", "full")
  slipped = stages_data.tokenize_chat(t, tok, "sft", "full", slip_rate=1.0)
  np.testing.assert_array_equal(plain["tokens"][plain["loss_mask"] > 0], slipped["tokens"][slipped["loss_mask"] > 0])
  segs = stages_data.chat_segments(t, tok, "full", slip_turns(t, 1.0, 0))
  assert sum(s.role == "context" for s in segs) == len(t.steps)
  text = "".join(s.text for s in segs)
  assert text.count(invalid_message(t.task.domain)) == len(t.steps)


def test_slip_choice_is_seeded_per_task():
  trajs, _ = _data()
  a = [slip_turns(t, 0.3, 5) for t in trajs]
  assert a == [slip_turns(t, 0.3, 5) for t in trajs]
  assert a != [slip_turns(t, 0.3, 6) for t in trajs]
  assert 0 < sum(len(x) for x in a) < sum(len(t.steps) for t in trajs)
