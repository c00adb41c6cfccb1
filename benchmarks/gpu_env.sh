# Shared set-up of the GPU session scripts (sourced, not run): the project importable without an
# install, no progress bars in logs, an export cache and an output folder.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 LEVIT_BENCH_NO_PROGRESS=1 LEVIT_BENCH_CACHE=${LEVIT_BENCH_CACHE:-/tmp/lbcache}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
LB="python3 -m levit_bench.cli"
FAST="--warmup 0.5 --min-time 1"
step() { echo; echo "=== $(date +%T) $*"; }
