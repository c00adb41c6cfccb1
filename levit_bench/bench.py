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

import gc
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil
import torch
from torch import nn

from . import zoo
from .backends import BACKENDS, ExportCache
from .backends.base import Backend, Runner
from .energy import energy_record, open_counter
from .errors import UserError, first_line
from .harness import TimingOptions
from .opcount import OpCount, count_ops
from .peak import cached_peak, get_peak
from .parity import parity_input
from .prepare import prepare_runner
from .results import Entry
from .runstate import run_state
from .schedule import Schedule, Timed, rounds_for, run_rounds, warm
from .spec import EventKind, ModelId, Settings, Status

#: memory that must stay free while entries are kept prepared, else the prepared group is timed
MIN_FREE_BYTES = 2 * 2**30
MIN_FREE_FRACTION = 0.15
#: a run timing entries at least this long measures (and caches) the peak when none is cached
PEAK_MIN_TIME_S = 2.0


@dataclass
class Plan:
    """Everything a run measures; ``settings.threads`` is already resolved."""

    models: list[str]
    backends: list[str]
    batch_sizes: list[int]
    settings: Settings = field(default_factory=Settings)
    timing: TimingOptions = field(default_factory=TimingOptions)
    weights: str | None = None
    img_size: int | None = None
    cache_dir: str | None = None
    shrink_on_oom: bool = False  # the paper's GPU protocol: halve the batch until it fits
    schedule: Schedule = field(default_factory=lambda: Schedule(None, 0))  # rounds chosen per group
    #: more than one: every entry at each precision, timed in the same rounds (int8 over fp32 paired)
    precisions: list[str] = field(default_factory=list)

    def settings_list(self) -> list[Settings]:
        """``settings`` at each precision of the plan (just ``settings`` when none are listed)."""
        return [replace(self.settings, precision=p) for p in self.precisions] or [self.settings]

    def steps(self) -> int:
        return len(self.models) * len(self.backends) * len(self.batch_sizes) * len(self.settings_list())


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


class _OutOfMemory(Exception):
    """An entry ran out of memory; carries the failed entry (the paper's GPU protocol retries smaller)."""

    def __init__(self, entry: Entry):
        super().__init__(entry.reason)
        self.entry = entry


@dataclass
class _Pending:
    """A prepared entry waiting for its rounds."""

    index: int  # its place in the plan
    entry: Entry
    runner: Runner
    timed: Timed
    images_per_call: int


#: how allocators say they are out of memory (torch's CPU allocator, CUDA, ONNX Runtime, OpenVINO)
_OOM_WORDS = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory",
              "failed to allocate memory", "bad_alloc")


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or any(w in text for w in _OOM_WORDS)


