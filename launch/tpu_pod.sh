#!/usr/bin/env bash
# Run a training stage on every worker of a Cloud TPU VM pod slice: one process per host.
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a launch/tpu_pod.sh setup        # once: venv + jax[tpu]
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a launch/tpu_pod.sh \
#       --config configs/wm_amt.py:youtu_llm_2b --config.model.init_from=/mnt/ckpt/Youtu-LLM-2B \
#       --config.workdir=/mnt/shared/runs/wm_amt_2b
#
# No coordinator flags: with --config.distributed.mode=on, jax.distributed.initialize() reads the
# coordinator, process count and process id from the TPU metadata server. Every worker must see
# the same checkout at REPO_DIR, and the workdir must be on storage all workers share (Filestore /
# NFS / a gcsfuse mount): each host writes its own shards of every checkpoint there.
# Preemption / maintenance sends SIGTERM: the trainer checkpoints and exits 0; re-run to resume.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
PROJECT="${PROJECT:-$(gcloud config get-value project 2>/dev/null)}"
REPO_DIR="${REPO_DIR:-\$HOME/foresight_jax}"  # expanded on the workers
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --project "$PROJECT" --worker=all \
    --command "$1"
}
if [[ "${1:-}" == "setup" ]]; then
  ssh_all "cd $REPO_DIR && python3 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]'"
  exit 0
fi
[[ $# -gt 0 ]] || { echo "usage: $0 setup | --config configs/STAGE.py:SIZE [--config.KEY=VALUE ...]" >&2; exit 2; }
# quoted for the remote shell; overrides of --config.* must come after --config itself
args="$(printf '%q ' "$@")"
ssh_all "cd $REPO_DIR && .venv/bin/foresight-jax train $args --config.distributed.mode=on"
