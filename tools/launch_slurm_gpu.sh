#!/usr/bin/env bash
# Run one SFT stage on a SLURM GPU cluster: one process per node, each driving its node's GPUs.
#
#   sbatch --nodes=2 --gpus-per-node=8 tools/launch_slurm_gpu.sh configs/stage1_3b.py \
#       --config.mesh.fsdp=16 --config.mesh.data=1
#   (one node, one GPU: sbatch --nodes=1 --gpus-per-node=1 tools/launch_slurm_gpu.sh configs/stage1_3b.py)
#
# jax.distributed reads SLURM's variables (job id, node list, task id) itself; the trainer
# initialises it whenever the job has more than one task (LADDER_JAX_MULTIHOST=1 forces it).
# Each process reads its own shard of the data. The repository, data, base model and workdir
# must be on a filesystem all nodes share. Preemption / requeue: SLURM sends SIGTERM, the
# trainer saves and exits; `scontrol requeue` or resubmitting resumes from the checkpoint.
#SBATCH --job-name=ladder_sft
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output=runs/slurm-%j.out
set -euo pipefail
CONFIG=${1:?usage: sbatch [--nodes=N --gpus-per-node=G] $0 CONFIG [--config.key=value ...]}
shift
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
export LADDER_JAX_MULTIHOST=$([ "${SLURM_NTASKS:-1}" -gt 1 ] && echo 1 || echo 0)
# XLA on GPU: let one process use its node's memory fully, overlap collectives with compute.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
srun --kill-on-bad-exit=1 python -m ladder_jax.train --config "$CONFIG" "$@"
