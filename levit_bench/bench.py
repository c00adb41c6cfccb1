"""A plan (models x backends x batch sizes at one Settings) and running it.

Two phases.  First every entry is prepared: the model built and fused (the unfused eager fp32 model
kept as the parity reference), the runner made by its backend, parity checked on the seeded batch
that will be timed, and one warm-up.  A backend that cannot run is ``skipped``, one that fails to
export or breaks parity is ``failed``; the run goes on.  Then the prepared entries are timed in
randomized interleaved rounds (``schedule.py``), so the machine's drift spreads over all of them
and shows in their intervals.  Where memory runs short, the entries prepared so far are timed as
one group before more are prepared; each entry records its group.

``on_event`` sees every finished entry (the CLI saves the results file after each, so an
interrupted run keeps them: entries interrupted mid-rounds keep the rounds they completed).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil
import torch

from .backends import BACKENDS, ExportCache
from .backends.base import Runner
from .canary import DEFAULT_CANARY, Canary, Reference, build as build_canary, reference as canary_reference
from .endtoend import EndToEnd, Items, items as e2e_items, record as e2e_record
from .energy import energy_record, open_counter
from .errors import UserError, first_line
from .harness import TimingOptions
from .oncpu import canary_inputs
from .opcount import OpCount, count_ops
from .peak import cached_peak, get_peak, machine_fingerprint
from .errors import is_out_of_memory
from .prepare import NotReady, Outcome, Ready, Subject, free, outcomes
from .entry_parts import Timing
from .results import Entry
from .runstate import run_state
from .schedule import Schedule, Timed, rounds_for, run_rounds, warm
from .selection import Selection
from .spec import EventKind, Settings, Status
from .stats import group_canary

#: memory that must stay free while entries are kept prepared, else the prepared group is timed
MIN_FREE_BYTES = 2 * 2**30
MIN_FREE_FRACTION = 0.15
#: a run timing entries at least this long measures (and caches) the peak when none is cached
PEAK_MIN_TIME_S = 2.0


@dataclass
class Plan:
    """Everything a run measures: the checked selection (``cli.selection.Selection``: models ×
    precisions × backends × batch sizes at one device, threads and options), how to time it, and
    the paper's GPU rule of halving a batch that does not fit."""

    selection: Selection
    timing: TimingOptions = field(default_factory=TimingOptions)
    shrink_on_oom: bool = False  # the paper's GPU protocol: halve the batch until it fits
    schedule: Schedule = field(default_factory=lambda: Schedule(None, 0))  # rounds chosen per group
    processes: int = 1  # worker processes per entry (``executions.py``); 1: everything in this process
    #: ``run --chunk``: the steps in chunks timed one after another (each its own groups); None: one chunk
    chunks: tuple[frozenset[tuple[str, str, str, int]], ...] | None = None
    first_group: int = 0  # the group number of the first group timed (a resumed run's come after the kept ones)
    end_to_end: EndToEnd | None = None  # ``--input jpeg``: the JPEG path timed beside each entry (``endtoend.py``)

    @property
    def settings(self) -> Settings:
        return self.selection.settings

    def steps(self) -> int:
        return self.selection.count()


@dataclass
class Event:
    """Progress notification (outside any timed region)."""

    kind: EventKind
    model: str = ""
    backend: str = ""
    batch_size: int = 0
    entry: Entry | None = None
    round: int = 0  # ROUND: rounds done so far (0: the timing of a group starts)
    rounds: int = 0  # ROUND: rounds planned
    count: int = 0  # ROUND: entries timed in these rounds


@dataclass
class _Pending:
    """A prepared entry waiting for its rounds."""

    index: int  # its place in the plan
    entry: Entry
    runner: Runner
    timed: Timed
    images_per_call: int
    e2e: Items | None = None  # ``--input jpeg``: the entry's end-to-end items, timed in the same rounds

    def all_timed(self) -> list[Timed]:
        return [self.timed] + (self.e2e.timed() if self.e2e is not None else [])

    def close(self) -> None:
        if self.e2e is not None:
            self.e2e.close()
        self.runner.close()


