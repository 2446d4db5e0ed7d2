#!/bin/bash
# Issue 10's dtype and remat sweep as one device call (BUILD_NOTES, "GPU throughput"): Qwen2.5-1.5B
# at seq 4096 with fp32 vs bf16 params, remat none vs full, the torch peer in the same call, and the
# Youtu-2B MFU with both param dtypes. Run from the repository root with the wheels in .whl/ and
# the torch peer in $PEERS (default .peers/):  bash benchmarks/gpu_dtype_remat.sh
LOG_NAME=sweep.jsonl source benchmarks/gpu_common.sh
Q="benchmarks/train_step.py --preset qwen2_5_1_5b --dtype bfloat16 --no-torch --min-time 2 --seq 4096"
step 60 python3 $Q --batch 2
step 45 python3 "$PEERS/torch_gpu_train.py" --seq 4096 --batch 2 --min-time 2
step 60 python3 $Q --batch 2 --param-dtype bfloat16
Y="benchmarks/train_step.py --preset youtu_llm_2b --seq 4096 --batch 4 --dtype bfloat16 --no-torch --min-time 2"
step 70 python3 $Y --param-dtype bfloat16
step 70 python3 $Y
step 60 python3 $Q --batch 4 --param-dtype bfloat16
step 60 python3 $Q --batch 4 --param-dtype bfloat16 --remat full
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
