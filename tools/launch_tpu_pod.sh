#!/usr/bin/env bash
# Run one SFT stage on every worker of a Cloud TPU pod slice (one process per host).
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a tools/launch_tpu_pod.sh configs/stage1_3b.py \
#       --config.mesh.fsdp=-1 --config.mesh.data=1 --config.init_from=gs-mounted/Qwen2.5-VL-3B-Instruct
#
# Every worker runs the same command; jax.distributed finds its peers from the TPU metadata
# (LADDER_JAX_MULTIHOST=1 tells the trainer to initialise it) and each host reads its own shard
# of the data. The repository, the data and the base model must be at the same paths on every
# worker (a shared filesystem / gcsfuse mount, or copied beforehand with --setup). The workdir
# (checkpoints) must be shared too: orbax writes one checkpoint from all hosts together.
# Preemption: the trainer saves on SIGTERM; rerun the same command to resume.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
CONFIG=${1:?usage: TPU_NAME=.. ZONE=.. $0 CONFIG [--config.key=value ...]}
shift
REPO_DIR=${REPO_DIR:-'~/ladder_jax'}
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
SETUP=${SETUP:-}  # e.g. "pip install -e .[tpu]" on a fresh slice
ARGS=$(printf ' %q' "$@")
CMD="cd $REPO_DIR && ${SETUP:+$SETUP &&} LADDER_JAX_MULTIHOST=1 python -m ladder_jax.train --config $CONFIG$ARGS"
echo "[launch_tpu_pod] $TPU_NAME ($ZONE), all workers: $CMD"
exec gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" $PROJECT_FLAG --worker=all --command "$CMD"
