"""Entries timed in worker processes: ``run --processes K`` and ``levit-bench ab``.

Each plan step is prepared in each of its *executions* (Kalibera & Jones: a process, with its own
allocation and code layout) — K worker processes of this interpreter, or K per side of an A/B —
and every (step, execution) is one ``schedule.Timed`` item of the same interleaved rounds.  A run's
entry pools its K processes' rounds (``schedule.pool``: each block a round of its own, so the
differences between processes enter the interval); an A/B keeps one entry per side (its K
processes pooled), process k's two blocks adjacent in every round (``Timed.together``), so they are
paired by round and process.

Workers are started per backend (one runtime that crashes or hangs takes only its own entries
with it), prepared one after another (the export cache makes the later ones cheap), and stopped at
the end, whatever happens.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .canary import Canary, Reference
from .harness import TimingOptions
from .entry_parts import ExportFacts, Timing
from .oncpu import canary_inputs
from .results import Entry
from .schedule import Schedule, Timed, pool, rounds_for, run_rounds
from .selection import Selection
from .spec import Identity, Status
from .stats import group_canary
from .workers import Timeouts, Worker, WorkerDied, remote_item, warm_remote


@dataclass(frozen=True)
class Side:
    """Where an execution runs: an interpreter (a virtual environment), a checkout put first on its
    PYTHONPATH, extra environment, the cores it is pinned to; ``name`` is ``base``/``new`` in an A/B."""

    name: str | None = None
    python: str = sys.executable
    path: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cpus: frozenset[int] | None = None


@dataclass
class Slot:
    """One plan step in one execution: how its preparation ended and, when ready, its item."""

    identity: Identity
    status: Status
    reason: str = ""
    facts: ExportFacts = field(default_factory=ExportFacts)
    item: Timed | None = None
    images_per_call: int = 0
    first_call_s: float | None = None
    worker: Worker | None = None
    number: int = -1  # the item's number in its worker


def step_index(selection: Selection) -> dict[tuple[str, str, str, int], int]:
    """(model, precision, backend, batch size) -> the step's place in the plan order."""
    return {(m, s.precision, b, bs): i for i, (m, s, b, bs) in enumerate(selection.steps())}


def spawn_workers(selection: Selection, side: Side, process: int | None, timeouts: Timeouts,
                  workers: list[Worker]) -> list[Worker]:
    """``side``'s workers for one execution, one per backend, started now (appended to ``workers`` for
    the caller to stop) and greeted when :func:`prepare_execution` reaches them: every execution's
    workers are spawned first, so their start-ups (importing torch and the runtimes) overlap."""
    spawned = [Worker.spawn(side.python, side.path, name=f"{side.name or 'process'} {process}", env=side.env,
                            timeouts=timeouts, cpus=set(side.cpus) if side.cpus else None)
               for _ in selection.backends]
    workers.extend(spawned)
    return spawned


def prepare_execution(selection: Selection, spawned: Sequence[Worker], side: Side,
                      on_step: Callable[[Identity], None] | None = None,
                      process: int | None = None) -> dict[int, Slot]:
    """Every step of ``selection`` prepared in ``side``'s ``spawned`` workers (one per backend, from
    :func:`spawn_workers`); steps a dying worker did not reach fail with its reason.  A worker that
    cannot start raises WorkerDied (the interpreter is wrong: the caller's error)."""
    index = step_index(selection)
    slots: dict[int, Slot] = {}
    for backend, worker in zip(selection.backends, spawned):
        worker.greet()
        for o in worker.prepare(replace(selection, backends=(backend,)),
                                lambda o: on_step(Identity.from_dict(o["identity"])) if on_step else None):
            identity = Identity.from_dict(o["identity"])
            slot = Slot(identity, Status(o["status"]), o.get("reason") or "", ExportFacts(**o["facts"]),
                        images_per_call=o.get("images_per_call") or 0, first_call_s=o.get("first_call_s"),
                        worker=worker, number=o["item"])
            if slot.status is Status.OK:
                label = identity.label() + (f" ({side.name})" if side.name else "")
                slot.item = remote_item(worker, o, label, process, together=None,
                                        threads=identity.threads if identity.device == "cpu" else None)
            slots[index[(identity.model, identity.precision, identity.backend, identity.batch_size)]] = slot
        for (m, precision, b, bs), i in index.items():  # the steps it did not reach
            if b == backend and i not in slots:
                first = next(s for s in selection.settings_list() if s.precision == precision)
                slots[i] = Slot(_identity(m, b, first, bs, selection), Status.FAILED,
                                f"{worker.dead or 'the worker stopped'} while preparing")
    return slots


