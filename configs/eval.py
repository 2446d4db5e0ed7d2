"""`foresight-jax eval`: held-out evaluation suites with receipts and one JSON line of figures.

    foresight-jax eval --model runs/fc_rl_tiny/hf --suite world,fanoutqa,champ --k 8 --n 200 --out runs/eval
    foresight-jax eval --model DIR --config configs/eval.py:cpu --out runs/eval_cpu
    foresight-jax eval --model DIR --out runs/eval --set judge.kind=http --set judge.model=gpt-4o-mini \
        --set judge.base_url=https://api.openai.com/v1 --set judge.api_key_env=OPENAI_API_KEY

Keys and defaults: foresight_jax/evals/eval_config.py (suites, n, k, samples, temperature,
retriever.*, judge.*, ...). Sizes: "" (default: the issue's n=200, k=8), "cpu" (a quick look on
a laptop: n=20, k=2, two turns of 128 tokens, no judge).
"""
from foresight_jax.evals import eval_config

SIZES = ("", "default", "cpu")


def get_config(size: str = ""):
  if size not in SIZES:
    raise ValueError(f"configs/eval.py: unknown size {size!r}; use one of {SIZES}")
  cfg = eval_config.default_config()
  if size == "cpu":
    cfg.n, cfg.k, cfg.max_turns, cfg.max_new_tokens, cfg.batch_size = 20, 2, 2, 128, 8
    cfg.judge.kind = "none"
  return cfg
