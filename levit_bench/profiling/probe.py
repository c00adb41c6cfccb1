"""The one interface each runtime's profiler is driven through, and the op totals it keeps.

A probe wraps what a run prepared (the backend's own runner, or a twin of it that differs only in
having the runtime's profiling switched on) and times blocks of calls under the profiler.  The
driver (``collect.py``) has ``schedule.run_rounds`` interleave those blocks with unprofiled ones of
the run's own call, so the profiler's overhead is measured in the same rounds, and never sees a runtime.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from ..harness import TimingOptions, Warmup, rewarm, warm_up
from .record import OpTime


class ProfileFailed(RuntimeError):
    """The runtime's profiler cannot give an honest breakdown of this entry (it said why)."""


class OpTotals:
    """Seconds and occurrences per (runtime op name, category), summed over the profiled calls."""

    def __init__(self) -> None:
        self._totals: dict[tuple[str, str], list[float]] = {}

    def add(self, name: str, category: str, seconds: float, count: float = 1) -> None:
        slot = self._totals.setdefault((name, category), [0.0, 0.0])
        slot[0] += seconds
        slot[1] += count

    def per_call(self, calls: int) -> list[OpTime]:
        """Per-call figures, largest first (ops that took no time are dropped)."""
        ops = [OpTime(name, cat, s / calls, n / calls) for (name, cat), (s, n) in self._totals.items() if s > 0]
        return sorted(ops, key=lambda o: -o.seconds)


class Probe(ABC):
    """A prepared entry that can run under its runtime's profiler.

    ``call`` is the zero-argument call profiled blocks run; ``runs`` counts every call made on it
    (warm-up included), for runtimes whose trace cannot be paused and is cut by run index."""

    profiler: str = ""
    #: True when the profiled executable is a twin of the run's (a second session or compiled
    #: model with profiling on): its logits are checked for parity too
    twin: bool = False
    #: whether blocks are re-warmed before timing (False: neither kind is, so they stay comparable)
    rewarms: bool = True

    def __init__(self, call: Callable[[], Any]):
        self.call = call
        self.runs = 0
        self.profiled_calls = 0
        self.notes: list[str] = []

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The profiled executable's logits for ``x`` (parity of a twin); counts as a run."""
        raise NotImplementedError

    def warm(self, timing: TimingOptions) -> Warmup | None:
        """Warm the profiled call up (outside any profiled block); its per-call time sizes the
        profiled blocks (None: the run's own call, already warm, sizes them)."""
        w = warm_up(self.call, timing)
        self.runs += 1 + w.calls
        return w

    def rewarm(self, seconds: float, per_call_s: float) -> None:
        """Untimed calls before a profiled block (``schedule.run_rounds`` calls it), counted as runs."""
        self.runs += rewarm(self.call, seconds, per_call_s)

    def profiled_block(self, n: int) -> list[float]:
        """Exactly ``n`` calls under the profiler, each timed alone; their op records are kept."""
        samples = self._profiled_block(n)
        self.runs += n
        self.profiled_calls += n
        return samples

    @abstractmethod
    def _profiled_block(self, n: int) -> list[float]:
        """The runtime's part of :meth:`profiled_block`."""

    @abstractmethod
    def finish(self) -> list[OpTime]:
        """Op times per profiled call, over every profiled block (called once, at the end)."""

    def close(self) -> None:
        """Release the twin session or compiled model and any trace files."""
