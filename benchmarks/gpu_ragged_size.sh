#!/bin/bash
# Issue 10: cuDNN's ragged layout runs rows x `ragged_max_segments` sequences (jax's wrapper gives
# the kernel a batch of B*M sequences, softmax statistics [B*M, heads, T]), the unused ones empty.
# Does sizing M to the data pay? Attention fwd+bwd at M = 2..16 (two and five documents a row),
# the GPU tests (the T = 203 padded shape after the padding fix, and M at/above/below a row's
# documents), the Youtu-2B model step on packed rows at M = 8 against 16, and the full trainer at
# M = 8 (its synthetic rows hold 1-5 documents). One device call, by priority:
#   bash benchmarks/gpu_ragged_size.sh   (repository root, wheels in .whl/)
LOG_NAME=ragged_size.jsonl source benchmarks/gpu_common.sh
A="benchmarks/attention.py --min-time 1 --impls cudnn"
step 50 python3 $A --shape 4,4096,16,16,192,128 --docs 2 --max-segments 2,4,8,16
step 50 python3 $A --shape 4,4096,12,2,128 --docs 2 --max-segments 2,4,8,16
step 40 python3 $A --shape 4,4096,16,16,192,128 --docs 5 --max-segments 5,8,16 --packed-only
step 110 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py \
  -k "(equals_reference and ragged and not cudnn_mask) or sized_to_the_documents"
Y="benchmarks/train_step.py --preset youtu_llm_2b --seq 4096 --batch 4 --dtype bfloat16 --no-torch --min-time 2 --packed"
step 80 python3 $Y --ragged-max-segments 8
step 80 python3 $Y --ragged-max-segments 16
youtu_trainer yt_m8 8 110 --config.model.config.ragged_max_segments=8
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