def _identity(model: str, backend: str, settings: Any, batch_size: int, selection: Selection) -> Identity:
    from . import zoo
    from .spec import ModelId

    return Identity.of(ModelId(model, zoo.input_size(model, selection.img_size), None), backend, settings, batch_size)


def warm_all(slots: Sequence[Slot], timing: TimingOptions) -> None:
    for s in slots:
        if s.item is not None:
            warm_remote(s.item, s.worker, s.number, timing, s.first_call_s)


def time_items(items: Sequence[Timed], timing: TimingOptions, schedule: Schedule,
               on_round: Callable[[int, int], None] | None = None,
               canary: Canary | None = None) -> tuple[int, bool]:
    """The warmed-up items timed in interleaved rounds (with ``canary``: timed in this process next
    to every block, as in a one-process run): (rounds done, interrupted)."""
    live = [it for it in items if it.error is None and it.warm is not None]
    if on_round is not None:
        on_round(0, rounds_for(live, timing, schedule) if live else 0)
    try:
        return run_rounds(live, timing, schedule, on_round, canary=canary), False
    except KeyboardInterrupt:
        return max((len(it.rounds) for it in live), default=0), True


@dataclass(frozen=True)
class CanaryAdjustment:
    """What adjusting the entries of a run needs from the whole run (``Timing.adjust``)."""

    reference: Reference
    beta: float
    run_s: float


def canary_adjustment(items: Sequence[Timed], reference: Callable[[float], Reference]) -> CanaryAdjustment | None:
    """The run's adjustment from every item's rounds (each process its own item): the canary's
    tracking slope, the median canary of every block and the reference it maps to; None without one."""
    beta, run_s = group_canary([canary_inputs(it.round_samples(), it.rounds) for it in items if it.rounds])
    return None if run_s is None else CanaryAdjustment(reference(run_s), beta, run_s)


def entry_of(slots: Sequence[Slot], side: str | None = None, canary: CanaryAdjustment | None = None) -> Entry:
    """One plan step's entry from its executions: not ready in one, it ends as that one did; else its
    processes' rounds pooled (adjusted by their on-CPU shares, and by the canary with ``canary``).  A worker lost during the rounds
    fails the entry with the reason and the process, and the rounds timed before stay in the entry
    (its ``timing``)."""
    first = slots[0]
    not_ready = next((s for s in slots if s.item is None), None)
    if not_ready is not None:
        where = f" (process {slots.index(not_ready)})" if len(slots) > 1 and not_ready is not first else ""
        entry = Entry.of(not_ready.identity, not_ready.status, not_ready.reason + where, not_ready.facts)
        entry.side = side
        return entry
    entry = Entry.of(first.identity, Status.SKIPPED, "", first.facts)
    entry.side = side
    items = [s.item for s in slots]
    samples, rounds = pool(items)
    if samples:
        warm = items[0].warm
        rss = max(it.warm.rss_bytes for it in items if it.warm)  # the workers', not this one's
        adjust = {} if canary is None else {
            "canary": canary.reference, "canary_cost_s": sum(it.canary_cost_s for it in items),
            "canary_beta": canary.beta, "canary_run_s": canary.run_s}
        entry.add_timing(Timing.measure(samples, [r.to_dict() for r in rounds], first.images_per_call,
                                        warmup_calls=warm.calls if warm else None,
                                        first_call_s=warm.first_call_s if warm else None, rss_bytes=rss, **adjust))
    else:
        entry.reason = "interrupted before its first timed round"
    failed = [(k, it) for k, it in enumerate(items) if it.error is not None]
    if failed:
        k, it = failed[0]
        stage = "while warming up" if it.warm is None else "during the timed rounds"
        where = f" (process {it.process})" if it.process is not None else ""
        entry.status, entry.reason = Status.FAILED, f"{stage}: {it.error}{where}"
        if samples:
            entry.notes.append(f"{len(rounds)} timed rounds before the failure are kept in its timing (samples_s, rounds)")
    return entry


