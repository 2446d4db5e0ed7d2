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
