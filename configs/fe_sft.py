"""FE-SFT: format-eliciting SFT on chat-formatted tasks (stage 2, after WM-AMT).

    foresight-jax train --config configs/fe_sft.py:tiny      # starts from runs/wm_amt_tiny/hf
    foresight-jax train --config configs/fe_sft.py:smollm2_135m \
        --config.model.init_from=runs/wm_amt_smollm2_135m/hf

Each trajectory becomes a conversation in the tokenizer's chat template: the task as the user
turn, every agent turn as an assistant message whose target holds a foresight block before its
action (a decision point), every observation as a tool turn (a user turn for templates without
one). Mode "sft": only assistant tokens (with their end-of-turn marker) are trained. By default
the stage starts from the WM-AMT stage's export (`<wm_amt workdir>/hf`, weights + tokenizer);
set `model.init_from` to an imported checkpoint, or to "" with
`data.tokenizer=train_sentencepiece` to start from scratch. All keys: train/stages_config.py.
"""
from foresight_jax.train import stages_config


SIZES = ("tiny", "smollm2_135m", "youtu_llm_2b")


def get_config(size: str = "tiny"):
  if size not in SIZES:
    raise ValueError(f"configs/fe_sft.py: unknown size {size!r}; use one of {SIZES}")
  cfg = stages_config.base("fe_sft", size)
  d, o, t = cfg.data, cfg.optim, cfg.train
  d.mode = "sft"
  d.chat_format = True
  d.variant = "full"
  d.augment = True
  d.seed = 1  # other trajectories than WM-AMT's (seed 0) when both are synthetic
  cfg.model.init_from = f"runs/wm_amt_{size}/hf"
  if size == "tiny":
    d.synthetic, d.seq_len, d.batch_size = 256, 512, 8
    o.learning_rate, o.warmup_steps = 1e-3, 10
    t.steps, t.checkpoint_every = 100, 50
  elif size == "smollm2_135m":
    d.synthetic, d.seq_len, d.batch_size = 2048, 2048, 32
    o.learning_rate, o.warmup_steps = 5e-5, 50
    t.steps, t.checkpoint_every = 500, 100
    t.compute_dtype, t.remat = "bfloat16", "dots"
  else:  # youtu_llm_2b
    d.synthetic, d.seq_len, d.batch_size = 4096, 4096, 64
    o.learning_rate, o.warmup_steps = 1e-5, 50
    t.steps, t.checkpoint_every = 500, 100
    t.compute_dtype, t.remat = "bfloat16", "full"
    cfg.mesh.data, cfg.mesh.fsdp = 1, -1
  o.weight_decay = 0.0  # a short SFT: no pull of the mid-trained weights towards 0
  return cfg
