#!/usr/bin/env bash
# levit-bench on aarch64 under user-mode qemu, parity included: see benchmarks/arm/README.md.
#
#   sudo benchmarks/arm/run_emulated.sh [--out-dir DIR] [--name NAME] [--rebuild] [-- extra levit-bench options]
#
# Builds (once, cached) a Debian bookworm arm64 rootfs with the pinned aarch64 wheels, copies this
# working tree's levit_bench into it, runs levit-bench there on levit_128s and efficientnet_b0 with
# TorchScript and ONNX Runtime at batch 1, and writes DIR/NAME.json (the results) and DIR/NAME.log
# (this whole transcript).  Defaults: DIR = docs/perf, NAME = arm-emulated-<UTC date>.
# Needs root (binfmt_misc, chroot, mounts), apt and pip access to Debian's and PyPI's registries.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT_DIR="$REPO/docs/perf"
NAME="arm-emulated-$(date -u +%F)"
REBUILD=0
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out-dir) OUT_DIR="$2"; shift 2 ;;
        --name) NAME="$2"; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

CACHE="${LEVIT_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/levit-bench}"
ROOT="$CACHE/arm-rootfs"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PY_VER=3.11                                  # bookworm's python3; the wheels are cp311
SITE=/opt/levit-bench/site                   # pinned wheels, inside the rootfs
APP=/opt/levit-bench/app                     # levit_bench from this working tree, inside the rootfs
GUEST_CACHE=/var/cache/levit-bench           # levit-bench's export cache, inside the rootfs (kept)
MODELS="levit_128s,efficientnet_b0"
BACKENDS="torchscript,onnxruntime"
# what decides the base system; PINNED.txt decides the packages (their own stamp)
BASE_RECIPE="v1 $SUITE arm64 minbase python3,python3-venv dpkg-deb-x"

mkdir -p "$OUT_DIR" "$CACHE"
LOG="$OUT_DIR/$NAME.log"
JSON="$OUT_DIR/$NAME.json"
BUILD_LOG="$CACHE/arm-rootfs.build.log"
exec > >(tee "$LOG") 2>&1
T0=$(date +%s)
say() { printf '[%s +%4ss] %s\n' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - T0 ))" "$*"; }
die() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (binfmt_misc, chroot and mounts need it)"
[ "$(uname -m)" != aarch64 ] || say "note: this machine is aarch64 already; the rootfs runs natively, not emulated"

say "levit-bench aarch64 check under user-mode emulation"
say "host: $(uname -srm), $(nproc) cores; working tree $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] && echo ' (with uncommitted changes)')"
say "cache: $CACHE"

# ---- host tools and binfmt_misc --------------------------------------------------------------
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]} (apt-get)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } >>"$BUILD_LOG" 2>&1 \
        || die "apt-get install ${need[*]} failed (see $BUILD_LOG)"
fi
if [ "$(uname -m)" != aarch64 ]; then
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 >>"$BUILD_LOG" 2>&1 || true
    [ "$(head -1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null)" = enabled ] \
        || die "binfmt_misc has no enabled qemu-aarch64 entry (update-binfmts --enable qemu-aarch64)"
    grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
        || die "qemu-aarch64 is registered without the F (fix-binary) flag: a chroot could not find it"
    say "$(qemu-aarch64-static --version | head -1), binfmt_misc: qemu-aarch64 enabled (flags $(sed -n 's/^flags: //p' /proc/sys/fs/binfmt_misc/qemu-aarch64))"
fi

