"""Base LM pretraining on a synthetic encyclopedia (stage 0, before WM-AMT), for models trained
from scratch.

    foresight-jax train --config configs/pretrain.py:tiny
    foresight-jax train --config configs/wm_amt.py:tiny --config.model.init_from=runs/pretrain_tiny/hf

The paper's mid-training starts from a pretrained base model. A model trained from scratch has
none, so this stage gives it one: causal LM on every entity document of `data.documents`
synthetic worlds (in the `(Title: t) text` layout search observations show), all tokens trained.
Names recur within a document, so the base learns to copy names it has never seen, which WM-AMT,
FE-SFT and the held-out evaluation on unseen worlds all need. Both mid-training arms of an
ablation start from the same base. The tokenizer (data.tokenizer=train_sentencepiece) is trained
on the documents plus `data.synthetic` rendered trajectories (raw and chat), so the later
stages' text (tags, thoughts, chat markers) tokenizes compactly. Keys: train/stages_config.py.
"""
from foresight_jax.train import stages_config

SIZES = ("tiny",)


def get_config(size: str = "tiny"):
  if size not in SIZES:
    raise ValueError(f"configs/pretrain.py: unknown size {size!r}; use one of {SIZES}")
  cfg = stages_config.base("pretrain", size)
  d, o, t = cfg.data, cfg.optim, cfg.train
  d.documents, d.synthetic = 400, 1000
  d.tokenizer, d.vocab_size = stages_config.TRAIN_SENTENCEPIECE, 2048
  d.seq_len, d.batch_size = 256, 16  # documents are ~100-150 tokens: short rows are cheaper
  d.augment = False
  o.learning_rate, o.warmup_steps, o.end_lr_ratio = 3e-3, 20, 1.0
  t.steps, t.checkpoint_every = 600, 200
  return cfg
