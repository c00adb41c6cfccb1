"""Warm-up and the timing loop.  Nothing here computes statistics or prints.

The timed region holds only the runner's bound call and the clock reads: buffers for the samples
(and CUDA events) are allocated before it starts; nothing is logged and no progress bar moves.
CPU calls are timed with ``time.perf_counter``; CUDA calls with CUDA events, read after one final
synchronisation.  A block of CPU calls also reads the process's CPU time around it
(:func:`time_block`): a process that is stopped, throttled or waiting for a core loses wall seconds
but no CPU seconds, which is how ``oncpu.py`` tells such a loss from slower code.

Everything timed (a run's entries, the GEMM peak, profiling's paired blocks) goes through
``schedule.py``: :func:`warm_up` once, then per round a short :func:`rewarm` and :func:`time_calls`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import torch

Call = Callable[[], Any]


#: the re-warm before each timed block at the default budget (``--min-time 2``)
REWARM_S = 0.1


@dataclass(frozen=True)
class TimingOptions:
    #: 0.5 s: the untimed warm-up round (``schedule``) re-warms every entry just before its first timed
    #: block, so this only has to get past the first calls and size the blocks (1 s cost the main
    #: command 4 s more; docs/performance.md)
    warmup_s: float = 0.5
    warmup_calls: int = 3
    min_time_s: float = 2.0  # timed seconds per entry, over all rounds
    min_calls: int = 5  # timed calls per entry, over all rounds
    max_calls: int = 100_000
    #: untimed seconds before each timed block; None: :data:`REWARM_S`, or a twentieth of ``min_time_s``
    #: where that is less (with ``--min-time 0.05``, ten 0.1 s re-warms would be 20× the timed seconds)
    rewarm_s: float | None = None

    def __post_init__(self) -> None:
        if self.rewarm_s is None:
            object.__setattr__(self, "rewarm_s", min(REWARM_S, self.min_time_s / 20))


@dataclass
class Warmup:
    first_call_s: float
    calls: int
    per_call_s: float  # mean over the warm-up calls: sizes the timed blocks
    rss_bytes: int


def _nothing() -> None:
    return None


def warm_up(call: Call, options: TimingOptions, synchronize: Callable[[], None] | None = None,
            first_call_s: float | None = None) -> Warmup:
    """The first call (timed alone: it may compile or allocate), then warm-up calls until
    ``warmup_s`` is spent and ``warmup_calls`` are made; a call longer than ``warmup_s`` warms up
    alone (three 3-second calls would cost 9 s for no better state).  ``first_call_s``: the first
    call was made already (the parity check's), and took this long."""
    sync = synchronize or _nothing
    if first_call_s is None:
        t0 = time.perf_counter()
        call()
        sync()
        first_call_s = time.perf_counter() - t0
    first = first_call_s
    n, start = 0, time.perf_counter()
    while n < options.max_calls:
        call()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= options.warmup_s and (n >= options.warmup_calls or elapsed / n >= options.warmup_s):
            break  # warmup_s spent, and warmup_calls made unless one call alone is that long
    sync()
    per_call = (time.perf_counter() - start) / max(n, 1)
    return Warmup(first, n, per_call, psutil.Process().memory_info().rss)


def rewarm(call: Call, seconds: float, per_call_s: float, synchronize: Callable[[], None] | None = None) -> int:
    """Untimed calls for about ``seconds`` after other entries ran (caches, thread pools); none when
    one call is longer than that (its own start-up cost is then small beside it).  Returns the count."""
    if per_call_s > seconds:
        return 0
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        n += 1
    (synchronize or _nothing)()
    return n


def time_calls(call: Call, n: int, *, cuda: bool = False, synchronize: Callable[[], None] | None = None) -> list[float]:
    """Exactly ``n`` timed calls; per-call seconds."""
    if cuda:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            starts[i].record()
            call()
            ends[i].record()
        torch.cuda.synchronize()
        return [starts[k].elapsed_time(ends[k]) / 1000.0 for k in range(n)]
    samples = [0.0] * n
    clock = time.perf_counter
    for i in range(n):
        a = clock()
        call()
        samples[i] = clock() - a
    (synchronize or _nothing)()
    return samples


@dataclass
class Block:
    """One block's per-call seconds and the CPU seconds the process spent over them (every thread;
    None where they say nothing of the calls: CUDA, or a block timed elsewhere without them)."""

    samples: list[float]
    cpu_s: float | None = None


def time_block(call: Call, n: int, *, cuda: bool = False, synchronize: Callable[[], None] | None = None) -> Block:
    """:func:`time_calls`, with the process's CPU seconds over the block (CPU calls only)."""
    cpu = time.process_time()
    samples = time_calls(call, n, cuda=cuda, synchronize=synchronize)
    return Block(samples, None if cuda else time.process_time() - cpu)
