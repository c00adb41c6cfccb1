"""Facts about the machine and the libraries a measurement ran on (psutil, py-cpuinfo, torch.cuda)."""
from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from . import allocator
from .emulation import detect_emulation

LIBRARIES = ("torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "numpy", "levit-bench")


def _version(dist: str) -> str | None:
    if dist == "torch":
        import torch

        return torch.__version__  # with its build tag (+cu130, +cpu)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _git_commit() -> str | None:
    """The commit of the checkout this package runs from (None when installed elsewhere)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists() or not shutil.which("git"):
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _gpu() -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    driver = None
    if shutil.which("nvidia-smi"):
        try:
            driver = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            driver = None
    return {
        "name": props.name,
        "count": torch.cuda.device_count(),
        "memory_bytes": int(props.total_memory),
        "capability": f"{props.major}.{props.minor}",
        "driver": driver,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


@functools.lru_cache(maxsize=1)
def _cpu_info() -> dict[str, Any]:
    """The CPU's brand (``brand_raw``) and ``flags``, as py-cpuinfo names them.  Where Linux's
    /proc/cpuinfo names both (x86), from there, as py-cpuinfo also reads them: its own probe runs in a
    child interpreter whose CPUID path sleeps a second to measure the clock, 1.25 s of every command
    and every worker process on the 2-core VM.  Elsewhere (ARM, macOS, Windows), py-cpuinfo."""
    found = _proc_cpuinfo()
    if found is not None:
        return found
    try:
        import cpuinfo

        return cpuinfo.get_cpu_info()
    except Exception:  # noqa: BLE001 - py-cpuinfo probes many sources; any failure means "unknown"
        return {}


def _proc_cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, Any] | None:
    """The first processor's ``model name`` and ``flags`` in ``path``; None where either is missing."""
    facts: dict[str, str] = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if not sep:
                    if facts:  # the blank line after the first processor
                        break
                    continue
                facts.setdefault(key.strip(), value.strip())
    except OSError:
        return None
    if not facts.get("model name") or "flags" not in facts:
        return None
    return {"brand_raw": facts["model name"], "flags": sorted(facts["flags"].split())}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (py-cpuinfo's names; empty where unknown)."""
    return set(_cpu_info().get("flags", []))


def is_arm(arch: str | None) -> bool:
    """Whether ``arch`` (``platform.machine()`` here, or a results file's ``arch``; None: unknown, so
    not ARM) is 64-bit ARM: the default backends and the paper's reference hardware differ there."""
    return (arch or "").lower() in ("aarch64", "arm64")


def physical_cores() -> int:
    """Physical cores (the default thread count of a run)."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def collect() -> dict[str, Any]:
    """Everything a reader needs to know where a number came from."""
    info = _cpu_info()
    freq = psutil.cpu_freq()
    flags = cpu_flags()
    return {
        "cpu": info.get("brand_raw") or platform.processor() or "unknown",
        "arch": platform.machine(),
        "emulated": detect_emulation(),  # "qemu-user" under user-mode emulation: timings are not speed
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "avx512_fp16"}),
        "frequency_mhz": {"current": freq.current, "max": freq.max} if freq else None,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "memory_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "versions": {lib: _version(lib) for lib in LIBRARIES},
        "git_commit": _git_commit(),
        "gpu": _gpu(),
        "allocator": allocator.state(),  # None: glibc's defaults (allocator.steady() was not called)
    }


#: the facts that make two machines' timings incomparable (not the hostname: it changes on every CI
#: runner; not levit-bench's own version or commit: comparing those is what a gate is for)
MACHINE_FACTS = ("cpu", "arch", "cpu_flags", "physical_cores", "logical_cores")
COMPARED_LIBRARIES = tuple(lib for lib in LIBRARIES if lib not in ("levit-bench", "numpy"))


def machine_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """How the machine or libraries of two runs differ, one phrase each (empty: comparable).  A fact
    missing from either record (an older file) is not counted as a difference."""
    out = []
    for key in MACHINE_FACTS:
        if a.get(key) is not None and b.get(key) is not None and a[key] != b[key]:
            out.append(f"{key.replace('_', ' ')} {_show(a[key])} vs {_show(b[key])}")
    ga, gb = (a.get("gpu") or {}).get("name"), (b.get("gpu") or {}).get("name")
    if ga != gb and (a.get("gpu") is not None or b.get("gpu") is not None):
        out.append(f"gpu {ga or 'none'} vs {gb or 'none'}")
    if (alloc := allocator.difference(a.get("allocator"), b.get("allocator"))) is not None:
        out.append(alloc)
    va, vb = a.get("versions") or {}, b.get("versions") or {}
    for lib in COMPARED_LIBRARIES:
        if va.get(lib) != vb.get(lib) and lib in va and lib in vb:
            out.append(f"{lib} {va.get(lib) or 'absent'} vs {vb.get(lib) or 'absent'}")
    return out


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