# ---- base rootfs: debootstrap's first stage, the .debs unpacked on the host --------------------
base_stamp=$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-16)
t=$(date +%s)
if [ "$REBUILD" = 1 ] || [ "$(cat "$ROOT/.stamp-base" 2>/dev/null)" != "$base_stamp" ]; then
    say "building the arm64 rootfs ($SUITE, minbase + python3) in $ROOT"
    rm -rf "$ROOT" "$ROOT.tmp"
    debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv \
        "$SUITE" "$ROOT.tmp" "$MIRROR" >>"$BUILD_LOG" 2>&1 || die "debootstrap failed (see $BUILD_LOG)"
    # The second stage would run dpkg emulated (about 25 minutes); unpacking is all a Python needs.
    for deb in "$ROOT.tmp"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$ROOT.tmp" || die "dpkg-deb -x $deb failed"
    done
    [ -L "$ROOT.tmp/bin" ] || [ -x "$ROOT.tmp/bin/sh" ] || die "the unpacked rootfs has no /bin"
    rm -f "$ROOT.tmp"/var/cache/apt/archives/*.deb
    mkdir -p "$ROOT.tmp/proc" "$ROOT.tmp/sys" "$ROOT.tmp/dev" "$ROOT.tmp/tmp" "$ROOT.tmp/root"
    chmod 1777 "$ROOT.tmp/tmp"
    echo "$base_stamp" > "$ROOT.tmp/.stamp-base"
    mv "$ROOT.tmp" "$ROOT"
    say "rootfs built in $(( $(date +%s) - t )) s ($(du -sh "$ROOT" | cut -f1))"
else
    say "rootfs: reused ($ROOT)"
fi
[ -x "$ROOT/usr/bin/python$PY_VER" ] || die "the rootfs has no python$PY_VER (the wheels are cp${PY_VER/./})"

# ---- pinned aarch64 wheels, installed from the host -------------------------------------------
pinned_stamp=$(grep -v '^\s*#' "$HERE/PINNED.txt" | sed '/^\s*$/d' | sha256sum | cut -c1-16)
t=$(date +%s)
if [ "$REBUILD" = 1 ] || [ "$(cat "$ROOT/.stamp-pinned" 2>/dev/null)" != "$pinned_stamp" ]; then
    say "installing the pinned aarch64 wheels (benchmarks/arm/PINNED.txt, $(grep -c '==' "$HERE/PINNED.txt") packages) into $SITE"
    rm -rf "$ROOT$SITE" "$ROOT$SITE.tmp" "$ROOT/.stamp-pinned"
    python3 -m pip install --no-deps --target "$ROOT$SITE.tmp" \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
        --python-version "$PY_VER" --implementation cp --abi "cp${PY_VER/./}" --only-binary=:all: \
        -r "$HERE/PINNED.txt" >>"$BUILD_LOG" 2>&1 || die "pip install of PINNED.txt failed (see $BUILD_LOG)"
    mv "$ROOT$SITE.tmp" "$ROOT$SITE"
    echo "$pinned_stamp" > "$ROOT/.stamp-pinned"
    say "wheels installed in $(( $(date +%s) - t )) s ($(du -sh "$ROOT$SITE" | cut -f1))"
else
    say "wheels: reused (PINNED.txt unchanged, stamp $pinned_stamp)"
fi

# ---- levit-bench from this working tree --------------------------------------------------------
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/levit_bench" "$src/"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$ROOT$APP"
python3 -m pip install --no-deps --no-build-isolation --no-index --target "$ROOT$APP" "$src" >>"$BUILD_LOG" 2>&1 \
    || die "installing levit-bench from the working tree failed (see $BUILD_LOG)"
say "levit-bench installed from the working tree into $APP"

# An aarch64-looking /proc/cpuinfo: qemu 7.2 shows the guest the host's x86 one, on which
# ONNX Runtime's cpuinfo library crashes.  One block per host CPU, Neoverse-N1-like (ARM's IDs, so
# ONNX Runtime knows the vendor; no more features than qemu's emulated CPU has), with a "model name"
# line that py-cpuinfo reads first: the results' system.cpu says what really ran.
cpuinfo="$ROOT/etc/levit-bench-cpuinfo"
host_cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
for ((i = 0; i < $(nproc); i++)); do
    printf 'processor\t: %d\nmodel name\t: emulated aarch64 (qemu-user on %s)\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i" "${host_cpu:-$(uname -m)}"
done > "$cpuinfo"

# Everything inside runs in a private mount namespace: /proc (with that cpuinfo), /sys and /dev
# are mounted for the chroot only and vanish with it, whatever happens.
guest() {
    unshare --mount --propagation private -- /bin/bash -c '
        set -e
        root="$1"; shift
        mount -t proc proc "$root/proc"
        mount --bind "$root/etc/levit-bench-cpuinfo" "$root/proc/cpuinfo"
        mount -t sysfs sysfs "$root/sys"
        mount --bind /dev "$root/dev"
        exec nice -n 15 chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
            LANG=C.UTF-8 TERM=dumb COLUMNS=150 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
            PYTHONPATH="'"$APP:$SITE"'" LEVIT_BENCH_CACHE="'"$GUEST_CACHE"'" "$@"
    ' guest "$ROOT" "$@"
}

say "probe inside the chroot (no torch import):"
guest /usr/bin/python3 -c '
import importlib.util, platform, sys
from importlib import metadata
spec = importlib.util.spec_from_file_location("emulation", "'"$APP"'/levit_bench/emulation.py")
em = importlib.util.module_from_spec(spec); spec.loader.exec_module(em)  # not the package: no torch import
detect_emulation, _kernel_exe, _kernel_arch = em.detect_emulation, em._kernel_exe, em._kernel_arch
print(f"  machine {platform.machine()}, python {platform.python_version()} ({sys.executable}), libc {platform.libc_ver()[1]}")
print(f"  detect_emulation() = {detect_emulation()!r}  (kernel says exe {_kernel_exe()}, kernel arch {_kernel_arch()})")
vs = []
for d in ("torch", "torchvision", "timm", "onnx", "onnxscript", "onnxruntime", "numpy", "scipy", "openvino", "levit-bench"):
    try:
        vs.append(f"{d} {metadata.version(d)}")
    except metadata.PackageNotFoundError:
        vs.append(f"{d} (not installed)")
print("  " + ", ".join(vs))
' || die "python3 does not start in the rootfs"
SETUP_S=$(( $(date +%s) - T0 ))
say "set-up done in ${SETUP_S} s"

# ---- the run -------------------------------------------------------------------------------
# python3 -m levit_bench.cli, or main() itself when the CLI module cannot be run as a script
if [ -f "$ROOT$APP/levit_bench/cli.py" ] || [ -f "$ROOT$APP/levit_bench/cli/__main__.py" ]; then
    CLI=(/usr/bin/python3 -m levit_bench.cli)
else
    CLI=(/usr/bin/python3 -c 'import sys; from levit_bench.cli import main; sys.exit(main())')
fi
GUEST_JSON=/tmp/levit-bench-arm.json
rm -f "$ROOT$GUEST_JSON"
ARGS=(--device cpu --model "$MODELS" --batch-size 1 --backend "$BACKENDS"
      --min-time 1 --warmup 0 --min-calls 3 --out "$GUEST_JSON" "${EXTRA[@]}")
say "running (emulated; timings are NOT speed): levit-bench ${ARGS[*]}"
t=$(date +%s)
set +e
guest "${CLI[@]}" "${ARGS[@]}"
rc=$?
set -e
RUN_S=$(( $(date +%s) - t ))
say "levit-bench exited $rc after ${RUN_S} s"
[ -s "$ROOT$GUEST_JSON" ] || die "no results file was written"
cp "$ROOT$GUEST_JSON" "$JSON"

# Backends that cannot run here must be reported skipped, not crash the CLI.
SKIP_JSON=/tmp/levit-bench-arm-skips.json
rm -f "$ROOT$SKIP_JSON"
say "checking that the backends missing here are reported skipped: --backend openvino,torch-compile"
t=$(date +%s)
set +e
guest "${CLI[@]}" --device cpu --model levit_128s --batch-size 1 --backend openvino,torch-compile \
    --min-time 1 --warmup 0 --min-calls 3 --out "$SKIP_JSON" --quiet
skip_rc=$?
set -e
say "exited $skip_rc after $(( $(date +%s) - t )) s"

# ---- summary from the results (host Python: no torch needed) --------------------------------
set +e
python3 - "$JSON" "$ROOT$SKIP_JSON" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["system"]
print(f"\nsystem.arch = {s.get('arch')!r}, system.emulated = {s.get('emulated')!r}, python {s.get('python')}, os {s.get('os')}")
print("versions: " + ", ".join(f"{k} {v}" for k, v in s.get("versions", {}).items() if v))
print(f"complete: {d.get('complete')}")
print(f"\n{'model':<17}{'backend':<13}{'status':<9}{'max|diff|':>11}{'max rel':>11}{'cosine':>20}{'top-1':>7}  parity  (emulated ms/call, not speed)")
ok = True
for e in d["results"]:
    p = e.get("parity") or {}
    f = lambda k, fmt: format(p[k], fmt) if isinstance(p.get(k), (int, float)) else "-"
    t = e.get("time_s") or {}
    ms = f"{1000 * t['median']:.0f}" if t.get("median") else "-"
    print(f"{e['model']:<17}{e['backend']:<13}{e['status']:<9}{f('max_abs_diff', '.2e'):>11}{f('max_rel_diff', '.2e'):>11}"
          f"{f('cosine', '.15f'):>20}{f('top1_agreement', '.2f'):>7}  {'ok' if p.get('ok') else 'FAILED'}  ({ms})"
          + (f"\n    reason: {e['reason']}" if e.get("reason") else ""))
    ok &= e["status"] == "ok" and bool(p.get("ok"))
want = {(m, b) for m in ("levit_128s", "efficientnet_b0") for b in ("torchscript", "onnxruntime")}
have = {(e["model"], e["backend"]) for e in d["results"] if e["status"] == "ok" and (e.get("parity") or {}).get("ok")}
skipped = False
try:
    sk = json.load(open(sys.argv[2]))
    print("\nbackends missing here (must be skipped with a reason, not crash):")
    for e in sk["results"]:
        print(f"  {e['model']} {e['backend']}: {e['status']} - {e['reason']}")
    skipped = bool(sk["results"]) and all(e["status"] == "skipped" and e["reason"] for e in sk["results"])
except (OSError, ValueError, KeyError) as exc:
    print(f"\nbackends missing here: no results ({exc})")
verdict = ok and want <= have and s.get("arch") == "aarch64" and bool(s.get("emulated")) and skipped
print("\nVERDICT: " + ("PASS - every model x backend passed parity on aarch64 (emulated)" if verdict else "FAIL"))
sys.exit(0 if verdict else 1)
EOF
verdict=$?
say "set-up ${SETUP_S} s, run ${RUN_S} s, total $(( $(date +%s) - T0 )) s; results: $JSON, log: $LOG"
exit $verdict
