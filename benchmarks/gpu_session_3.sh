#!/usr/bin/env bash
# Third GPU session: the rest of the zoo under the paper's GPU protocol with torch-compile
# (AMP fp16, batch 2048 halved until it fits). Entries are saved one by one, so a run cut
# short by the time limit keeps what it finished (file marked complete: false).
source "$(dirname "$0")/gpu_env.sh"
BUDGET=${BUDGET:-470}
echo "=== $(date +%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
ZOO=${ZOO:-levit_384,efficientnet_b4,deit_tiny_distilled,efficientnet_b3,levit_128s,efficientnet_b0,levit_192,efficientnet_b2,levit_256,levit_128,deit_small_distilled,efficientnet_b1,graft_r50s2_deits6}
timeout -s INT "$BUDGET" $LB --device cuda --paper --backend torch-compile \
    --model "$ZOO" $FAST --out "$OUT/gpu-paper-compile.json"
echo "=== $(date +%T) exit $?"