def execute(plan: Plan, on_event: Callable[[Event], None] | None = None,
            show_warning: Callable[[str], None] | None = None) -> list[Entry]:
    """Run every step of ``plan``; returns the entries in plan order.  Process state (threads,
    inductor's cache, dynamo's policy, the warnings hook) is set for the run and restored after."""
    cache = ExportCache(plan.cache_dir)
    with run_state(plan.settings.threads, cache.runtime_dir("inductor"), show_warning):
        return _Run(plan, cache, on_event or (lambda _e: None)).execute()


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

    def finish(self, index: int, entry: Entry) -> None:
        ops = self.ops.get(entry.model)
        if ops is not None:
            entry.explain(ops.macs, ops.params, self.peaks.get(entry.precision))
        self.done.append((index, entry))
        self.notify(Event(EventKind.ENTRY, entry.model, entry.backend, entry.batch_size, entry))

    def execute(self) -> list[Entry]:
        try:
            for name in self.plan.models:
                self._prepare_model(name)
            self._time_group()
        except BaseException:  # Ctrl-C, a UserError of a later model, a failing save: release what is held
            self._release_pending()
            raise
        return [e for _i, e in sorted(self.done, key=lambda ie: ie[0])]

    def _prepare_model(self, name: str) -> None:
        plan = self.plan
        img_size = zoo.input_size(name, plan.img_size)
        try:
            built = zoo.subject(name, weights=plan.weights, img_size=plan.img_size)
            reference, fused, model_id = built.reference, built.fused, built.model_id
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model that won't build fails its entries, not the run
            for settings in plan.settings_list():
                for backend in plan.backends:
                    for bs in plan.batch_sizes:
                        entry = Entry.for_step(name, backend, settings, bs, img_size)
                        entry.status, entry.reason = Status.FAILED, f"model build failed: {first_line(exc)}"
                        self.finish(self.step, entry)
                        self.step += 1
            return
        try:
            self.ops[name] = count_ops(fused, img_size)
        except Exception:  # noqa: BLE001 - a model the counter cannot trace is still measured
            self.ops[name] = None
        reference = reference.to(self.device)
        self.reference_logits: dict[int, torch.Tensor] = {}
        for settings in plan.settings_list():
            for backend_name in plan.backends:
                for bs in plan.batch_sizes:
                    self._prepare_step(model_id, reference, fused, BACKENDS[backend_name], settings, bs)
                    self.step += 1
                    if self._memory_short():
                        self._time_group()
        del reference, fused, built
        _free(self.device)

    def _prepare_step(self, model_id: ModelId, reference: nn.Module, fused: nn.Module, backend: Backend,
                      settings: Settings, bs: int) -> None:
        while True:
            self.notify(Event(EventKind.STEP, model_id.name, backend.name, bs))
            try:
                pending = _prepare(model_id, reference, fused, backend, self.plan, settings, bs, self.cache,
                                   self.reference_logits)
            except _OutOfMemory as oom:
                if self.pending:  # the prepared runners hold memory: time them, then try this batch again
                    self._time_group()
                    continue
                if self.plan.shrink_on_oom and bs > 1:
                    bs //= 2
                    _free(self.device)
                    continue
                pending = oom.entry
            break
        if isinstance(pending, Entry):
            self.finish(self.step, pending)
            _free(self.device)
        else:
            pending.index = self.step
            self.pending.append(pending)

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
        for settings in self.plan.settings_list():  # measured (or read from the cache) before any timing
            if settings.precision not in self.peaks:
                self.peaks[settings.precision] = _peak(settings, self.cache.root, self.plan.timing)

        def on_round(done: int, planned: int) -> None:
            self.notify(Event(EventKind.ROUND, round=done, rounds=planned, count=len(group)))

        on_round(0, rounds_for([p.timed for p in group], self.plan.timing, schedule))
        interrupted = False
        try:
            with torch.inference_mode():  # as in warm-up and parity: no autograd, no grad-mode recompile
                done = run_rounds([p.timed for p in group], self.plan.timing, schedule, on_round,
                                  None if isinstance(self.energy, str) else self.energy)
        except KeyboardInterrupt:
            interrupted, done = True, max(len(p.timed.rounds) for p in group)
        try:
            for p in group:
                self._record(p, done, interrupted)
        finally:
            for p in group:
                p.runner.close()
            for name in self.plan.backends:
                BACKENDS[name].end_group()
            self.groups += 1
            _free(self.device)
        if interrupted:
            raise KeyboardInterrupt

    def _record(self, p: _Pending, rounds_done: int, interrupted: bool) -> None:
        t, entry = p.timed, p.entry
        entry.group = self.groups
        try:
            if t.error is not None:
                entry.status, entry.reason = Status.FAILED, f"during the timed rounds: {t.error}"
            elif t.samples:
                entry.record(t, p.images_per_call, _peak_memory(self.device))
                entry.energy = energy_record(t.energy_j, t.metered_s, t.metered_calls * p.images_per_call, self.energy)
                if interrupted:
                    entry.notes.append(f"interrupted: timed in {len(t.rounds)} of the planned rounds")
                if self.plan.schedule.target_ci is not None and t.ci_half_width() > self.plan.schedule.target_ci:
                    entry.notes.append(f"did not reach --target-ci {self.plan.schedule.target_ci:.1%} "
                                       f"(half-width {t.ci_half_width():.1%} after {rounds_done} rounds)")
            else:
                entry.reason = "interrupted before its first timed round"
        finally:
            p.runner.close()  # (closing twice is harmless)
        if t.samples or not interrupted:
            self.finish(p.index, entry)

    def _release_pending(self) -> None:
        for p in self.pending:
            p.runner.close()
        self.pending = []
        for name in self.plan.backends:
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


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _peak_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def _prepare(model_id: ModelId, reference: nn.Module, fused: nn.Module, backend: Backend, plan: Plan,
             settings: Settings, batch_size: int, cache: ExportCache,
             reference_logits: dict[int, torch.Tensor]) -> _Pending | Entry:
    """A warmed-up runner that passed parity, or the finished (skipped/failed) entry.
    ``reference_logits``: the eager fp32 logits per batch size, computed once per model."""
    entry = Entry.for_step(model_id.name, backend.name, settings, batch_size, model_id.img_size)
    reason = backend.unavailable_reason(settings)
    if reason:  # before the parity batch is drawn (large at the GPU protocol's batch sizes)
        entry.reason = reason
        return entry
    runner = None
    try:
        x = parity_input(batch_size, model_id.img_size)
        runner = prepare_runner(entry, model_id, reference, fused, backend, settings, x, cache, reference_logits)
        if runner is None:
            return entry
        cuda = settings.device == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        timed = Timed(entry.label(), runner.bind(x), runner.synchronize, cuda)
        with torch.inference_mode():
            warm(timed, plan.timing)
    except KeyboardInterrupt:
        if runner is not None:
            runner.close()
        raise
    except Exception as exc:  # noqa: BLE001 - export/runtime errors fail this entry only
        if runner is not None:
            runner.close()
        entry.status = Status.FAILED
        if _is_oom(exc):
            entry.reason = "out of memory"
            raise _OutOfMemory(entry) from None
        entry.reason = first_line(exc)
        return entry
    return _Pending(0, entry, runner, timed, batch_size * runner.batches_per_call)
