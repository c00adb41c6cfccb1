"""Load generation: requests at scheduled times, served by worker threads, timed from each
request's *scheduled* arrival (issue 22).

Open loop (``Level.rate`` set): a seeded Poisson schedule is drawn ahead; a dispatcher thread puts
each request on the queue at its time, whether or not earlier ones were served, and ``concurrency``
worker threads take them (up to ``max_batch`` at once, waiting at most ``max_delay_s`` after the
oldest for more: dynamic batching as a serving stack does it).  A request's latency is its
completion minus its scheduled arrival, so a runtime that stalls cannot hide the queue that built up
behind it (no coordinated omission).  Closed loop (``rate`` None): each worker sends the next
request when its last one is answered (single-stream, a concurrency level, offline).  The trap
itself is here too, ``closed_at_rate``: a client that waits for each answer before sending at the
next scheduled time and times from the send, as wrk or YCSB's old mode did; the tests show it
under-reports the tail at the same load, and no scenario uses it.

A rate the workers cannot keep up with is detected: when the queue holds more than ``backlog_s``
seconds of arrivals, or what was queued is not served within ``grace_s`` after the last arrival,
the level ends with the reason.  Nothing here computes statistics (``stats.py``) or prints.
"""
from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Call = Callable[[], Any]
#: Python's thread switch interval during a level: a worker whose call holds the GIL (a Python-level
#: service, eager torch between kernels) lets the dispatcher put a due request on the queue within
#: this, not the default 5 ms, so the generator's own delay stays small beside any service time
SWITCH_INTERVAL_S = 1e-4
#: a queue longer than this never counts as unbounded (a burst of a Poisson stream at low rates)
MIN_BACKLOG = 32
#: at most this many (time, queued) points are kept per level
QUEUE_POINTS = 120


@dataclass(frozen=True)
class Level:
    """One load level: how requests arrive, how many workers serve them and for how long."""

    rate: float | None = None  # requests/s, Poisson (open loop); None: closed loop
    concurrency: int = 1  # worker threads, each with its own bound call
    duration_s: float = 4.0  # timed seconds (of arrivals; closed loop: of sending)
    warmup_s: float = 0.5  # seconds at the start whose requests are served but not counted
    max_batch: int = 1  # requests one call serves at most (the runner's batch size)
    max_delay_s: float = 0.0  # how long a worker waits after the oldest queued request for a fuller batch
    seed: int = 0
    max_requests: int = 200_000
    backlog_s: float = 2.0  # a queue holding this many seconds of arrivals grows without bound
    grace_s: float = 2.0  # after the last arrival, what is not served within this is left unserved
    closed_at_rate: bool = False  # the coordinated-omission trap (tests and docs only)

    def __post_init__(self) -> None:
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be finite and positive, got {self.rate!r}")
        if self.concurrency < 1 or self.max_batch < 1 or self.duration_s <= 0 or self.warmup_s < 0:
            raise ValueError(f"not a load level: {self}")
        if self.closed_at_rate and self.rate is None:
            raise ValueError("closed_at_rate needs a rate")


@dataclass
class LevelResult:
    """What one level did, per counted request (seconds after the level began): scheduled arrival,
    service start, completion and the size of the batch it was served in; per call (start, end,
    requests); the queue over time; and the reason it ended early, if it did."""

    level: Level
    scheduled_s: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    batch: np.ndarray
    calls: list[tuple[float, float, int]]
    queue: list[tuple[float, int]]
    offered: int  # requests scheduled (or sent) in the counted window
    unserved: int  # of those, not served when the level ended
    wall_s: float
    unsustainable: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def latency_s(self) -> np.ndarray:
        return self.end_s - self.scheduled_s

    @property
    def wait_s(self) -> np.ndarray:
        return self.start_s - self.scheduled_s


def poisson_schedule(rate: float, horizon_s: float, seed: int, limit: int = 200_000) -> np.ndarray:
    """Arrival times in [0, horizon_s) of a Poisson process of ``rate`` per second, drawn ahead
    from a seeded generator (the same seed, the same schedule), at most ``limit`` of them."""
    rng = np.random.default_rng(seed)
    n = int(min(limit, max(16, rate * horizon_s * 1.2 + 8 * math.sqrt(rate * horizon_s) + 16)))
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    while t[-1] < horizon_s and t.size < limit:
        t = np.concatenate([t, t[-1] + np.cumsum(rng.exponential(1.0 / rate, n))])
    return t[t < horizon_s][:limit]