def stop_all(workers: Sequence[Worker]) -> None:
    """Every worker asked to quit first, then each waited for (or killed): they exit together."""
    for w in workers:
        w.ask_to_quit()
    for w in workers:
        w.stop()


def execute_in_workers(selection: Selection, timing: TimingOptions, schedule: Schedule, processes: int,
                       on_step: Callable[[Identity], None] | None = None,
                       on_round: Callable[[int, int], None] | None = None,
                       timeouts: Timeouts = Timeouts(), canary: Canary | None = None,
                       reference: Callable[[float], Reference] | None = None) -> tuple[list[Entry], bool]:
    """``run --processes K``: every step prepared in K worker processes of this interpreter, all
    (step, process) items timed in the same rounds, each entry pooling its K processes; with
    ``canary`` and ``reference`` (the run's median canary -> what adjusted figures scale to), the
    canary is timed here next to every block and the entries carry adjusted figures.  Returns the
    entries in plan order and whether the rounds were interrupted."""
    workers: list[Worker] = []
    try:
        spawned = [spawn_workers(selection, Side(), k, timeouts, workers) for k in range(processes)]
        executions = [prepare_execution(selection, spawned[k], Side(), on_step if k == 0 else None, k)
                      for k in range(processes)]
        steps = sorted(executions[0])
        warm_all([ex[i] for ex in executions for i in steps], timing)
        items = [ex[i].item for i in steps if all(ex[i].item for ex in executions) for ex in executions]
        _done, interrupted = time_items(items, timing, schedule, on_round, canary)
        adjustment = canary_adjustment(items, reference) if canary is not None and reference is not None else None
        entries = [entry_of([ex[i] for ex in executions], canary=adjustment) for i in steps]
        for e in entries:
            e.group = 0
        return entries, interrupted
    finally:
        stop_all(workers)


# ---------------------------------------------------------------------------------------------
# A/B: the same plan in two environments, each entry's two blocks adjacent in every round


@dataclass
class AbRun:
    """What ``ab`` measured: per step the base and the new entry (plan order), each side's facts."""

    pairs: list[tuple[Entry, Entry]]
    environments: dict[str, dict[str, Any]]
    interrupted: bool


def differences(base: Identity, new: Identity) -> list[str]:
    """The identity fields in which the two sides' preparations of one step differ."""
    a, b = base.to_dict(), new.to_dict()
    return [f"{k} {a[k]!r} (base) against {b.get(k)!r} (new)" for k in a if a[k] != b.get(k)]


def execute_ab(selection: Selection, timing: TimingOptions, schedule: Schedule, base: Side, new: Side, *,
               processes: int = 1, duet: bool = False, on_step: Callable[[Identity], None] | None = None,
               on_round: Callable[[int, int], None] | None = None, timeouts: Timeouts = Timeouts()) -> AbRun:
    """Both sides prepared, each in ``processes`` executions (workers of its interpreter), their
    identities checked equal (else a UserError naming the first difference), then every ready pair
    timed in the same rounds: process k of the base and process k of the new side adjacent in a
    random order (``duet``: simultaneously, each side on its own cores).  Each side's entry pools its
    processes' rounds (``schedule.pool``), so its rounds are paired with the other side's by
    (round, process)."""
    from .errors import UserError

    workers: list[Worker] = []
    try:
        # process k of both sides are spawned and prepared one after the other, which side first drawn
        # from the seed: whatever depends on that order (what was running, what memory was free) is
        # shared by the pair their blocks are paired in, and favours neither side
        rng = np.random.default_rng([schedule.seed, 0xAB])
        orders = [(base, new) if rng.random() < 0.5 else (new, base) for _ in range(processes)]
        spawned: dict[str | None, list[list[Worker]]] = {base.name: [], new.name: []}
        first: dict[str | None, int] = {}
        for k, order in enumerate(orders):
            for side in order:
                first.setdefault(side.name, len(workers))
                spawned[side.name].append(spawn_workers(selection, side, k if processes > 1 else None, timeouts,
                                                        workers))
        sides: dict[str | None, list[dict[int, Slot]]] = {base.name: [], new.name: []}
        for k, order in enumerate(orders):
            for side in order:
                sides[side.name].append(prepare_execution(selection, spawned[side.name][k], side,
                                                          on_step if side is base and k == 0 else None,
                                                          k if processes > 1 else None))
        b_ex, n_ex = sides[base.name], sides[new.name]
        steps = sorted(b_ex[0])
        for i in steps:
            for a, b in zip((ex[i] for ex in b_ex), (ex[i] for ex in n_ex)):
                if a.status is Status.OK and b.status is Status.OK and (found := differences(a.identity, b.identity)):
                    raise UserError(f"the two sides prepared different identities for {a.identity.label()}: "
                                    f"{'; '.join(found)} (an A/B compares the same plan)")
        environments = {side.name: _environment(workers[first[side.name]], side) for side in (base, new)}
        paired = [i for i in steps if all(ex[i].item for ex in b_ex + n_ex)]
        for i in paired:
            for k, (a, b) in enumerate(zip(b_ex, n_ex)):
                a[i].item.together = b[i].item.together = (i, k)
        warm_all([ex[i] for i in paired for ex in b_ex + n_ex], timing)
        items = [ex[i].item for i in paired for pair in zip(b_ex, n_ex) for ex in pair]
        if duet:
            for i in paired:
                for a, b in zip(b_ex, n_ex):
                    simultaneous(a[i].item, b[i].item)
        _done, interrupted = time_items(items, timing, schedule, on_round)
        pairs = [(_side_entry([ex[i] for ex in b_ex], [ex[i] for ex in n_ex], "base"),
                  _side_entry([ex[i] for ex in n_ex], [ex[i] for ex in b_ex], "new")) for i in steps]
        return AbRun(pairs, environments, interrupted)
    finally:
        stop_all(workers)


