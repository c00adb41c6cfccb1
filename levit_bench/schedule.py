"""Randomized interleaved rounds: the order entries are timed in.

Entries timed one after another, each in one block, turn any slow change of a shared machine
(neighbours, frequency, memory) into differences between entries, invisible to each entry's own
interval.  Here every prepared entry is warmed up once, then timed in rounds: each round visits
every entry once, in a fresh seeded random order, as a short re-warm plus a block of timed calls
(Abedi & Brecht, "Conducting repeatable experiments in highly variable cloud computing
environments", ICPE 2017).  The total timed time per entry stays what ``min_time_s`` says.

With ``target_ci`` more rounds are added until every entry's 95% interval half-width is within
that fraction of its estimate, or ``max_time_s`` is spent.

Before the first timed round, one untimed warm-up round visits every entry in the first round's
order (its re-warm and a block's worth of calls, nothing recorded): round 0 was the slow one
(+5.5% on the rerun study's noisy VM, p = 0.01; +1.1% on a quiet one).  With a ``canary``
(``canary.py``), the canary is timed just before each entry's re-warm and just after its block;
the round record keeps their geometric mean (``canary_s``) and the entry what they cost.  On the
CPU with one thread, each round record also keeps the block's on-CPU share (``on_cpu``, ``oncpu.py``)
and the canary's own (``canary_on_cpu``: its windows' seconds while running over their wall seconds).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .canary import Canary, Window, block_index
from .energy import EnergyCounter
from .errors import first_line
from .harness import Block, Call, TimingOptions, Warmup, rewarm, time_block, warm_up
from .stats import median_time_interval, split_rounds


@dataclass
class RoundRecord:
    """One visit of an entry: which round, its place in that round's order, when, how many calls."""

    round: int
    position: int
    start_s: float  # seconds since the timing of its group began
    calls: int
    canary_s: float | None = None  # the canary's seconds per call next to this block (None: no canary)
    process: int | None = None  # the worker process that timed it (``--processes``, ``ab``); None: this one
    #: the process's CPU seconds over the block per wall second (``oncpu.py``); None: not read (GPU, or
    #: more than one thread)
    on_cpu: float | None = None
    #: the canary's windows next to this block, their seconds while the process ran over their wall
    #: seconds (``oncpu.canary_seconds``); None: not read (as ``on_cpu``), or no canary
    canary_on_cpu: float | None = None

    def to_dict(self) -> dict:
        d = {"round": self.round, "position": self.position, "start_s": round(self.start_s, 4), "calls": self.calls}
        if self.canary_s is not None:
            d["canary_s"] = self.canary_s
        if self.process is not None:
            d["process"] = self.process
        if self.on_cpu is not None:
            d["on_cpu"] = round(self.on_cpu, 5)
        if self.canary_on_cpu is not None:
            d["canary_on_cpu"] = round(self.canary_on_cpu, 5)
        return d


@dataclass
class Timed:
    """A prepared entry being timed: its call, its warm-up, and what the rounds gave so far.

    ``block`` and ``rewarm`` replace how a round runs this entry's timed calls (``harness.time_calls``)
    and its re-warm (``harness.rewarm``), for a call that must run inside something, such as a
    profiler (``profiling/collect.py``); the schedule, its order and its records stay the same."""

    label: str
    call: Call
    synchronize: Callable[[], None]
    cuda: bool
    warm: Warmup | None = None
    block: Callable[[int], list[float] | Block] | None = None  # n -> per-call seconds of n timed calls
    rewarm: Callable[[float, float], object] | None = None  # (seconds, per-call seconds) -> untimed calls
    calls_per_round: int = 1
    samples: list[float] = field(default_factory=list)
    rounds: list[RoundRecord] = field(default_factory=list)
    error: str | None = None  # a runtime error during the rounds: the entry stops being timed
    energy_j: list[float] = field(default_factory=list)  # joules of each timed block (when metered)
    metered_s: float = 0.0  # wall seconds of the metered blocks
    metered_calls: int = 0  # calls of the metered blocks
    canary_cost_s: float = 0.0  # wall seconds of the canary measurements next to this entry's blocks
    process: int | None = None  # the worker process it runs in (recorded in its rounds); None: this one
    #: items with the same key go together: adjacent in every round, in a random order among themselves
    #: (``ab``: an entry's base and new blocks); None: an item on its own
    together: object = None
    threads: int | None = None  # the entry's threads on the CPU (one: its blocks' on-CPU share is recorded); None: GPU

    def round_samples(self) -> list[np.ndarray]:
        return split_rounds(self.samples, [r.calls for r in self.rounds])

    def ci_half_width(self) -> float:
        """Half the 95% interval of the median call time, relative to the median."""
        if not self.samples:
            return math.inf
        lo, hi = median_time_interval(self.round_samples())
        return (hi - lo) / 2 / float(np.median(self.samples))


