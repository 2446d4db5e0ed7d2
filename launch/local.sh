#!/usr/bin/env bash
# Run a foresight-jax command with N forced host (CPU) devices, e.g. to try a mesh layout:
#   launch/local.sh 8 generate --prompt "Hi" --mesh data=2,fsdp=2,tensor=2
set -euo pipefail
n="${1:?usage: launch/local.sh NUM_DEVICES COMMAND [ARGS...]}"
shift
here="$(cd "$(dirname "$0")/.." && pwd)"
export XLA_FLAGS="--xla_force_host_platform_device_count=${n} ${XLA_FLAGS:-}"
exec "${here}/.venv/bin/foresight-jax" "$@"
