"""A steady heap for timing: glibc's malloc told to keep large blocks on its heap.

By default glibc serves a request above its *mmap threshold* with a fresh ``mmap`` (and returns it to
the kernel on free), and raises that threshold dynamically each time such a block is freed.  Which
of a model's activation buffers end up mmapped, and so page-faulted and zeroed anew on every call,
then depends on the allocation history of the process: on the 2026-12-03 VM six identical workers
timing levit_128s (batch 16, 1 thread) ran at 213-316 ms a call, each at its own speed for all of
its rounds (a 1.48x spread, bimodal), and the same six with the threshold fixed high and the heap
never trimmed at 212-223 ms (docs/measurement.md, "Where the per-process offset came from").

:func:`steady` fixes both thresholds once per process (``mallopt``: setting them also turns the
dynamic adjustment off), so every process of a run reuses its heap the same way; the workers a
steady process starts get glibc's own variables for the same values (:func:`worker_environment`),
so an ``ab`` side running an older levit-bench is steady too.  A user who sets
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
#: what glibc before 2.35 accepts at most on 64-bit (HEAP_MAX_SIZE / 2): tried when 1 GiB is refused
FALLBACK_MMAP_THRESHOLD = 32 << 20
#: free memory at the top of the heap is kept up to this (the largest int mallopt takes): trimmed
#: only when more than 2 GiB lies free there
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


def _from_parent() -> int | None:
    """The mmap threshold when the environment holds exactly what :func:`worker_environment` gives
    (glibc applied it at start-up: a worker of a steady parent), else None."""
    try:
        mmap = int(os.environ.get("MALLOC_MMAP_THRESHOLD_", ""))
        trim = int(os.environ.get("MALLOC_TRIM_THRESHOLD_", ""))
    except ValueError:
        return None
    ok = mmap in (MMAP_THRESHOLD, FALLBACK_MMAP_THRESHOLD) and trim == TRIM_THRESHOLD
    return mmap if ok and "GLIBC_TUNABLES" not in os.environ else None


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
    elif (inherited := _from_parent()) is not None:
        record.update(steady=True, mmap_threshold=inherited, trim_threshold=TRIM_THRESHOLD)
    elif own:
        record["reason"] = f"set by the environment ({', '.join(own)}): left as the user set it"
    else:
        libc = ctypes.CDLL(None)
        mmap = next((v for v in (MMAP_THRESHOLD, FALLBACK_MMAP_THRESHOLD)
                     if libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(v))), None)
        trim = libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(TRIM_THRESHOLD))
        if mmap is not None and trim:
            record.update(steady=True, mmap_threshold=mmap, trim_threshold=TRIM_THRESHOLD)
        else:  # what did take effect is recorded: a half-set heap is not steady
            record.update(reason="mallopt refused " + " and ".join(
                w for w, bad in (("the mmap threshold", mmap is None), ("the trim threshold", not trim)) if bad),
                mmap_threshold=mmap, trim_threshold=TRIM_THRESHOLD if trim else None)
    _state = record
    return record


def worker_environment() -> dict[str, str]:
    """glibc's own variables for a worker this process starts, so that its heap is steady from its
    first allocation, whichever levit-bench it runs (the other side of an ``ab`` may be an older
    checkout); empty unless this process is steady."""
    record = _state or {}
    if not record.get("steady"):
        return {}
    return {"MALLOC_MMAP_THRESHOLD_": str(record["mmap_threshold"]), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def state() -> dict[str, Any] | None:
    """What :func:`steady` did in this process; None when it was not called (glibc's defaults)."""
    return _state


def _kind(record: dict[str, Any] | None) -> bool | None:
    """Steady, as found, or None: no record (a file or a levit-bench from before this module)."""
    return None if record is None else bool(record.get("steady"))


def difference(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str | None:
    """How two runs' allocator records differ in what matters to timing (None: alike, or a record
    missing: an older file, which :func:`heaps_differ` warns of instead)."""
    ka, kb = _kind(a), _kind(b)
    if ka is None or kb is None or ka == kb:
        return None
    words = {True: "steady heap", False: "allocator as found"}
    return f"allocator {words[ka]} vs {words[kb]}"


def heaps_differ(records: dict[str, dict[str, Any] | None]) -> str | None:
    """A warning when named runs or sides (``{"base": record, "new": record}``) did not all run on the
    same kind of heap: one steady, one as found, or one with no record; None when they agree."""
    said = {name: _kind(record) for name, record in records.items()}
    if len(set(said.values())) <= 1:
        return None
    words = {True: "the steady heap", False: "glibc's allocator as found", None: "no allocator record"}
    return ("the heaps differ (" + "; ".join(f"{name}: {words[v]}" for name, v in said.items()) +
            "): a steady heap alone made torch workers up to 1.5x faster (docs/measurement.md), so a change "
            "of that size may be the heap's")
