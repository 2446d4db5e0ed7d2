#!/bin/bash
# Issue 10: MLA attention (qk 192, v 128) in one cuDNN call instead of V zero-padded to 192
# (kernels._cudnn_two_head_dims), after the train profile showed cuDNN's backward at head dim 192
# taking 20% of a Youtu-2B step: the attention micro-benchmark at the Youtu shape, the Youtu-2B
# train step traced, then the GPU attention tests.  bash benchmarks/gpu_mla_cudnn.sh
LOG_NAME=mla.jsonl source benchmarks/gpu_common.sh
step 40 python3 benchmarks/attention.py --shape 4,4096,16,16,192,128 --impls cudnn --min-time 1
step 70 python3 benchmarks/train_step.py --preset youtu_llm_2b --seq 4096 --batch 4 --dtype bfloat16 --no-torch --min-time 2 --profile
step 80 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -k "cudnn"
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