@contextlib.contextmanager
def _switch_interval(seconds: float):
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class _Book:
    """Shared state of one level: the queue, what was served, and the stop flag."""

    def __init__(self, level: Level, arrivals: np.ndarray, base: float):
        self.level, self.arrivals, self.base = level, arrivals, base
        self.cond = threading.Condition()
        self.queue: deque[int] = deque()
        self.done = False  # every request was dispatched
        self.stop: str | None = None
        self.served: list[tuple[list[int], float, float]] = []  # (requests, start, end), absolute clock
        self.queue_points: list[tuple[float, int]] = []
        self.errors: list[BaseException] = []
        self.next = 0  # closed loop: the next request to send

    def halt(self, reason: str) -> None:
        with self.cond:
            if self.stop is None:
                self.stop = reason
            self.cond.notify_all()


def run_level(calls: Sequence[Call], level: Level, thread_context: Callable[[], Any] | None = None) -> LevelResult:
    """Run one level with one bound call per worker (``len(calls) >= level.concurrency``); each
    worker thread enters ``thread_context()`` (e.g. ``torch.inference_mode``) for its life.  An
    exception in a call ends the level and is raised here."""
    if len(calls) < level.concurrency:
        raise ValueError(f"{level.concurrency} workers need as many bound calls, got {len(calls)}")
    horizon = level.warmup_s + level.duration_s
    arrivals = (poisson_schedule(level.rate, horizon, level.seed, level.max_requests) if level.rate is not None
                else np.empty(0))
    clock = time.perf_counter
    with _switch_interval(SWITCH_INTERVAL_S):
        book = _Book(level, arrivals, clock() + 0.01)
        if level.rate is None:
            targets = [_closed_worker]
        elif level.closed_at_rate:
            targets = [_trap_worker]
        else:
            targets = [_open_worker]
        workers = [threading.Thread(target=_guarded, args=(targets[0], book, calls[i], thread_context), daemon=True,
                                    name=f"load-worker-{i}") for i in range(level.concurrency)]
        for w in workers:
            w.start()
        try:
            if level.rate is not None and not level.closed_at_rate:
                _dispatch(book)
            else:
                _sleep_until(book.base + horizon, book)
                with book.cond:
                    book.done = True
                    book.cond.notify_all()
            deadline = clock() + level.grace_s
            for w in workers:
                w.join(max(0.0, deadline - clock()))
            if any(w.is_alive() for w in workers):
                with book.cond:
                    left = len(book.queue)
                book.halt(f"unsustainable: {left} requests still queued {level.grace_s:g} s after the last arrival "
                          "(the workers cannot keep up with this rate)" if left else "")
        except BaseException:  # Ctrl-C: the workers finish the call they are in, then stop
            book.halt("interrupted")
            raise
        finally:
            for w in workers:
                w.join()  # each finishes the call it is in
        wall = clock() - book.base
    if book.errors:
        raise book.errors[0]
    return _result(book, level, wall)


def _guarded(target: Callable, book: _Book, call: Call, thread_context: Callable[[], Any] | None) -> None:
    try:
        with (thread_context() if thread_context is not None else contextlib.nullcontext()):
            target(book, call)
    except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
        book.errors.append(exc)
        book.halt(f"a call failed: {exc}")


def _sleep_until(target: float, book: _Book) -> None:
    while True:
        left = target - time.perf_counter()
        if left <= 0 or book.stop is not None:
            return
        time.sleep(min(left, 0.05))


def _dispatch(book: _Book) -> None:
    """The dispatcher: each request onto the queue at its scheduled time; the queue's length noted;
    a queue holding more than ``backlog_s`` seconds of arrivals ends the level (unsustainable)."""
    level = book.level
    limit = max(MIN_BACKLOG, int(level.rate * level.backlog_s))
    for i, t in enumerate(book.arrivals):
        _sleep_until(book.base + t, book)
        with book.cond:
            if book.stop is not None:
                break
            book.queue.append(i)
            queued = len(book.queue)
            book.queue_points.append((t, queued))
            book.cond.notify_all()  # a worker waiting for a fuller batch, or an idle one
        if queued > limit:
            book.halt(f"unsustainable: {queued} requests queued after {t:.1f} s (more than {level.backlog_s:g} s "
                      f"of arrivals at {level.rate:g}/s): the queue grows without bound at this rate")
            break
    with book.cond:
        book.done = True
        book.cond.notify_all()


