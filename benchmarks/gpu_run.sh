#!/bin/bash
# The GPU-throughput measurements of BUILD_NOTES ("GPU throughput (issue 10)") as one device call:
# correctness of the GPU attention paths first, then the benchmarks by priority, each under its own
# time limit, JSON lines appended to $OUT/log.jsonl. Run from the repository root on the device with
# the wheels carried in .whl/ and the torch peer copied to $PEERS (default .peers/):
#   bash benchmarks/gpu_run.sh
source benchmarks/gpu_common.sh
step 120 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -k "cudnn or auto"
Q="benchmarks/train_step.py --preset qwen2_5_1_5b --dtype bfloat16 --no-torch --min-time 3"
step 110 python3 $Q --seq 4096 --batch 4
step 70 python3 "$PEERS/torch_gpu_train.py" --seq 4096 --batch 4 --min-time 3
step 110 python3 benchmarks/train_step.py --preset youtu_llm_2b --seq 4096 --batch 4 --dtype bfloat16 --no-torch --min-time 3
D="benchmarks/decode.py --preset youtu_llm_2b --dtype bfloat16 --no-torch --hbm-gbps 4800 --min-time 2"
step 60 python3 $D --batch 128
step 60 python3 $D --batch 1
step 70 python3 benchmarks/decode_kernels.py --preset youtu_llm_2b --batch 128 --dtype bfloat16
step 30 python3 benchmarks/attention.py --shape 4,4096,12,2,128 --impls cudnn --min-time 1
step 30 python3 benchmarks/attention.py --shape 4,4096,16,16,192,128 --impls cudnn --min-time 1
step 80 python3 $Q --seq 1024 --batch 16
step 50 python3 "$PEERS/torch_gpu_train.py" --seq 1024 --batch 16 --min-time 3
step 80 python3 $Q --seq 4096 --batch 2 --min-time 1
step 80 python3 $Q --seq 4096 --batch 4 --packed
step 80 python3 $Q --seq 4096 --batch 4 --plain-loss
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
