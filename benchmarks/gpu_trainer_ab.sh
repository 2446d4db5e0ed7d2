#!/bin/bash
# Issue 10, the follow-up call to gpu_unroll_trainer.sh, whose full-trainer run with unrolled layers
# AND bf16 parameter copies (train.cast_params) was 40% slower than the default: the two apart, and
# the model step on packed rows (two documents a row: what the trainer feeds cuDNN) with scan and
# unrolled layers.   bash benchmarks/gpu_trainer_ab.sh   (repository root, wheels in .whl/)
LOG_NAME=trainer_ab.jsonl source benchmarks/gpu_common.sh
Y="benchmarks/train_step.py --preset youtu_llm_2b --seq 4096 --batch 4 --dtype bfloat16 --no-torch --min-time 2 --packed"
youtu_trainer yt_unroll 8 110 --config.model.config.scan_layers=false
step 60 python3 $Y --layers scan
step 90 python3 $Y --layers unroll
youtu_trainer yt_cast 8 110 --config.model.config.scan_layers=true --config.train.cast_params=true
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
