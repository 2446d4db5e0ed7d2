#!/bin/bash
# Issue 10: packed rows in cuDNN's ragged layout (attention_impl "cudnn": one sequence per document,
# `kernels.segment_runs`) against the segment mask as a [B, 1, T, T] bias ("cudnn_mask", the earlier
# path). Correctness on the GPU first, then attention alone, the Youtu-2B model step on packed rows
# (two documents a row) both ways, and the full trainer (packed synthetic rows of 1-5 documents)
# both ways, each pair in this one call.   bash benchmarks/gpu_ragged.sh   (repository root, wheels in .whl/)
# The seventeenth session ran it as two calls (BUILD_NOTES, "Packed rows in cuDNN's ragged layout").
LOG_NAME=ragged.jsonl source benchmarks/gpu_common.sh
step 60 python3 benchmarks/ragged_probe.py
step 200 python3 -m pytest -q tests/test_kernels.py -k "cudnn or segment_runs"
A="benchmarks/attention.py --min-time 1 --impls cudnn,cudnn_mask"
step 50 python3 $A --shape 4,4096,16,16,192,128
step 50 python3 $A --shape 4,4096,12,2,128
Y="benchmarks/train_step.py --preset youtu_llm_2b --seq 4096 --batch 4 --dtype bfloat16 --no-torch --min-time 2 --packed"
step 90 python3 $Y --attention cudnn
step 90 python3 $Y --attention cudnn_mask
youtu_trainer yt_ragged 8 110
youtu_trainer yt_mask 8 110 --config.model.config.attention_impl=cudnn_mask
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
