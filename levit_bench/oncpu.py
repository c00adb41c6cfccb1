"""The on-CPU share of a timed block: the wall seconds a process lost while it could not run.

A shared runner takes time from a benchmark in ways that no code of the benchmark changes: the
process is stopped or throttled (a container's CPU quota, ``cpulimit``, the ci-like neighbour's
SIGSTOP duty cycle) or waits for a core that another process holds.  While it does not run, wall
time passes and CPU time does not.  So every CPU block also reads the process's CPU seconds
(``harness.time_block``), and a one-thread entry's round record keeps ``on_cpu``: CPU seconds per
wall second of its calls (about 1 when it ran all the time; 0.65 when it was stopped a third of the
time; with more threads a thread idle at a barrier is off the CPU as well, so none is kept).  Adjusted figures scale each round's call times by ``min(1, on_cpu)``: the time
the calls took while the process ran (a runtime whose extra threads add CPU seconds is capped at
1, not slowed down).

What it cannot see, the canary applied after it must: a machine that runs the process all the time
but more slowly (a hyperthread sibling, memory bandwidth, frequency) shows ``on_cpu`` 1 and slower
calls.  And what it hides: code that waits (sleeps, blocks on a lock, idles its pool) loses wall
time with no CPU time, just as a stopped process does.  The gate therefore uses the share only where
both runs' entries kept it alike (:func:`waits_more`); else it says so and tests the canary alone.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .stats import RERUN_RESIDUAL_RAW

#: 95% half-width of what differs between two runs' on-CPU-adjusted figures beyond both runs' own
#: errors (``stats.rerun_interval``'s residual): the share takes out what the process lost while it
#: did not run, not the host's own drift between runs, which on the 2-core VM of 2026-12-04 was as
#: large as ever with no neighbour (quiet study, the share alone: SD 0.126 beyond the rounds; pooled
#: over that day's three studies 0.073, a 95% half-width of 0.14).  The canary after it follows
#: some of that drift, not all, so the residual stays the raw figures' 16% (with both, the rerun
#: interval held another run in 96-100% of that day's cases)
RERUN_RESIDUAL = RERUN_RESIDUAL_RAW
#: an entry "waits more" when its rounds' on-CPU shares fell between two runs, beyond the change all
#: entries share, with this one-sided significance (Welch's t on the log shares) ...
WAIT_ALPHA = 0.01
#: ... and by more than this (relative): under the ci-like neighbour one entry's median share moved
#: by SD 4.4% between runs with no change of code, so a fixed 5% cut-off flagged 16 of 108
#: (entry, run pair) cases; the test flags a wait that the noise can tell, on a quiet machine (block
#: shares within 1%) a few per cent
WAIT_TOLERANCE = 0.02


def leading(by: Sequence[str]) -> str:
    """Which adjustment decides what figures adjusted by ``by`` keep of their run's machine factor
    (the key of each per-adjustment constant): the share where it is in ``by``, else the canary,
    else ``"raw"``."""
    return "on_cpu" if "on_cpu" in by else "canary" if "canary" in by else "raw"


def shares(rounds: Sequence[Any] | None) -> list[float] | None:
    """Every round's on-CPU share (round dicts of a file, or ``schedule.RoundRecord``s); None unless
    every round has a usable one (files from before it, GPU entries, blocks timed elsewhere)."""
    if not rounds:
        return None
    values = [_field(r, "on_cpu") for r in rounds]
    if not all(_usable(v) for v in values):
        return None
    return [float(v) for v in values]


def on_cpu_rounds(rounds: Sequence[np.ndarray], on_cpu: Sequence[float]) -> list[np.ndarray]:
    """Each round's call times scaled by ``min(1, on_cpu)``: the seconds the calls took while the
    process ran."""
    if len(rounds) != len(on_cpu):
        raise ValueError(f"{len(rounds)} rounds but {len(on_cpu)} on-CPU shares")
    return [np.asarray(r, dtype=float) * min(1.0, float(s)) for r, s in zip(rounds, on_cpu)]


def scaled(rounds: Sequence[np.ndarray], records: Sequence[Any] | None) -> list[np.ndarray]:
    """``rounds`` scaled by their records' on-CPU shares where every record has one (:func:`shares`),
    else as they are."""
    cpu = shares(records)
    return list(rounds) if cpu is None else on_cpu_rounds(rounds, cpu)


def canary_seconds(records: Sequence[Any] | None) -> list[float | None]:
    """Each round's canary seconds per call as the adjustments use them: while the process ran
    (``canary_s × canary_on_cpu``) where every round has both, else ``canary_s`` as timed (files
    from before the canary's share, and runs of more than one thread); None where a round has no
    canary (``[None]`` without rounds).

    With the share, the two adjustments take out different things: the blocks' share what the
    process lost while stopped, the canary how fast the machine ran it meanwhile.  Applied to the
    wall canary, the stops were counted twice where the canary's median window was a stopped one:
    under the ci-like neighbour (seed 24, a run stopped 42% of the time) its median wall canary was
    36% slower than another run's, and that run's entries came out 14% faster than the three runs'
    mean (docs/measurement.md)."""
    if not records:
        return [None]
    walls = [_field(r, "canary_s") for r in records]
    running = [_field(r, "canary_on_cpu") for r in records]
    if not all(_usable(v) for v in walls + running):
        return [float(v) if _usable(v) else None for v in walls]
    return [float(w) * min(1.0, float(c)) for w, c in zip(walls, running)]


def canary_while_running(records: Sequence[Any] | None) -> bool:
    """Whether :func:`canary_seconds` of these rounds are seconds while running (not wall seconds):
    the adjusted figures of two files compare only where both are (``entry_parts.common_adjustments``)."""
    return bool(records) and all(_usable(_field(r, "canary_on_cpu")) for r in records)


def canary_inputs(rounds: Sequence[np.ndarray], records: Sequence[Any] | None) -> tuple[list[np.ndarray], list[float | None]]:
    """One entry as ``stats.group_canary`` takes it, both sides in the same units: its rounds scaled by
    their shares where its canary is while running (:func:`canary_while_running`), else as timed, and
    :func:`canary_seconds`."""
    return (scaled(rounds, records) if canary_while_running(records) else list(rounds)), canary_seconds(records)


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


def _usable(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def typical(on_cpu: Sequence[float]) -> float:
    """An entry's on-CPU share over a run: the geometric mean of its rounds' (each capped at 1)."""
    return float(np.exp(np.mean(_logs(on_cpu))))


def _logs(on_cpu: Sequence[float]) -> np.ndarray:
    return np.log(np.minimum(np.asarray(on_cpu, dtype=float), 1.0))


def waits_more(base: Sequence[float], new: Sequence[float], common: float = 0.0, alpha: float = WAIT_ALPHA,
               tolerance: float = WAIT_TOLERANCE) -> bool:
    """Whether the new run's entry spent a smaller share of its wall time on a CPU than the base's
    (significantly at ``alpha``, one-sided Welch t on the rounds' log shares, and by more than
    ``tolerance``), once ``common`` (the log change of the share that every entry of the two runs
    shares: the machine stopped the two runs' processes differently) is taken out.  Such an entry
    waits more in its own code, which the on-CPU adjustment would hide."""
    from scipy.stats import ttest_ind

    b, n = _logs(base), _logs(new) - common
    if float(n.mean() - b.mean()) >= math.log(1 - tolerance):
        return False
    if len(b) < 2 or len(n) < 2 or (np.ptp(b) == 0 and np.ptp(n) == 0):
        return True  # no spread to test against: the fall itself decides
    return bool(ttest_ind(n, b, equal_var=False, alternative="less").pvalue < alpha)