def execute(plan: Plan, on_event: Callable[[Event], None] | None = None,
            show_warning: Callable[[str], None] | None = None) -> list[Entry]:
    """Run every step of ``plan``; returns the entries in plan order.  Process state (threads,
    inductor's cache, dynamo's policy, the warnings hook) is set for the run and restored after."""
    if plan.chunks is not None or plan.first_group:
        return _in_chunks(plan, on_event or (lambda _e: None), show_warning)
    if plan.processes > 1:
        return _in_workers(plan, on_event or (lambda _e: None))
    cache = ExportCache(plan.selection.cache_dir)
    with run_state(plan.settings.threads, cache.runtime_dir("inductor"), show_warning):
        return _Run(plan, cache, on_event or (lambda _e: None)).execute()


def _in_chunks(plan: Plan, notify: Callable[[Event], None], show_warning: Callable[[str], None] | None) -> list[Entry]:
    """Each chunk of the plan run on its own, in turn (an interrupted run keeps the chunks done);
    group numbers go on from chunk to chunk (from ``first_group``), so no two chunks' entries pair."""
    order = {(m, s.precision, b, bs): i for i, (m, s, b, bs) in enumerate(plan.selection.steps())}
    offset, out = plan.first_group, []
    for chunk in plan.chunks if plan.chunks is not None else (frozenset(order),):
        top = [offset]

        def relay(ev: Event, base: int = offset) -> None:
            if ev.kind is EventKind.ENTRY and ev.entry is not None and ev.entry.group is not None:
                ev.entry.group += base
                top[0] = max(top[0], ev.entry.group + 1)
            notify(ev)

        sub = replace(plan, selection=plan.selection.restricted(chunk), chunks=None, first_group=0)
        if sub.selection.count():
            out += execute(sub, relay, show_warning)
        offset = top[0]
    return sorted(out, key=lambda e: order.get((e.model, e.precision, e.backend, e.batch_size), len(order)))


def _machine_reference(settings: Settings, cache_root: Path, run_s: float) -> Reference:
    """The default canary's reference on this machine (cached per device and threads under
    ``cache_root``; a run's median canary ``run_s`` when there is none yet)."""
    return canary_reference(DEFAULT_CANARY, settings.device, settings.threads, machine_fingerprint(settings.device),
                            cache_root, run_s)


def _in_workers(plan: Plan, notify: Callable[[Event], None]) -> list[Entry]:
    """``--processes K``: the same plan, each step prepared in K worker processes (``executions.py``),
    every (step, process) an item of the same rounds; each entry pools its processes' rounds and, on
    the CPU, carries adjusted figures (the on-CPU share read in each worker, the canary timed here,
    next to each worker's block).
    (No energy meter and no MAC count there: the counters and the models live in the workers.)"""
    from .executions import WorkerDied, execute_in_workers

    count = [0]

    def on_round(done: int, planned: int) -> None:
        notify(Event(EventKind.ROUND, round=done, rounds=planned, count=count[0]))

    def on_step(identity) -> None:
        count[0] += 1
        notify(Event(EventKind.STEP, identity.model, identity.backend, identity.batch_size))

    s = plan.settings
    cache = ExportCache(plan.selection.cache_dir)

    def reference(run_s: float) -> Reference:
        return _machine_reference(s, cache.root, run_s)

    try:
        with run_state(s.threads, cache.runtime_dir("inductor")):  # the canary runs here, at the run's threads
            canary = build_canary(DEFAULT_CANARY) if torch.device(s.device).type == "cpu" else None
            entries, interrupted = execute_in_workers(plan.selection, plan.timing, plan.schedule, plan.processes,
                                                      on_step, on_round, canary=canary, reference=reference)
    except WorkerDied as exc:  # this interpreter could not start a worker of itself
        raise UserError(f"--processes {plan.processes}: {exc}") from None
    for e in entries:
        if e.timing is not None or not interrupted:
            notify(Event(EventKind.ENTRY, e.model, e.backend, e.batch_size, e))
    if interrupted:
        raise KeyboardInterrupt
    return entries


