"""Warm-up and the timing loop.  Nothing here computes statistics or prints.

The timed region holds only the runner's bound call and the clock reads: buffers for the samples
(and CUDA events) are allocated before it starts; nothing is logged and no progress bar moves.
CPU calls are timed with ``time.perf_counter``; CUDA calls with CUDA events, read after one final
synchronisation.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch


@dataclass(frozen=True)
class TimingOptions:
    warmup_s: float = 1.0
    warmup_calls: int = 3
    min_time_s: float = 2.0
    min_calls: int = 5
    max_calls: int = 100_000


@dataclass
class Measurement:
    samples_s: list[float]
    first_call_s: float
    warmup_calls: int
    peak_rss_bytes: int
    cuda_max_memory_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def apply_threads(threads: int) -> None:
    """Set torch's intra-op threads (ONNX Runtime and OpenVINO get theirs from the Settings)."""
    torch.set_num_threads(threads)


def measure(
    call: Callable[[], Any],
    options: TimingOptions = TimingOptions(),
    *,
    synchronize: Callable[[], None] | None = None,
    cuda: bool = False,
) -> Measurement:
    """Time ``call`` (one batch per call): first call, warm-up, then timed calls until both
    ``min_calls`` and ``min_time_s`` are reached."""
    sync = synchronize or (lambda: None)
    proc = psutil.Process()
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    t0 = time.perf_counter()
    call()
    sync()
    first = time.perf_counter() - t0

    n, start = 0, time.perf_counter()
    while n < options.warmup_calls or time.perf_counter() - start < options.warmup_s:
        call()
        n += 1
        if n >= options.max_calls:
            break
    sync()
    per_call = (time.perf_counter() - start) / max(n, 1)
    rss = proc.memory_info().rss

    cap = min(options.max_calls, options.min_calls + int(2 * options.min_time_s / max(per_call, 1e-9)) + 1)
    samples = [0.0] * cap
    if cuda:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(cap)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(cap)]
        clock = time.perf_counter
        i, begin = 0, clock()
        while i < cap:
            starts[i].record()
            call()
            ends[i].record()
            i += 1
            if i >= options.min_calls and clock() - begin >= options.min_time_s:
                break
        torch.cuda.synchronize()
        samples = [starts[k].elapsed_time(ends[k]) / 1000.0 for k in range(i)]
    else:
        clock = time.perf_counter
        i, begin = 0, clock()
        while i < cap:
            a = clock()
            call()
            b = clock()
            samples[i] = b - a
            i += 1
            if i >= options.min_calls and b - begin >= options.min_time_s:
                break
        sync()
        samples = samples[:i]
    rss = max(rss, proc.memory_info().rss)
    cuda_mem = torch.cuda.max_memory_allocated() if cuda else None
    return Measurement(samples, first, n, rss, cuda_mem)
