#!/bin/bash
# Issue 10, a fourth device call: decode with fused projections against without (`decode.py
# --ab-fusion`, Youtu-2B shape, batch 128 and 1), then where a training step's time goes (the
# model step traced with jax.profiler: kernel time by kind, GPU busy vs wall) at Youtu-2B and
# Qwen2.5-1.5B shape, seq 4096, with the torch peer in the same call, and two probes: cuBLAS for
# every matmul (Triton GEMM fusions off) and a 4 GiB logits budget per loss chunk (4x fewer chunks).
# Last, the cuDNN padding test for a ragged length. By priority, each step under its own limit.
# Run from the repository root with the wheels in .whl/ and the torch peer in $PEERS:
#   bash benchmarks/gpu_train_profile.sh
LOG_NAME=train_profile.jsonl source benchmarks/gpu_common.sh
D="benchmarks/decode.py --preset youtu_llm_2b --dtype bfloat16 --no-torch --hbm-gbps 4800 --min-time 1 --ab-fusion"
step 90 python3 $D --batch 128
step 90 python3 $D --batch 1
Y="benchmarks/train_step.py --preset youtu_llm_2b --seq 4096 --batch 4 --dtype bfloat16 --no-torch --min-time 2"
Q="benchmarks/train_step.py --preset qwen2_5_1_5b --seq 4096 --batch 4 --dtype bfloat16 --no-torch --min-time 2"
step 90 python3 $Y --profile
step 80 python3 $Q --profile
step 60 python3 "$PEERS/torch_gpu_train.py" --seq 4096 --batch 4 --min-time 2
step 70 env XLA_FLAGS=--xla_gpu_enable_triton_gemm=false python3 $Q
step 70 python3 $Q --loss-chunk-gib 4
step 80 env XLA_FLAGS=--xla_gpu_enable_triton_gemm=false python3 $Y
step 150 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -k "cudnn and ragged"
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
