#!/usr/bin/env bash
# One prepared GPU session (device time is scarce): every GPU check and timing, most important first,
# each step writing its results under $OUT as soon as it ends.  Run from the repository root:
#   OUT=/tmp/gpu bash benchmarks/gpu_session.sh
source "$(dirname "$0")/gpu_env.sh"

step "environment"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__)"

step "CUDA unit tests"
python3 -m pytest -q -p no:cacheprovider tests/test_backends.py -k cuda 2>&1 | tail -3

step "issue 3: torch fp16/fp32 and torch-compile, parity then timing"
$LB --device cuda --model levit_256,efficientnet_b0 --backend torch,torch-compile --precision fp16 \
    --batch-size 256 $FAST --out "$OUT/gpu-backends-fp16.json"
$LB --device cuda --model levit_256,efficientnet_b0 --backend torch --precision fp32 \
    --batch-size 256 $FAST --out "$OUT/gpu-backends-fp32.json"

step "issue 6: our LeViT vs timm, eager fp16, interleaved"
python3 benchmarks/levit_vs_reference.py --device cuda --models levit_256 --backend torch \
    --batch-size 256,2048 --rounds 4 --round-s 0.5 --out "$OUT/gpu-vs-timm-eager.json"

step "issue 6: torch-compile with CUDA graphs, ours and timm's"
$LB --device cuda --model levit_256,timm:levit_256 --backend torch-compile --cuda-graphs \
    --batch-size 256,2048 $FAST --out "$OUT/gpu-compile-graphs.json"

step "issue 7: the zoo under the paper's GPU protocol (AMP fp16, batch 2048 halved until it fits)"
$LB --device cuda --paper --backend torch \
    --model 'levit_128s,levit_128,levit_192,levit_256,levit_384,deit_tiny_distilled,deit_small_distilled,efficientnet_b0,efficientnet_b1,efficientnet_b2,efficientnet_b3,efficientnet_b4,graft_r50s2_deits6' \
    $FAST --out "$OUT/gpu-paper-torch.json"

step "issue 7: torch-compile under the paper protocol, LeViT-256 / EfficientNet-B3 / DeiT-S"
$LB --device cuda --paper --backend torch-compile --model levit_256,efficientnet_b3,deit_small_distilled \
    $FAST --out "$OUT/gpu-paper-compile.json"
step "done"
