#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG [train.py args...]
# From the environment: GPUS (processes per node, default 8), NNODES (1), NODE_RANK (0),
# PORT (29500), MASTER_ADDR (127.0.0.1), PYTHON (python). On a machine without CUDA the
# processes train on CPUs with the gloo backend.
set -euo pipefail
CONFIG=$1
shift
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="${GPUS:-8}" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "$@"
