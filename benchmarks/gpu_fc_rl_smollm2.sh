#!/bin/bash
# Issue 9 on a GPU: the fused FC-RL step (sampling, in-graph search, rewards, update in one jitted
# call) at SmolLM2-135M shape from a random init (no checkpoint travels), bf16 compute: 8 prompts x
# 4 samples, 2 turns of <= 128 tokens, 6 steps; its metrics.jsonl (step time, completion tokens/s).
#   bash benchmarks/gpu_fc_rl_smollm2.sh   (repository root, wheels in .whl/)
LOG_NAME=fc_rl.jsonl source benchmarks/gpu_common.sh
step 200 python3 -m foresight_jax.cli train --config configs/fc_rl.py:smollm2_135m --config.model.init_from= \
  --config.data.tokenizer=train_sentencepiece --config.data.vocab_size=1024 --config.train.steps=6 \
  --config.train.checkpoint_every=100000 --config.train.export_hf=false --config.train.tensorboard=false \
  --config.train.progress=false --config.rl.tasks=64 --config.rl.n_worlds=8 --config.rl.prompts_per_step=8 \
  --config.rl.group_size=4 --config.rl.max_turns=2 --config.rl.max_turn_tokens=128 --config.workdir=/tmp/rl_smol
cp /tmp/rl_smol/metrics.jsonl "$OUT/fc_rl_smollm2_metrics.jsonl"
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
