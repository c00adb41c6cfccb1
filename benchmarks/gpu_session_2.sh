#!/usr/bin/env bash
# Second, short GPU session: SDPA attention on CUDA (now the torch backends' default for LeViT),
# channels_last, and torch-compile + CUDA graphs against timm's compiled LeViT.
source "$(dirname "$0")/gpu_env.sh"

step "issue 6: ours (sdpa) vs timm, eager fp16, channels_last, interleaved"
python3 benchmarks/levit_vs_reference.py --device cuda --models levit_256 --backend torch --channels-last \
    --batch-size 256,2048 --rounds 3 --round-s 0.5 --out "$OUT/gpu-vs-timm-eager-cl.json"

step "issue 6: torch-compile + CUDA graphs, ours (sdpa, channels_last)"
$LB --device cuda --model levit_256 --backend torch-compile --cuda-graphs --channels-last \
    --batch-size 256,2048 $FAST --out "$OUT/gpu-compile-graphs-cl.json"

step "issue 6: timm's levit_256 under torch-compile (no CUDA graphs: timm's bias cache breaks them)"
$LB --device cuda --model timm:levit_256 --backend torch-compile --channels-last \
    --batch-size 256 $FAST --out "$OUT/gpu-compile-timm.json"
step "done"