def _take(book: _Book) -> list[int] | None:
    """A worker's next batch from the queue (None: the level is over): up to ``max_batch``
    requests, waiting up to ``max_delay_s`` after the oldest one for a fuller batch."""
    level, clock = book.level, time.perf_counter
    with book.cond:
        while True:
            while not book.queue and not book.done and book.stop is None:
                book.cond.wait()
            if book.stop is not None or (not book.queue and book.done):
                return None
            if level.max_batch > 1 and level.max_delay_s > 0:
                deadline = book.base + book.arrivals[book.queue[0]] + level.max_delay_s
                while len(book.queue) < level.max_batch and not book.done and book.stop is None:
                    left = deadline - clock()
                    if left <= 0:
                        break
                    book.cond.wait(left)
                if not book.queue:
                    continue  # another worker took them meanwhile
            return [book.queue.popleft() for _ in range(min(level.max_batch, len(book.queue)))]


def _open_worker(book: _Book, call: Call) -> None:
    clock = time.perf_counter
    while (taken := _take(book)) is not None:
        start = clock()
        call()
        end = clock()
        with book.cond:
            book.served.append((taken, start, end))


def _closed_worker(book: _Book, call: Call) -> None:
    """Closed loop: the next request as soon as the last is answered, until the horizon."""
    clock = time.perf_counter
    end_at = book.base + book.level.warmup_s + book.level.duration_s
    while book.stop is None and clock() < end_at:
        start = clock()
        call()
        end = clock()
        with book.cond:
            i = book.next
            book.next += 1
            book.served.append(([i], start, end))
            if book.next >= book.level.max_requests:
                book.stop = ""
                book.cond.notify_all()


def _trap_worker(book: _Book, call: Call) -> None:
    """The coordinated-omission trap: send request i at its scheduled time or, when the client is
    still waiting for an earlier answer, as soon as it gets it; time from the send."""
    arrivals = book.arrivals
    clock = time.perf_counter
    while book.stop is None:
        with book.cond:
            i = book.next
            book.next += 1
        if i >= arrivals.size:
            return
        _sleep_until(book.base + arrivals[i], book)
        start = clock()
        call()
        end = clock()
        with book.cond:
            book.served.append(([i], start, end))


def _thin(points: list[tuple[float, int]], keep: int = QUEUE_POINTS) -> list[tuple[float, int]]:
    """At most ``keep`` points, the longest queue of each stretch kept (a peak is never thinned away)."""
    if len(points) <= keep:
        return list(points)
    out = []
    for part in np.array_split(np.arange(len(points)), keep):
        best = max(part, key=lambda j: points[j][1])
        out.append(points[int(best)])
    return out


def _growth(points: list[tuple[float, int]], warm: float, offered: int) -> str | None:
    """Why a level that ran its course was unsustainable all the same: its queue grew over the counted
    window by more than :data:`MIN_BACKLOG` and 3% of the requests offered (arrivals outpace service;
    a stable queue fluctuates around its mean instead).  None otherwise."""
    counted = [(t, q) for t, q in points if t >= warm]
    if len(counted) < 2:
        return None
    (t0, q0), (t1, q1) = counted[0], counted[-1]
    if q1 - q0 > max(MIN_BACKLOG, 0.03 * offered):
        return (f"unsustainable: the queue grew from {q0} to {q1} requests over {t1 - t0:.1f} s: arrivals outpace "
                "service at this rate (the queue grows without bound)")
    return None


def _result(book: _Book, level: Level, wall: float) -> LevelResult:
    """Counted requests: those scheduled (closed loop: sent) after the warm-up, in time order."""
    base, warm = book.base, level.warmup_s
    rows = []
    calls = []
    for taken, start, end in book.served:
        s, e = start - base, end - base
        if level.rate is not None and not level.closed_at_rate:
            times = [float(book.arrivals[i]) for i in taken]
        else:
            times = [s]  # closed loop and the trap: timed from the send
        counted = [t for t in times if t >= warm]
        if counted:
            calls.append((s, e, len(taken)))
        rows += [(t, s, e, len(taken)) for t in counted]
    rows.sort()
    a = np.array(rows, dtype=float).reshape(-1, 4)
    if level.rate is not None and not level.closed_at_rate:
        offered = int(np.sum(book.arrivals >= warm))
    else:
        offered = len(rows)
    reason = book.stop or _growth(book.queue_points, warm, offered) or None
    return LevelResult(level, a[:, 0], a[:, 1], a[:, 2], a[:, 3].astype(int), sorted(calls),
                       _thin(book.queue_points), offered, max(0, offered - len(rows)), wall, reason)
