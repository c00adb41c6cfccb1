"""The gate on latency under load (issue 22): ``compare`` gates p99 and the peak rate of two files'
``load`` records as it gates images/s, with the same three outcomes.

Matched on (entry key, scenario).  Latency figures (higher is worse): the p99 of every server level
offered the same rate with the same workers in both files, and single-stream's p90 and p99.  The
peak rate (lower is worse): the highest rate meeting the SLO (both searched for the same one) or,
without one, the highest sustained rate.  Each figure's ratio new/base gets the interval spanned by
the two sides' intervals (the distribution-free percentile intervals; the search's bracket, or the
achieved rate's interval): **fail** when the whole interval is beyond the threshold, **pass** when
none of it is, **inconclusive** otherwise (say, too few requests for a p99 bound: 368 at 95%).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .load_record import LoadRecord
from .results import RunRecord
from .verdict import FAIL, INCONCLUSIVE, PASS


@dataclass
class LoadComparison:
    """One gated figure of a load record in both files."""

    base: LoadRecord
    new: LoadRecord
    figure: str  # "p99 at 120/s", "single-stream p90", "peak rate under p99 ≤ 200 ms", ...
    base_value: float
    new_value: float
    interval: tuple[float, float]  # of new/base (0 or inf where a side has no bound)
    higher_is_worse: bool
    outcome: str
    reason: str

    @property
    def ratio(self) -> float:
        return self.new_value / self.base_value

    @property
    def change_pct(self) -> float:
        return (self.ratio - 1.0) * 100.0


def _ci(p: dict) -> tuple[float | None, float | None]:
    lo, hi = p.get("ci95_ms") or [None, None]
    return lo, hi


def judge(base: float, base_ci: tuple, new: float, new_ci: tuple, threshold: float,
          higher_is_worse: bool) -> tuple[tuple[float, float], str, str]:
    """The ratio's interval (spanned by both sides' intervals; a missing bound is unbounded) and the
    outcome at ``threshold`` (a fraction) with its reason."""
    b_lo, b_hi = (v if v is not None else d for v, d in zip(base_ci, (0.0, math.inf)))
    n_lo, n_hi = (v if v is not None else d for v, d in zip(new_ci, (0.0, math.inf)))
    lo = n_lo / b_hi if b_hi > 0 and math.isfinite(b_hi) else 0.0
    hi = n_hi / b_lo if b_lo > 0 else math.inf
    worse = (1 + threshold) if higher_is_worse else 1 / (1 + threshold)
    beyond = (lambda r: r > worse) if higher_is_worse else (lambda r: r < worse)
    word = "slower" if higher_is_worse else "lower"
    if beyond(lo if higher_is_worse else hi):
        return (lo, hi), FAIL, f"new/base {new / base:.3f}, its interval wholly {word} than the {threshold:.0%} threshold"
    if not beyond(hi if higher_is_worse else lo):
        return (lo, hi), PASS, f"a change beyond {threshold:.0%} is ruled out by both intervals"
    missing = None in base_ci or None in new_ci
    why = ("a side has too few requests (or too coarse a bracket) for a bound" if missing
           else "the intervals straddle the threshold")
    return (lo, hi), INCONCLUSIVE, why


def _levels(r: LoadRecord) -> dict[tuple, dict]:
    return {(lv.get("rate"), lv.get("concurrency")): lv for lv in r.levels
            if lv.get("rate") and not lv.get("unsustainable")}


def compare_load_records(b: LoadRecord, n: LoadRecord, threshold: float) -> list[LoadComparison]:
    """Every figure the two records share, judged."""
    rows: list[LoadComparison] = []

    def add(figure: str, bv, bci, nv, nci, higher: bool) -> None:
        if bv and nv:
            interval, outcome, reason = judge(bv, bci, nv, nci, threshold, higher)
            rows.append(LoadComparison(b, n, figure, bv, nv, interval, higher, outcome, reason))

    if b.scenario == "single-stream":
        for name in ("p90", "p99"):
            bp, np_ = (b.levels[0].get("latency") or {}).get(name) or {}, (n.levels[0].get("latency") or {}).get(name) or {}
            add(f"single-stream {name} ms", bp.get("ms"), _ci(bp), np_.get("ms"), _ci(np_), True)
    if b.scenario != "server":
        return rows
    bl, nl = _levels(b), _levels(n)
    for key in [k for k in bl if k in nl]:
        bp, np_ = (bl[key].get("latency") or {}).get("p99") or {}, (nl[key].get("latency") or {}).get("p99") or {}
        add(f"p99 ms at {key[0]:g}/s, {key[1]} workers", bp.get("ms"), _ci(bp), np_.get("ms"), _ci(np_), True)
    if b.slo_p99_ms and b.slo_p99_ms == n.slo_p99_ms and b.search and n.search:
        def bracket(r: LoadRecord) -> tuple:
            met, failed = r.search.get("met") or {}, r.search.get("failed") or {}
            return met.get("rate"), failed.get("rate")
        add(f"peak rate/s under p99 ≤ {b.slo_p99_ms:g} ms", b.peak_rate, bracket(b), n.peak_rate, bracket(n), False)
    elif not b.slo_p99_ms and not n.slo_p99_ms:
        def best(r: LoadRecord) -> tuple:
            sustained = [lv for lv in r.sustained() if lv.get("achieved_rate")]
            top = max(sustained, key=lambda lv: lv["achieved_rate"], default=None)
            return (top["achieved_rate"], tuple(top.get("achieved_rate_ci95") or (None, None))) if top else (None, None)
        (bv, bci), (nv, nci) = best(b), best(n)
        add("highest sustained rate/s", bv, bci or (None, None), nv, nci or (None, None), False)
    return rows


def compare_load(base: RunRecord, new: RunRecord, threshold_pct: float) -> list[LoadComparison]:
    """Every gated figure of the load records measured (ok) in both runs."""
    b_ok = {r.key: r for r in base.load if r.ok}
    n_ok = {r.key: r for r in new.load if r.ok}
    return [row for k in b_ok if k in n_ok for row in compare_load_records(b_ok[k], n_ok[k], threshold_pct / 100.0)]


def unmatched_load(base: RunRecord, new: RunRecord) -> list[str]:
    """Load records not ok in both files, each with why."""
    b_ok = {r.key for r in base.load if r.ok}
    n_ok = {r.key for r in new.load if r.ok}
    lines = [f"load ({r.scenario}) only in base: {r.label()}" for r in base.load if r.ok and r.key not in n_ok]
    lines += [f"load ({r.scenario}) only in new: {r.label()}" for r in new.load if r.ok and r.key not in b_ok]
    lines += [f"load ({r.scenario}) {side} {r.status}: {r.label()}: {r.reason}"
              for side, rec in (("base", base), ("new", new)) for r in rec.load if not r.ok]
    return lines
