"""Latency under load (issue 22): the scenarios of MLPerf LoadGen on every prepared runner.

* ``single-stream``: one request at a time, batch 1 (a closed loop of one worker); p50/p90/p99 with
  distribution-free bounds and LoadGen's early-stopping verdict;
* ``server``: open-loop Poisson arrivals (``loadgen.run_level``), latency from each request's
  scheduled arrival, optional dynamic batching; one level per ``--rate``, a sweep of rates
  (automatic: fractions of the runner's capacity, from its warm-up) or of concurrency
  (perf_analyzer's closed-loop ``--concurrency-range``), and with an SLO the search for the highest
  rate whose p99 meets it, between the last level that met it and the first that did not;
* ``offline``: everything queued at once (workers call back to back), images/s per batch size and
  concurrency; the best is the scenario's figure.

Every step comes from the one preparation path (``prepare.outcomes``), is warmed up through
``harness.warm_up``, and each level has its own warm-up (its first ``warmup_s`` are served, not
counted) and its own intervals.  Statistics are ``stats.py``'s; the record ``load_record.LoadRecord``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .backends import BACKENDS, ExportCache
from .errors import UserError
from .harness import TimingOptions, warm_up
from .load_record import LoadRecord
from .loadgen import Level, LevelResult, run_level
from .prepare import NotReady, Ready, outcomes
from .runstate import run_state
from .selection import Selection
from .spec import Identity, Status
from .stats import early_stopping, latency_percentiles, rate_interval

#: the automatic rate sweep: fractions of the capacity the warm-up shows (workers × batch / call);
#: the last is past it, so the curve shows where the queue stops being bounded
AUTO_FRACTIONS = (0.2, 0.4, 0.6, 0.75, 0.9, 1.1)
#: the search stops when the bracket's upper rate is within this factor of its lower one
SEARCH_RESOLUTION = 1.1
#: per level, at most this many per-request latencies are kept in the file (the counted ones, in order)
MAX_KEPT_LATENCIES = 20_000


@dataclass(frozen=True)
class LoadPlan:
    """Everything ``levit-bench load`` measures: the checked selection and the scenario's levels."""

    selection: Selection
    scenario: str
    rates: tuple[float, ...] = ()  # server: the levels asked (requests/s)
    sweep: str | None = None  # server: "rate" or "concurrency"
    concurrency: tuple[int, ...] = (1,)
    max_delay_s: float = 0.0  # server with a batch size above 1: dynamic batching's wait
    slo_p99_ms: float | None = None
    duration_s: float = 3.0  # counted seconds per level
    level_warmup_s: float = 0.5  # per level, served and not counted
    warmup_s: float = 1.0  # the runner's warm-up before its first level
    seed: int = 0
    search_steps: int = 3

    def steps(self) -> int:
        return self.selection.count()


def summarize_level(result: LevelResult, images_per_call: int) -> dict[str, Any]:
    """One level as a results file keeps it (docs/results-schema.md, ``load`` levels)."""
    lv = result.level
    lat = result.latency_s
    n = int(lat.size)
    span = float(result.end_s.max() - result.scheduled_s.min()) if n else 0.0
    ends = np.sort(result.end_s) if n else np.empty(0)
    ci = rate_interval(ends, np.ones(n)) if n else None
    durations = np.array([e - s for s, e, _k in result.calls])
    rate = n / span if span > 0 else None
    return {
        "rate": lv.rate, "concurrency": lv.concurrency, "max_batch": lv.max_batch,
        "max_delay_ms": lv.max_delay_s * 1000.0, "seed": lv.seed if lv.rate is not None else None,
        "duration_s": lv.duration_s, "warmup_s": lv.warmup_s,
        "requests": n, "offered": result.offered, "unserved": result.unserved,
        "achieved_rate": rate,
        "achieved_rate_ci95": list(ci) if ci else None,
        # a request is one image when a call serves a batch of requests (padded to the runner's
        # batch), else the runner's batch (closed loops: one call per request)
        "images_per_second": rate * images_per_call / lv.max_batch if rate else None,
        "latency": latency_percentiles(lat) if n else {},
        "mean_latency_ms": float(lat.mean()) * 1000.0 if n else None,
        "mean_wait_ms": float(result.wait_s.mean()) * 1000.0 if n else None,
        "service_ms": float(np.median(durations)) * 1000.0 if durations.size else None,
        "mean_batch": float(result.batch.mean()) if n else None,
        "queue": [[round(t, 6), q] for t, q in result.queue],
        "max_queue": max((q for _t, q in result.queue), default=0),
        "unsustainable": result.unsustainable,
        "early_stopping": [early_stopping(lat, p).to_dict() for p in (90.0, 99.0)] if n else [],
        "latency_s": [round(float(x), 7) for x in lat[:MAX_KEPT_LATENCIES]],
    }


