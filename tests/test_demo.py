"""`make demo`'s pipeline at toy size: every stage runs and the comparison table is complete."""
import json
import os

import pytest

from foresight_jax import demo


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path, capsys):
  metrics = demo.run(str(tmp_path), n_train=60, n_sft=60, n_eval=2, wm_steps=4, sft_steps=2,
                     max_new_tokens=16, smollm2=False)
  assert set(metrics) == set(demo.ARMS)
  for m in metrics.values():
    assert m["n_episodes"] == 2 and m["held_out_loss"] is not None
  table = json.load(open(tmp_path / "comparison.json"))
  assert len(table["rows"]) == 2
  for tag in ("foresight", "standard"):
    assert os.path.isfile(tmp_path / f"receipts_{tag}.jsonl")
    assert os.path.isfile(tmp_path / f"wm_amt_{tag}" / "metrics.jsonl")
    assert os.path.isfile(tmp_path / f"fe_sft_{tag}" / "hf" / "model.safetensors")
  assert "WM-AMT+FE-SFT" in capsys.readouterr().out
