#!/bin/bash
# Issue 10, after the train profile (gpu_train_profile.sh): the LM head's backward GEMMs in bf16
# (transformer._logits_f32) and the logits budget per loss chunk (1 GiB default vs 2 and 4), at
# Qwen2.5-1.5B and Youtu-2B shape, the torch peer in the same call at both Qwen shapes; the memory
# row of the issue (batch 2); decode with the default decode_fusion (None: fused on a GPU).
#   bash benchmarks/gpu_lm_head_bf16.sh   (repository root, wheels in .whl/, torch peer in $PEERS)
LOG_NAME=head_bf16.jsonl source benchmarks/gpu_common.sh
Q="benchmarks/train_step.py --preset qwen2_5_1_5b --dtype bfloat16 --no-torch --min-time 2 --seq 4096"
Y="benchmarks/train_step.py --preset youtu_llm_2b --seq 4096 --batch 4 --dtype bfloat16 --no-torch --min-time 2"
step 70 python3 $Q --batch 4 --profile
step 60 python3 "$PEERS/torch_gpu_train.py" --seq 4096 --batch 4 --min-time 2
step 50 python3 $Q --batch 4 --loss-chunk-gib 2
step 50 python3 $Q --batch 4 --loss-chunk-gib 4
step 80 python3 $Y --profile
step 60 python3 $Y --loss-chunk-gib 4
step 50 python3 $Q --batch 2 --min-time 1
step 50 python3 benchmarks/train_step.py --preset qwen2_5_1_5b --dtype bfloat16 --no-torch --min-time 2 --seq 1024 --batch 16
step 50 python3 "$PEERS/torch_gpu_train.py" --seq 1024 --batch 16 --min-time 2
step 60 python3 benchmarks/decode.py --preset youtu_llm_2b --dtype bfloat16 --no-torch --hbm-gbps 4800 --min-time 1 --batch 128
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