def p99_ms(level: dict[str, Any]) -> float | None:
    return ((level.get("latency") or {}).get("p99") or {}).get("ms")


def meets(level: dict[str, Any], slo_ms: float) -> bool:
    """A level meets the SLO: sustained (no unbounded queue, nothing left unserved) and p99 ≤ SLO."""
    p99 = p99_ms(level)
    return not level.get("unsustainable") and not level.get("unserved") and p99 is not None and p99 <= slo_ms


def proven(level: dict[str, Any], slo_ms: float) -> bool:
    """Whether the level's side of the SLO is proven: met with the p99's upper bound under it, or
    missed with its lower bound above it (an unsustainable level misses for certain)."""
    if level.get("unsustainable"):
        return True
    lo, hi = ((level.get("latency") or {}).get("p99") or {}).get("ci95_ms") or [None, None]
    return (hi is not None and hi <= slo_ms) if meets(level, slo_ms) else (lo is not None and lo > slo_ms)


def search_slo(levels: list[dict[str, Any]], measure: Callable[[float], dict[str, Any]], slo_ms: float,
               steps: int) -> dict[str, Any]:
    """The highest rate whose p99 meets ``slo_ms``: from the rate levels measured so far, bisect
    (geometrically) between the highest that met it and the lowest above it that did not, at most
    ``steps`` times or until the two are within :data:`SEARCH_RESOLUTION` (when every rate met it,
    the next level is 1.5 times the highest); ``measure(rate)`` adds a
    level (appended to ``levels``).  Returns the bracket with each side's p99 interval."""
    def bracket() -> tuple[dict | None, dict | None]:
        rated = sorted((lv for lv in levels if lv.get("rate")), key=lambda lv: lv["rate"])
        met = [lv for lv in rated if meets(lv, slo_ms)]
        best = met[-1] if met else None
        above = [lv for lv in rated if not meets(lv, slo_ms) and (best is None or lv["rate"] > best["rate"])]
        return best, (above[0] if above else None)

    for _ in range(steps):
        met, failed = bracket()
        if met is not None and failed is None:  # every rate met it: look above, half as fast again
            levels.append(measure(met["rate"] * 1.5))
            continue
        if met is None or failed["rate"] / met["rate"] <= SEARCH_RESOLUTION:
            break
        levels.append(measure(math.sqrt(met["rate"] * failed["rate"])))
    met, failed = bracket()
    return {"slo_p99_ms": slo_ms, "met": _side(met), "failed": _side(failed),
            "proven": bool(met and failed and proven(met, slo_ms) and proven(failed, slo_ms)),
            "statement": statement(met, failed, slo_ms, levels)}


def _side(level: dict[str, Any] | None) -> dict[str, Any] | None:
    if level is None:
        return None
    p99 = (level.get("latency") or {}).get("p99") or {}
    return {"rate": level["rate"], "achieved_rate": level.get("achieved_rate"), "p99_ms": p99.get("ms"),
            "p99_ci95_ms": p99.get("ci95_ms"), "unsustainable": level.get("unsustainable")}


def statement(met: dict | None, failed: dict | None, slo_ms: float, levels: Sequence[dict]) -> str:
    """The search's finding in one sentence (what the terminal and the report say)."""
    if met is None:
        best = min((lv for lv in levels if p99_ms(lv) is not None), key=p99_ms, default=None)
        where = (f"; the best level was {best['rate']:g}/s with p99 {p99_ms(best):.3g} ms" if best and best.get("rate")
                 else "")
        return f"no level met p99 ≤ {slo_ms:g} ms{where}"
    words = f"p99 ≤ {slo_ms:g} ms met up to {met['rate']:.4g}/s (p99 {p99_ms(met):.3g} ms)"
    if failed is None:
        return words + "; every rate measured met it (the peak is above the highest rate measured)"
    why = "unsustainable" if failed.get("unsustainable") else f"p99 {p99_ms(failed):.3g} ms"
    return words + f", missed at {failed['rate']:.4g}/s ({why})"


class _Measurer:
    """One prepared runner's levels: bound calls for the most workers any level uses."""

    def __init__(self, ready: Ready, plan: LoadPlan, on_level: Callable[[Identity, dict], None]):
        self.ready, self.plan, self.on_level = ready, plan, on_level
        self.batch = ready.identity.batch_size
        self.workers = max(plan.concurrency)
        self.calls = ready.runner.bind_many(ready.x, self.workers)
        self.seed = plan.seed

    def level(self, rate: float | None, concurrency: int, max_batch: int = 1, max_delay_s: float = 0.0) -> dict:
        self.seed += 1  # each level its own arrivals, all from the run's seed
        level = Level(rate=rate, concurrency=concurrency, duration_s=self.plan.duration_s,
                      warmup_s=self.plan.level_warmup_s, max_batch=max_batch, max_delay_s=max_delay_s, seed=self.seed)
        summary = summarize_level(run_level(self.calls, level, torch.inference_mode), self.batch)
        self.on_level(self.ready.identity, summary)
        return summary


