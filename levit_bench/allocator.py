"""A steady heap for timing: glibc's malloc told to keep large blocks on its heap.

By default glibc serves a request above its *mmap threshold* with a fresh ``mmap`` (and returns it to
the kernel on free), and raises that threshold dynamically each time such a block is freed.  Which
of a model's activation buffers end up mmapped, and so page-faulted and zeroed anew on every call,
then depends on the allocation history of the process: on the 2026-12-03 VM six identical workers
timing levit_128s (batch 16, 1 thread) ran at 213-316 ms a call, each at its own speed for all of
its rounds (a 1.48x spread, bimodal), and the same six with the threshold fixed high and the heap
never trimmed at 212-223 ms (docs/measurement.md, "Where the per-process offset came from").

:func:`steady` fixes both thresholds once per process (``mallopt``: setting them also turns the
dynamic adjustment off), so every process of a run reuses its heap the same way.  A user who sets
glibc's own knobs (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or those tunables in
``GLIBC_TUNABLES``) keeps them; ``LEVIT_BENCH_ALLOCATOR=as-found`` leaves glibc's defaults (to time
a process as an application would run it, or to measure what this changes:
``benchmarks/allocator_processes.py``).  What was done is recorded with every run (``sysinfo.collect()``'s
``allocator``), and runs made under different allocator settings are not compared silently.
"""
from __future__ import annotations

import ctypes
import os
import platform
from typing import Any

#: mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: requests below this come from the heap: every activation of the zoo's models at the batch sizes run
MMAP_THRESHOLD = 1 << 30
#: free memory at the top of the heap is kept up to this (the largest int mallopt takes): never trimmed
TRIM_THRESHOLD = 2**31 - 1
#: glibc's own knobs: when the user set one, the allocator is theirs
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")
#: ``as-found``: leave the allocator as glibc sets it
OPT_OUT_ENV = "LEVIT_BENCH_ALLOCATOR"

_state: dict[str, Any] | None = None


def _users_own() -> list[str]:
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return [k for k in ENVIRONMENT if k in os.environ] + [t for t in TUNABLES if t in tunables]


def steady() -> dict[str, Any]:
    """Fix glibc's mmap and trim thresholds for this process (once; later calls return the same
    record): ``{"library", "steady", "mmap_threshold", "trim_threshold"}`` or, when nothing was set,
    ``steady`` false and the ``reason``."""
    global _state
    if _state is not None:
        return _state
    name, version = platform.libc_ver()
    record: dict[str, Any] = {"library": f"{name} {version}".strip() or "unknown", "steady": False}
    own = _users_own()
    if os.environ.get(OPT_OUT_ENV) == "as-found":
        record["reason"] = f"{OPT_OUT_ENV}=as-found: glibc's defaults"
    elif name != "glibc":
        record["reason"] = "not glibc: the allocator is left as it is"
    elif own:
        record["reason"] = f"set by the environment ({', '.join(own)}): left as the user set it"
    else:
        libc = ctypes.CDLL(None)
        if libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(MMAP_THRESHOLD)) and \
                libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(TRIM_THRESHOLD)):
            record.update(steady=True, mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD)
        else:
            record["reason"] = "mallopt refused the thresholds"
    _state = record
    return record


def state() -> dict[str, Any] | None:
    """What :func:`steady` did in this process; None when it was not called (glibc's defaults)."""
    return _state


def difference(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str | None:
    """How two runs' allocator records differ in what matters to timing (None: alike, or a record
    missing: an older file)."""
    if a is None or b is None:
        return None
    sa, sb = bool(a.get("steady")), bool(b.get("steady"))
    if sa == sb:
        return None
    words = {True: "steady heap", False: "allocator as found"}
    return f"allocator {words[sa]} vs {words[sb]}"
