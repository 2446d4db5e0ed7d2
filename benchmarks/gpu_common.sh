# Sourced by the device scripts (gpu_*.sh): installs the carried py3.12 wheels (.whl/), sets the
# environment, and defines `step LIMIT CMD...`, which runs CMD under its own time limit, appends its
# stdout (JSON lines) to $L and its stderr to $OUT/err.txt, and logs start time and exit code.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.92
OUT=${OUT:-/tmp/gpu_run}; PEERS=${PEERS:-.peers}; mkdir -p "$OUT"
L=$OUT/${LOG_NAME:-log.jsonl}
T0=$(date +%s)
step() { local lim=$1; shift; echo "=== [$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/steps.txt"
  timeout "$lim" "$@" 2>>"$OUT/err.txt" | tee -a "$L"; echo "rc=${PIPESTATUS[0]}" >> "$OUT/steps.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
# The full trainer at Youtu-2B shape from a random init (packed synthetic trajectories, a 512-piece
# sentencepiece, Youtu's 128,256-row vocabulary, batch 4 x seq 4096, remat none):
# `youtu_trainer NAME STEPS LIMIT [--config.KEY=VALUE ...]` copies its metrics to $OUT/trainer_NAME.jsonl
# and removes the workdir (each final checkpoint is 24 GB of the device's 64 GiB disk).
youtu_trainer() { local name=$1 steps=$2 lim=$3; shift 3
  step "$lim" python3 -m foresight_jax.cli train --config configs/wm_amt.py:youtu_llm_2b \
    --config.model.init_from= --config.data.tokenizer=train_sentencepiece --config.data.synthetic=1024 \
    --config.data.batch_size=4 --config.train.remat=none --config.train.steps="$steps" \
    --config.train.checkpoint_every=100000 --config.train.export_hf=false --config.train.tensorboard=false \
    --config.train.progress=false --config.workdir="/tmp/$name" "$@"
  cp "/tmp/$name/metrics.jsonl" "$OUT/trainer_$name.jsonl"; rm -rf "/tmp/$name"; }
