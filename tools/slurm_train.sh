#!/usr/bin/env bash
# Training under Slurm: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py args...]
# From the environment: GPUS (processes in all, one per GPU; default 8), GPUS_PER_NODE (8; 0 on
# a CPU partition: the processes are gloo tasks, TASKS_PER_NODE of them a node, default all on
# one), CPUS_PER_TASK (5), SRUN_ARGS (extra srun options), PYTHON (python).
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
if [ "$GPUS_PER_NODE" -gt 0 ]; then
    RESOURCES=(--gres=gpu:"$GPUS_PER_NODE" --ntasks-per-node="$GPUS_PER_NODE")
else
    RESOURCES=(--ntasks-per-node="${TASKS_PER_NODE:-$GPUS}")
fi
# shellcheck disable=SC2086  # SRUN_ARGS holds several options
exec srun -p "$PARTITION" --job-name="$JOB_NAME" "${RESOURCES[@]}" --ntasks="$GPUS" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$(dirname "$0")/train.py" "$CONFIG" --launcher slurm "$@"