def _environment(worker: Worker, side: Side) -> dict[str, Any]:
    h = worker.hello
    return {"python": h.get("python"), "path": side.path, "levit_bench": h.get("levit_bench"),
            "versions": h.get("versions"), "git_commit": (h.get("system") or {}).get("git_commit"),
            "allocator": (h.get("system") or {}).get("allocator"),
            "cpus": sorted(side.cpus) if side.cpus else None}


def _side_entry(mine: Sequence[Slot], other: Sequence[Slot], side: str) -> Entry:
    """One side's entry of a step from its executions; skipped when the other side is not ready."""
    lost = next((s for s in other if s.item is None), None)
    if all(s.item is not None for s in mine) and lost is not None:
        entry = Entry.of(mine[0].identity, Status.SKIPPED, f"not timed: the other side ended {lost.status}: "
                         f"{lost.reason}", mine[0].facts)
        entry.side = side
        return entry
    entry = entry_of(mine, side)
    entry.group = 0
    return entry


def simultaneous(a: Timed, b: Timed) -> None:
    """Duet (Bulej et al. 2020): the two items' re-warms, then their blocks, run at the same time in
    two threads (each waits on its own worker's pipe), so both sides meet the same interference.
    Whichever of the two the round calls first runs both; the other's hook, called next (they are
    adjacent), hands back what was measured meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    raw = {id(a): {"rewarm": a.rewarm, "block": a.block}, id(b): {"rewarm": b.rewarm, "block": b.block}}
    kept: dict[tuple[int, str], Any] = {}

    def hook(me: Timed, other: Timed, kind: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            if (id(me), kind) in kept:
                value = kept.pop((id(me), kind))
                if isinstance(value, BaseException):
                    raise value
                return value
            own, theirs = raw[id(me)][kind], raw[id(other)][kind]
            if other.error is not None:
                return own(*args)
            other_args = (args[0], other.warm.per_call_s) if kind == "rewarm" else (other.calls_per_round,)
            with ThreadPoolExecutor(2) as threads:
                mine, partner = threads.submit(own, *args), threads.submit(theirs, *other_args)
            kept[(id(other), kind)] = partner.exception() or partner.result()
            return mine.result()

        return call

    for me, other in ((a, b), (b, a)):
        me.rewarm, me.block = hook(me, other, "rewarm"), hook(me, other, "block")


__all__ = ["AbRun", "CanaryAdjustment", "Side", "Slot", "WorkerDied", "canary_adjustment", "entry_of", "execute_ab",
           "execute_in_workers", "prepare_execution", "simultaneous", "spawn_workers", "time_items", "warm_all"]