def measure(ready: Ready, plan: LoadPlan, on_level: Callable[[Identity, dict], None],
            started: list[LoadRecord] | None = None) -> LoadRecord:
    """Every level of ``plan``'s scenario on one prepared runner (warmed up first); the record is
    appended to ``started`` as soon as it exists, so an interrupted one keeps its finished levels."""
    m = _Measurer(ready, plan, on_level)
    with torch.inference_mode():
        w = warm_up(m.calls[0], TimingOptions(warmup_s=plan.warmup_s), ready.runner.synchronize, ready.first_call_s)
    record = LoadRecord(ready.identity, Status.OK, plan.scenario, sweep=plan.sweep, slo_p99_ms=plan.slo_p99_ms,
                        service_ms=w.per_call_s * 1000.0, notes=list(ready.facts.notes))
    record.concurrency = {"workers": m.workers, "threads_per_worker": ready.identity.threads,
                          **ready.runner.concurrency_facts(m.workers)}
    if started is not None:
        started.append(record)
    if plan.scenario == "single-stream":
        record.levels.append(m.level(None, 1))
        record.early_stopping = record.levels[0]["early_stopping"]
    elif plan.scenario == "offline":
        record.levels += [m.level(None, c) for c in plan.concurrency]
        ips = [lv["images_per_second"] or 0.0 for lv in record.levels]
        record.best_level = int(np.argmax(ips))
    elif plan.sweep == "concurrency":
        record.levels += [m.level(None, c) for c in plan.concurrency]
    else:
        _server(record, m, plan, w.per_call_s)
    return record


def _server(record: LoadRecord, m: _Measurer, plan: LoadPlan, per_call_s: float) -> None:
    workers = max(plan.concurrency)
    capacity = workers * m.batch / max(per_call_s, 1e-6)  # requests/s the warm-up suggests
    if plan.rates:
        rates = list(plan.rates)
    elif plan.sweep == "rate" or plan.slo_p99_ms is not None:
        rates = [f * capacity for f in AUTO_FRACTIONS]
        record.notes.append(f"automatic rates: {', '.join(f'{f:g}' for f in AUTO_FRACTIONS)} × the warm-up's "
                            f"capacity {capacity:.4g}/s ({workers} workers × batch {m.batch} / {per_call_s * 1000:.3g} ms)")
    else:
        raise UserError("--scenario server needs --rate, --sweep or --slo-p99-ms")

    def at(rate: float) -> dict:
        return m.level(rate, workers, m.batch, plan.max_delay_s)

    record.levels += [at(r) for r in rates]
    if plan.slo_p99_ms is not None:
        record.search = search_slo(record.levels, at, plan.slo_p99_ms, plan.search_steps)
        met = record.search["met"]
        record.peak_rate = met["rate"] if met else None
    else:
        sustained = [lv["achieved_rate"] for lv in record.sustained() if lv.get("achieved_rate")]
        record.peak_rate = max(sustained, default=None)


def execute(plan: LoadPlan, on_record: Callable[[LoadRecord], None],
            on_step: Callable[[str, str, int], None] | None = None,
            on_level: Callable[[Identity, dict], None] | None = None,
            show_warning: Callable[[str], None] | None = None) -> list[LoadRecord]:
    """Every step of the plan prepared (``prepare.outcomes``) and measured under load; each finished
    record goes to ``on_record`` (the command saves it at once)."""
    sel = plan.selection
    cache = ExportCache(sel.cache_dir)
    out: list[LoadRecord] = []
    with run_state(sel.settings.threads, cache.runtime_dir("inductor"), show_warning):
        for _subject, outcome in outcomes(sel, cache, sel.settings.device, on_step):
            if isinstance(outcome, NotReady):
                record = LoadRecord(outcome.identity, outcome.status, plan.scenario, outcome.reason, sweep=plan.sweep,
                                    slo_p99_ms=plan.slo_p99_ms, notes=list(outcome.facts.notes))
            else:
                started: list[LoadRecord] = []
                try:
                    record = measure(outcome, plan, on_level or (lambda _i, _l: None), started)
                except KeyboardInterrupt:
                    if started and started[0].levels:  # the levels finished before Ctrl-C are kept
                        started[0].notes.append(f"interrupted after {len(started[0].levels)} levels")
                        out.append(started[0])
                        on_record(started[0])
                    raise
                except UserError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a runtime error under load fails this step only
                    record = LoadRecord(outcome.identity, Status.FAILED, plan.scenario, f"under load: {exc}",
                                        sweep=plan.sweep, slo_p99_ms=plan.slo_p99_ms)
                finally:
                    outcome.runner.close()
                    BACKENDS[outcome.identity.backend].end_group()
            out.append(record)
            on_record(record)
    return out