@dataclass
class Schedule:
    rounds: int | None  # None: chosen per group by :func:`choose_rounds`
    seed: int
    target_ci: float | None = None  # fraction, e.g. 0.02
    max_time_s: float | None = None
    warmup_round: bool = True  # one untimed round before the first timed one


#: automatic rounds: as many as fit, within these bounds
AUTO_ROUNDS = (5, 10)
#: ... while the group's timed seconds stay within this factor of what one block per entry would take
AUTO_BUDGET = 1.25


def _timed_seconds(per_call_s: float, timing: TimingOptions, rounds: int) -> float:
    return rounds * calls_per_round(per_call_s, timing, rounds) * per_call_s


def choose_rounds(per_call_s: Sequence[float], timing: TimingOptions) -> int:
    """The most rounds in ``AUTO_ROUNDS`` whose timed seconds stay within ``AUTO_BUDGET`` times
    those of one block per entry.  Fast entries split ``min_time_s`` into any number of rounds for
    free; an entry whose one call is longer than a round's share costs a call per round, so plans
    of slow entries get fewer rounds (never fewer than the lower bound)."""
    budget = AUTO_BUDGET * sum(_timed_seconds(c, timing, 1) for c in per_call_s)
    low, high = AUTO_ROUNDS
    for rounds in range(high, low, -1):
        if sum(_timed_seconds(c, timing, rounds) for c in per_call_s) <= budget:
            return rounds
    return low