class _Run:
    def __init__(self, plan: Plan, cache: ExportCache, notify: Callable[[Event], None]):
        self.plan, self.cache, self.notify = plan, cache, notify
        self.device = torch.device(plan.settings.device)
        self.done: list[tuple[int, Entry]] = []
        self.pending: list[_Pending] = []
        self.groups = 0
        self.step = 0
        self.ops: dict[str, OpCount | None] = {}  # per model: what it computes (None: could not count)
        self.peaks: dict[str, float | None] = {}  # per precision: the machine's GEMM peak, GMAC/s
        self.energy = open_counter(plan.settings.device)  # a counter, or why there is none
        self.canary: Canary | None = None  # built with the first group (CPU runs): the machine-speed canary
        self.reference: Reference | None = None  # what adjusted figures are scaled to (per machine, cached)

    def finish(self, index: int, entry: Entry) -> None:
        ops = self.ops.get(entry.model)
        if ops is not None:
            entry.add_explain(ops.macs, ops.params, self.peaks.get(entry.precision))
        self.done.append((index, entry))
        self.notify(Event(EventKind.ENTRY, entry.model, entry.backend, entry.batch_size, entry))

    def execute(self) -> list[Entry]:
        try:
            for subject, outcome in outcomes(self.plan.selection, self.cache, self.plan.settings.device,
                                             lambda m, b, bs: self.notify(Event(EventKind.STEP, m, b, bs))):
                if subject is not None and subject.model_id.name not in self.ops:
                    self.ops[subject.model_id.name] = _count(subject)
                self._take(subject, outcome)
                self.step += 1
                if self._memory_short():
                    self._time_group()
            self._time_group()
        except BaseException:  # Ctrl-C, a UserError of a later model, a failing save: release what is held
            self._release_pending()
            raise
        return [e for _i, e in sorted(self.done, key=lambda ie: ie[0])]

    def _take(self, subject: Subject | None, outcome: Outcome) -> None:
        """A prepared step: warmed up and kept for the rounds, or finished with its reason.  Out of
        memory: time what is prepared and try again; the paper's GPU protocol halves the batch."""
        while True:
            i = outcome.identity
            if isinstance(outcome, Ready):
                outcome = self._warm(outcome)
            if isinstance(outcome, NotReady) and outcome.oom and subject is not None:
                bs = i.batch_size
                if self.pending:  # the prepared runners hold memory: time them, then try this batch again
                    self._time_group()
                elif self.plan.shrink_on_oom and bs > 1:
                    bs //= 2
                    free(self.device)
                else:
                    break
                outcome = subject.prepare(i.backend, i.settings, bs, self.cache)
                continue
            break
        if isinstance(outcome, NotReady):
            self.finish(self.step, Entry.of(outcome.identity, outcome.status, outcome.reason, outcome.facts))
            free(self.device)
        else:
            self.pending.append(outcome)

    def _warm(self, ready: Ready) -> _Pending | NotReady:
        """The prepared runner warmed up for timing; a failure (or OOM) closes it."""
        entry = Entry.of(ready.identity, Status.SKIPPED, "", ready.facts)
        try:
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            timed = Timed(entry.label(), ready.runner.bind(ready.x), ready.runner.synchronize,
                          self.device.type == "cuda", threads=ready.identity.threads if self.device.type == "cpu" else None)
            with torch.inference_mode():
                warm(timed, self.plan.timing, ready.first_call_s)
                e2e = None if self.plan.end_to_end is None else e2e_items(
                    self.plan.end_to_end, entry.label(), ready.identity.model, self.plan.selection.img_size,
                    ready.runner, ready.identity.batch_size, self.plan.settings.threads, self.plan.timing)
        except KeyboardInterrupt:
            ready.runner.close()
            raise
        except Exception as exc:  # noqa: BLE001 - runtime errors fail this entry only
            ready.runner.close()
            oom = is_out_of_memory(exc)
            return NotReady(ready.identity, Status.FAILED, "out of memory" if oom else first_line(exc), ready.facts, oom)
        return _Pending(self.step, entry, ready.runner, timed, ready.identity.batch_size * ready.runner.batches_per_call,
                        e2e)

    def _memory_short(self) -> bool:
        """Whether to time what is prepared before preparing more (each runner holds its model)."""
        vm = psutil.virtual_memory()
        if vm.available < max(MIN_FREE_BYTES, MIN_FREE_FRACTION * vm.total):
            return True
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            return free < MIN_FREE_FRACTION * total
        return False

    def _time_group(self) -> None:
        if not self.pending:
            return
        group, self.pending = self.pending, []
        schedule = self.plan.schedule
        for settings in self.plan.selection.settings_list():  # measured (or read from the cache) before any timing
            if settings.precision not in self.peaks:
                self.peaks[settings.precision] = _peak(settings, self.cache.root, self.plan.timing)

        def on_round(done: int, planned: int) -> None:
            self.notify(Event(EventKind.ROUND, round=done, rounds=planned, count=len(group)))

        timed = [t for p in group for t in p.all_timed()]
        on_round(0, rounds_for(timed, self.plan.timing, schedule))
        interrupted = False
        try:
            with torch.inference_mode():  # as in warm-up and parity: no autograd, no grad-mode recompile
                if self.canary is None and self.device.type == "cpu":
                    self.canary = build_canary(DEFAULT_CANARY)
                done = run_rounds(timed, self.plan.timing, schedule, on_round,
                                  None if isinstance(self.energy, str) else self.energy, self.canary)
        except KeyboardInterrupt:
            interrupted, done = True, max(len(p.timed.rounds) for p in group)
        beta, run_s = group_canary([canary_inputs(p.timed.round_samples(), p.timed.rounds) for p in group])
        self._reference(run_s)
        try:
            for p in group:
                self._record(p, done, interrupted, beta, run_s)
        finally:
            for p in group:
                p.close()
            for name in self.plan.selection.backends:
                BACKENDS[name].end_group()
            self.groups += 1
            free(self.device)
        if interrupted:
            raise KeyboardInterrupt

    def _record(self, p: _Pending, rounds_done: int, interrupted: bool, canary_beta: float = 1.0,
                canary_run_s: float | None = None) -> None:
        t, entry = p.timed, p.entry
        entry.group = self.groups
        try:
            if t.error is not None:
                entry.status, entry.reason = Status.FAILED, f"during the timed rounds: {t.error}"
            elif t.samples:
                entry.add_timing(Timing.measure(
                    t.samples, [r.to_dict() for r in t.rounds], p.images_per_call,
                    warmup_calls=t.warm.calls if t.warm else None, first_call_s=t.warm.first_call_s if t.warm else None,
                    cuda_max_memory_bytes=_peak_memory(self.device), canary=self.reference,
                    canary_cost_s=t.canary_cost_s if self.reference is not None else None,
                    canary_beta=canary_beta, canary_run_s=canary_run_s))
                entry.energy = energy_record(t.energy_j, t.metered_s, t.metered_calls * p.images_per_call, self.energy)
                if p.e2e is not None:
                    entry.end_to_end = e2e_record(self.plan.end_to_end, p.e2e, self.plan.settings.threads)
                if interrupted:
                    entry.notes.append(f"interrupted: timed in {len(t.rounds)} of the planned rounds")
                if self.plan.schedule.target_ci is not None and t.ci_half_width() > self.plan.schedule.target_ci:
                    entry.notes.append(f"did not reach --target-ci {self.plan.schedule.target_ci:.1%} "
                                       f"(half-width {t.ci_half_width():.1%} after {rounds_done} rounds)")
            else:
                entry.reason = "interrupted before its first timed round"
        finally:
            p.close()  # (closing twice is harmless)
        if t.samples or not interrupted:
            self.finish(p.index, entry)

    def _reference(self, group_median_s: float | None) -> None:
        """The canary reference, once per run: the machine's cached one, else this group's median
        canary (then cached).  A CPU canary says nothing of a GPU's speed: CUDA runs have none."""
        if self.canary is None or self.reference is not None or group_median_s is None:
            return
        self.reference = _machine_reference(self.plan.settings, self.cache.root, group_median_s)

    def _release_pending(self) -> None:
        for p in self.pending:
            p.close()
        self.pending = []
        for name in self.plan.selection.backends:
            BACKENDS[name].end_group()


def _peak(settings: Settings, cache_root: Path, timing: TimingOptions) -> float | None:
    """The machine's GEMM peak (GMAC/s) at the run's device, precision and threads: from the cache,
    else measured now (2 s, then cached for this machine).  A run asking for less timing per entry
    than that uses a cached peak only (``levit-bench sysinfo --peak`` caches one): measuring a
    peak would cost it more than its entries.  None where there is none, or none is defined (int8)."""
    s = settings
    try:
        if timing.min_time_s >= PEAK_MIN_TIME_S:
            return get_peak(s.device, s.precision, s.threads, cache_root).gmacs_per_s
        found = cached_peak(s.device, s.precision, s.threads, cache_root)
        return found.gmacs_per_s if found else None
    except UserError:
        return None


def _peak_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def _count(subject: Subject) -> OpCount | None:
    """What the model computes, counted on the fused copy as timed; None where it cannot be traced."""
    try:
        return count_ops(subject.fused, subject.model_id.img_size)
    except Exception:  # noqa: BLE001 - a model the counter cannot trace is still measured
        return None
