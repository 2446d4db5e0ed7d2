#!/bin/bash
# One device call (issues 10 and 9): (1) Youtu-2B decode (bf16, 32 + 128 tokens) with XLA's
# command buffers (CUDA graphs) as shipped and extended to while-loop bodies
# (WHILE, CONDITIONAL, graphs of any size): a third of a decode step was the GPU idle between
# ~1,000 kernels (BUILD_NOTES "Decode profile"); (2) the fused FC-RL step at SmolLM2-135M shape,
# now logging the whole step's MFU (rollout + update model FLOPs); (3) the same at Youtu-2B shape
# (random init, scanned layers to bound compile time).  bash benchmarks/gpu_cmdbuf_rl.sh
LOG_NAME=cmdbuf_rl.jsonl source benchmarks/gpu_common.sh
D="benchmarks/decode.py --preset youtu_llm_2b --dtype bfloat16 --no-torch --hbm-gbps 4800 --min-time 2"
WHILE_CB="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL --xla_gpu_graph_min_graph_size=1"
step 70 python3 $D --batch 128
step 70 env XLA_FLAGS="$WHILE_CB" python3 $D --batch 128
step 70 python3 $D --batch 1
step 70 env XLA_FLAGS="$WHILE_CB" python3 $D --batch 1
RL="--config.model.init_from= --config.data.tokenizer=train_sentencepiece --config.data.vocab_size=1024
  --config.train.checkpoint_every=100000 --config.train.export_hf=false --config.train.tensorboard=false
  --config.train.progress=false --config.rl.tasks=64 --config.rl.n_worlds=8 --config.rl.prompts_per_step=8
  --config.rl.group_size=4 --config.rl.max_turns=2 --config.rl.max_turn_tokens=128"
step 170 python3 -m foresight_jax.cli train --config configs/fc_rl.py:smollm2_135m $RL --config.train.steps=6 \
  --config.workdir=/tmp/rl_smol
cp /tmp/rl_smol/metrics.jsonl "$OUT/fc_rl_smollm2_metrics.jsonl"
step 200 python3 -m foresight_jax.cli train --config configs/fc_rl.py:youtu_llm_2b $RL --config.train.steps=4 \
  --config.model.config.scan_layers=true --config.workdir=/tmp/rl_youtu
cp /tmp/rl_youtu/metrics.jsonl "$OUT/fc_rl_youtu_metrics.jsonl"; rm -rf /tmp/rl_youtu
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
