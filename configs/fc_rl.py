"""FC-RL: foresight-conditioned RL (stage 3, after FE-SFT), GRPO with foresight rewards.

    foresight-jax train --config configs/fc_rl.py:tiny --config.model.init_from=runs/fe_sft_tiny/hf
    foresight-jax train --config configs/fc_rl.py:tiny --config.rl.reward=outcome   # plain GRPO
    foresight-jax train --config configs/fc_rl.py:smollm2_135m --config.model.init_from=runs/fe_sft_smollm2_135m/hf
    foresight-jax train --config configs/fc_rl.py:youtu_llm_2b --config.model.init_from=/ckpt/fe_sft_youtu/hf

One step: P prompts x G samples are rolled out (multi-turn, the search tool inside the jitted
step with rl.tool=device), scored (outcome + format + grounding + calibration with reward=fc;
outcome only with reward=outcome), turned into group advantages, and one clipped-ratio + k3 KL
update is taken; observation tokens are masked from every loss term. With no init_from, the
tiny size still runs from a random model (a warning says so) so resume can be checked on a
fresh clone. Keys: foresight_jax/train/stages_config.py (rl_defaults for the rl.* keys).
"""
from foresight_jax.train import stages_config

SIZES = ("tiny", "smollm2_135m", "youtu_llm_2b")


def get_config(size: str = "tiny"):
  if size not in SIZES:
    raise ValueError(f"configs/fc_rl.py: unknown size {size!r}; use one of {SIZES}")
  cfg = stages_config.base("fc_rl", size)
  d, o, t, r = cfg.data, cfg.optim, cfg.train, cfg.rl
  d.variant = "full"
  o.weight_decay, o.clip_norm = 0.0, 1.0
  if size == "tiny":
    # random init on a fresh clone (a tokenizer trained on the tasks' text); pass an FE-SFT
    # export as model.init_from for a real run
    d.tokenizer, d.vocab_size = stages_config.TRAIN_SENTENCEPIECE, 1024
    o.learning_rate, o.warmup_steps, o.end_lr_ratio = 1e-4, 0, 1.0
    t.steps, t.checkpoint_every = 20, 10
    r.prompts_per_step, r.group_size, r.max_turns, r.max_turn_tokens = 4, 4, 3, 96
    r.tasks, r.n_worlds, r.max_prompt_tokens, r.max_passage_tokens = 64, 8, 320, 96
  elif size == "smollm2_135m":
    cfg.model.init_from = "runs/fe_sft_smollm2_135m/hf"
    o.learning_rate, o.warmup_steps, o.end_lr_ratio = 1e-6, 0, 1.0  # Search-R1's GRPO lr
    t.steps, t.checkpoint_every = 200, 20
    t.compute_dtype = "bfloat16"
    r.prompts_per_step, r.group_size, r.max_turns, r.max_turn_tokens = 32, 5, 4, 500
    r.tasks, r.n_worlds, r.max_prompt_tokens, r.max_passage_tokens = 4096, 256, 512, 160
    r.beta = 0.001
  else:  # youtu_llm_2b
    cfg.model.init_from = "runs/fe_sft_youtu_llm_2b/hf"
    o.learning_rate, o.warmup_steps, o.end_lr_ratio = 1e-6, 0, 1.0
    t.steps, t.checkpoint_every = 200, 20
    t.compute_dtype, t.remat = "bfloat16", "full"
    cfg.mesh.data, cfg.mesh.fsdp = 1, -1
    r.prompts_per_step, r.group_size, r.max_turns, r.max_turn_tokens = 64, 5, 4, 500
    r.tasks, r.n_worlds, r.max_prompt_tokens, r.max_passage_tokens = 8192, 512, 512, 160
    r.beta = 0.001
  return cfg
