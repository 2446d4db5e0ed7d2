"""The evaluation's record of a device rollout (`evals/device_agent.episodes_from_rollout`, what the
demo's table and receipts are read from) against the host agent's record of the same turns
(`evals/agent.run_agent`, the oracle): same texts, stop reasons, estimates, actions, invalid flags,
observations, grounding, answers, scores and endings."""
import numpy as np

from _scripted_policy import scripted_agent
from foresight_jax.data.generate import GenConfig, generate, make_worlds
from foresight_jax.data.render import render_prompt
from foresight_jax.evals import agent
from foresight_jax.evals.device_agent import episodes_from_rollout
from foresight_jax.rl import tasks as T
from foresight_jax.rl.layout import KIND_GEN, KIND_OBS, KIND_PAD, KIND_PROMPT

CFG = agent.AgentConfig(max_turns=3, max_new_tokens=12)


def test_device_record_equals_the_host_agents_record():
  gcfg = GenConfig(seed=0, n_worlds=1, math_fraction=0.0)
  worlds = make_worlds(gcfg)
  tasks = [t.task for t in generate(gcfg, 3, worlds=worlds)]
  gold = tasks[0].answers[0].split()[0]
  texts = tuple(d for _, d in worlds[0].docs[:40]) + tuple(render_prompt(t) for t in tasks) * 3
  _, _, tok = scripted_agent(gold, "Nowhere", texts)
  block = "<think>plan</think><foresight><rollout>1. plan</rollout><success>0.5</success></foresight>"
  enc = tok.encode
  # per task, the turns the policy generated: (ids, stop reason)
  script = [
      [(enc(block + f"<search>{gold}</search>"), "stop"), (enc(f"<think>plan</think><answer> {gold} </answer>"), "stop")],
      [(enc("<think>plan</think>") + [tok.eos_ids[0]], "eos"), (enc("<search> </search>"), "stop"),
       (enc("<think>" + " plan" * 40)[:CFG.max_new_tokens], "length")],
      [(enc(f"<search>{gold}</search>"), "stop"), (enc(block + "<answer>Nowhere</answer>"), "stop")],
  ]
  tool = agent.make_tool_fn(worlds)

  def generate_fn(contexts, *, stop, max_new_tokens, seed):
    out = []
    for ctx in contexts:
      ids, why = script[[render_prompt(t, CFG.variant) for t in tasks].index(ctx[0])][len(ctx) // 2]
      out.append(agent.Generation(tok.decode([i for i in ids if i not in tok.eos_ids]), why))
    return out
  host = agent.run_agent(tasks, generate_fn, tool, CFG)

  # the same turns as a device rollout's arrays: prompt, then each turn's ids and its observation's
  pre, suf = T.observation_affixes(tok, True)
  invalid = np.asarray(T.tool_tokens(tok, True).invalid).tolist()
  prompts = T.encode_prompts(tasks, tok, CFG.variant, True)
  rows = []
  for b, (task, turns) in enumerate(zip(tasks, script)):
    row = [(i, KIND_PROMPT, -1) for i in prompts[b]]
    for t, (ids, _) in enumerate(turns):
      row += [(i, KIND_GEN, t) for i in ids]
      rec = host[b].turns[t]
      if rec.observation is not None:
        obs = invalid if rec.invalid else enc(pre) + enc(tool(task, "search", rec.action[1])) + enc(suf)
        row += [(i, KIND_OBS, t) for i in obs]
    rows.append(row)
  width = max(map(len, rows))
  tokens, kind, turn = (np.full((len(rows), width), fill, np.int32) for fill in (0, KIND_PAD, -1))
  for b, row in enumerate(rows):
    tokens[b, :len(row)], kind[b, :len(row)], turn[b, :len(row)] = zip(*row)
  n_turns = np.asarray([len(s) for s in script], np.int32)
  answered = np.asarray([h.ended == "answer" for h in host])
  dev = episodes_from_rollout(tasks, tokens, kind, turn, n_turns, answered, tok, (pre, suf), CFG,
                              [render_prompt(t, CFG.variant) for t in tasks])

  # the script covers what the record must tell apart
  assert [h.ended for h in host] == ["answer", "max_turns", "answer"] and [h.score for h in host] == [1.0, 0.0, 0.0]
  assert [r.stop_reason for r in host[1].turns] == ["eos", "stop", "length"] and all(r.invalid for r in host[1].turns)
  assert host[0].turns[0].success == 0.5 and host[0].turns[0].grounding is not None
  for d, h in zip(dev, host):
    for rd, rh in zip(d.turns, h.turns):
      assert rd == rh, (rd, rh)
    assert d == h
