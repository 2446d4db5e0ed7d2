#!/bin/bash
# Issue 10's decode profile as one short device call: GPU busy time vs wall time per decode step and
# kernel time by kind (benchmarks/decode_profile.py), Youtu-2B shape, bf16, batch 1 and 128, and
# batch 1 again with XLA's Triton GEMM fusions off (cuBLAS for every matmul); then decode with
# fused projections against without (`decode.py --ab-fusion`). Run from the
# repository root with the wheels in .whl/:  bash benchmarks/gpu_decode_profile.sh
LOG_NAME=decode_profile.jsonl source benchmarks/gpu_common.sh
P="benchmarks/decode_profile.py --preset youtu_llm_2b --dtype bfloat16 --new-tokens 32"
step 55 python3 $P --batch 1
step 55 python3 $P --batch 128
step 55 env XLA_FLAGS=--xla_gpu_enable_triton_gemm=false python3 $P --batch 1
# fused decode projections (cfg.decode_fusion) against the declared ones, interleaved in one process
D="benchmarks/decode.py --preset youtu_llm_2b --dtype bfloat16 --no-torch --hbm-gbps 4800 --min-time 1 --ab-fusion"
step 90 python3 $D --batch 1
step 90 python3 $D --batch 128
echo "=== done [$(( $(date +%s) - T0 ))s]" >> "$OUT/steps.txt"