def calls_per_round(per_call_s: float, timing: TimingOptions, rounds: int) -> int:
    """Calls in each round's block so that the rounds together reach ``min_time_s`` and ``min_calls``."""
    by_time = math.ceil(timing.min_time_s / rounds / max(per_call_s, 1e-9))
    by_count = math.ceil(timing.min_calls / rounds)
    return max(1, min(max(by_time, by_count), max(1, timing.max_calls // rounds)))


def warm(item: Timed, timing: TimingOptions, first_call_s: float | None = None) -> None:
    """Warm ``item`` up once, before any round (its per-call time sizes its blocks); ``first_call_s``
    when its first call was made already (a run's parity check)."""
    item.warm = warm_up(item.call, timing, item.synchronize, first_call_s)


def rounds_for(items: Sequence[Timed], timing: TimingOptions, schedule: Schedule) -> int:
    """The rounds a group of warmed-up items is timed in (asked for, or chosen)."""
    if schedule.rounds is not None:
        return schedule.rounds
    return choose_rounds([it.warm.per_call_s for it in items], timing)


def run_rounds(items: Sequence[Timed], timing: TimingOptions, schedule: Schedule,
               on_round: Callable[[int, int], None] | None = None, energy: EnergyCounter | None = None,
               canary: Canary | None = None) -> int:
    """Time warmed-up items in rounds; returns the number of rounds done (the untimed warm-up
    round not counted).

    A KeyboardInterrupt propagates; every item keeps the rounds it completed.  An item whose call
    raises stops being timed and keeps the error.  With an ``energy`` counter, it is read just
    before and after each timed block (outside the timed calls); with a ``canary``, it is timed
    before each re-warm and after each block (outside the timed calls and the energy reads).
    """
    planned = rounds_for(items, timing, schedule)
    for it in items:
        it.calls_per_round = calls_per_round(it.warm.per_call_s, timing, planned)
    rng = np.random.default_rng(schedule.seed)
    order = _order(items, rng) if items else None
    if schedule.warmup_round and items:
        _warmup_round(items, order, timing, canary)
    begin = time.perf_counter()
    done = 0
    while _more(items, planned, schedule, done, begin):
        if done > 0:
            order = _order(items, rng)
        for position, k in enumerate(order):
            it = items[int(k)]
            if it.error is not None:
                continue
            try:
                before = _canary(canary, it)
                if it.rewarm is not None:
                    it.rewarm(timing.rewarm_s, it.warm.per_call_s)
                else:
                    rewarm(it.call, timing.rewarm_s, it.warm.per_call_s, it.synchronize)
                joules = _read_j(energy)
                start = time.perf_counter() - begin
                block = it.block(it.calls_per_round) if it.block is not None else \
                    time_block(it.call, it.calls_per_round, cuda=it.cuda, synchronize=it.synchronize)
                seconds = time.perf_counter() - begin - start
                block, on_cpu = _on_cpu(block, it.threads)
            except Exception as exc:  # noqa: BLE001 - one runtime failing stops that entry, not the run
                it.error = first_line(exc)
                continue
            after = _read_j(energy)
            canary_s, canary_on_cpu = _block_canary(before, _canary(canary, it), it.threads)
            if joules is not None and after is not None:  # a counter that failed costs the figure, not the entry
                it.energy_j.append(after - joules)
                it.metered_s += seconds
                it.metered_calls += len(block)
            it.samples += block
            it.rounds.append(RoundRecord(done, position, start, len(block), canary_s, it.process, on_cpu,
                                         canary_on_cpu))
        done += 1
        if on_round is not None:
            on_round(done, planned)
    return done


def _warmup_round(items: Sequence[Timed], order: np.ndarray, timing: TimingOptions, canary: Canary | None) -> None:
    """Every item once, in the first round's order: its re-warm and a block's worth of calls, not
    recorded (an item with its own re-warm gets that, for a block's seconds: a profiler's block
    would record).  The canary is measured as in a round, and discarded."""
    for k in order:
        it = items[int(k)]
        if it.error is not None:
            continue
        try:
            _canary(canary, it)
            if it.rewarm is not None:
                it.rewarm(timing.rewarm_s + it.calls_per_round * it.warm.per_call_s, it.warm.per_call_s)
            else:
                rewarm(it.call, timing.rewarm_s, it.warm.per_call_s, it.synchronize)
                for _ in range(it.calls_per_round):
                    it.call()
                it.synchronize()
        except Exception as exc:  # noqa: BLE001 - as in a timed round: that entry stops
            it.error = first_line(exc)


def _on_cpu(block: list[float] | Block, threads: int | None) -> tuple[list[float], float | None]:
    """A block's per-call seconds, and its on-CPU share where the item runs one thread and the
    block's CPU seconds are known: CPU seconds per wall second of its calls.  With more threads a
    thread waiting at a barrier is off the CPU too (the README's main command, 2 threads, nothing
    else running: ONNX Runtime's batch-16 entry adjusted 16% above its raw speed, torch's within 1%),
    so the share would count the runtime's own idling as the machine's: it is not recorded."""
    if not isinstance(block, Block):
        return block, None
    wall = sum(block.samples)
    if threads != 1 or block.cpu_s is None or wall <= 0:
        return block.samples, None
    return block.samples, block.cpu_s / wall


def _canary(canary: Canary | None, item: Timed) -> Window | None:
    """One canary measurement, its cost added to ``item``'s; None without a canary."""
    if canary is None:
        return None
    spent = canary.cost_s
    value = canary.window()
    item.canary_cost_s += canary.cost_s - spent
    return value


def _block_canary(before: Window | None, after: Window | None, threads: int | None) -> tuple[float | None, float | None]:
    """A block's canary index (:func:`canary.block_index` of the wall seconds) and, at one thread, the
    share of it the process ran: the index of the two windows' seconds while running
    (``seconds × min(1, on_cpu)``) over the wall index."""
    if before is None or after is None:
        return None, None
    wall = block_index(before.seconds, after.seconds)
    if threads != 1:
        return wall, None
    running = block_index(*(w.seconds * min(1.0, w.on_cpu) for w in (before, after)))
    return wall, running / wall


def _read_j(energy: EnergyCounter | None) -> float | None:
    """The counter's joules, or None without a counter or when reading it fails."""
    if energy is None:
        return None
    try:
        return energy.read_j()
    except (OSError, ValueError, RuntimeError):
        return None


def _more(items: Sequence[Timed], planned: int, schedule: Schedule, done: int, begin: float) -> bool:
    if not items:
        return False
    if done < planned:
        return True
    if schedule.target_ci is None:
        return False
    if schedule.max_time_s is not None and time.perf_counter() - begin >= schedule.max_time_s:
        return False
    return any(it.error is None and it.ci_half_width() > schedule.target_ci for it in items)


# ---------------------------------------------------------------------------------------------
# items that go together, and one entry timed in several processes


def _order(items: Sequence[Timed], rng: np.random.Generator) -> list[int]:
    """One round's order: a random permutation of the items; where some go ``together``, a random
    order of the units, each unit's items adjacent and in a random order of their own.  Without
    such items this is ``rng.permutation(len(items))``, so seeded orders stay what they were."""
    units: dict[object, list[int]] = {}
    for k, it in enumerate(items):
        units.setdefault(("alone", k) if it.together is None else ("together", it.together), []).append(k)
    if all(len(u) == 1 for u in units.values()):
        return [int(k) for k in rng.permutation(len(items))]
    groups = list(units.values())
    return [g[int(j)] for u in rng.permutation(len(groups)) for g in [groups[int(u)]]
            for j in rng.permutation(len(g))]


def pool(items: Sequence[Timed]) -> tuple[list[float], list[RoundRecord]]:
    """One entry timed as several items (one per worker process): every block of each, ordered by
    round then process, as one entry's samples and rounds.  Each block stays a round of its own, so
    the interval over round medians sees the differences between processes."""
    blocks = [(r, chunk) for it in items for r, chunk in zip(it.rounds, it.round_samples())]
    blocks.sort(key=lambda rc: (rc[0].round, -1 if rc[0].process is None else rc[0].process))
    return [float(x) for _r, chunk in blocks for x in chunk], [r for r, _chunk in blocks]
