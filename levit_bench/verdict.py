"""The gate's verdict: did the new side get slower by more than the threshold that matters?

One function, :func:`slowdown_verdict`, for ``compare`` (two runs) and ``ab`` (both sides in one
job, paired round by round): a one-sided t test on log round medians combined with the size
threshold, with three outcomes (pass, fail, inconclusive) and, when inconclusive, about how many more
rounds per side would decide (as MLPerf LoadGen's early stopping says how many more queries it needs).
Rounds, not calls, are the unit (calls inside a round differ by 3-9%, rounds by 10-18%: issue 21), and
the t test reaches its alpha at 6-10 rounds where a two-sided Mann-Whitney on 6 against 6 could not.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .stats import RERUN_RESIDUAL_ADJUSTED, Rounds

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
#: Standard deviation (log speed) added to the variance of every unpaired difference of two runs on
#: one machine: what separated two runs' estimates beyond both runs' round-to-round errors in the
#: rerun study (the residual of :data:`RERUN_RESIDUAL_ADJUSTED`, 1.9%, process effects included); the
#: rounds of one process pair share their processes, so the paired test leaves it out unless told.
GATE_FLOOR = RERUN_RESIDUAL_ADJUSTED / 1.96
#: more rounds than this per side are never suggested (the answer is then "more rounds would not")
MAX_MORE_ROUNDS = 1000


@dataclass(frozen=True)
class Verdict:
    """New against base: ``outcome`` pass, fail or inconclusive at ``threshold``; ``ratio`` new speed
    over base speed (< 1: slower) with its one-sided ``1 - alpha`` bounds (``interval``: lower,
    upper); ``p`` the one-sided p of "not slower"; ``more_rounds`` about how many more rounds per side
    would decide (None when decided, or when no number would: ``reason`` says which)."""

    outcome: str
    ratio: float
    interval: tuple[float, float]
    p: float
    more_rounds: int | None
    threshold: float
    alpha: float
    paired: bool
    rounds: tuple[int, int]
    reason: str
    processes: tuple[int, int] | None = None  # the process test's units per side (``process_verdict``)
    more_processes: int | None = None  # its ``more_rounds``: about how many more processes per side would decide


def _log_round_medians(rounds: Rounds, name: str) -> np.ndarray:
    meds = []
    for r in rounds:
        x = np.asarray(r, dtype=float)
        if x.size and not (np.isfinite(x).all() and (x > 0).all()):
            raise ValueError(f"{name} samples must be non-empty, finite and positive")
        if x.size:
            meds.append(float(np.median(x)))
    if not meds:
        raise ValueError(f"{name} samples must be non-empty, finite and positive")
    return np.log(np.asarray(meds))


def log_ratio(base_rounds: Rounds, new_rounds: Rounds) -> tuple[float, float]:
    """log(new speed / base speed) from the mean log round medians of two runs' rounds (seconds per
    image), and the variance of that difference the rounds explain (0 with one round on a side):
    what the unpaired test estimates, for ``pair_noise`` to measure the spread between runs."""
    lb, ln = _log_round_medians(base_rounds, "base"), _log_round_medians(new_rounds, "new")
    var = sum(float(x.var(ddof=1)) / x.size for x in (lb, ln)) if min(lb.size, ln.size) >= 2 else 0.0
    return float(lb.mean() - ln.mean()), var


def _t_figures(parts: Sequence[tuple[float, int]], floor: float) -> tuple[float, float]:
    """Standard error of the difference from (variance of the mean, rounds) per side plus ``floor``²,
    and the Welch-Satterthwaite degrees of freedom of the measured part alone (so that the floor
    can only widen the bounds and raise p, never lend the test degrees of freedom)."""
    measured = sum(v for v, _ in parts)
    denom = sum(v**2 / (n - 1) for v, n in parts)
    return math.sqrt(measured + floor**2), (measured**2 / denom if denom > 0 else math.inf)


def _quantile(df: float, level: float) -> float:
    return float(sps.norm.ppf(level) if math.isinf(df) else sps.t.ppf(level, df))


def _more_rounds(margin: float, sides: Sequence[tuple[float, int]], floor: float, alpha: float) -> int | None:
    """The fewest extra rounds per side after which the one-sided bound, at the observed spread
    (``sides``: per-round variance and rounds; the t quantile at the Welch degrees of freedom those
    rounds would give), lies within ``margin`` of the estimate: the verdict it leans to would be
    reached if the estimate held (as MLPerf LoadGen's early stopping says how many more queries it
    needs); None when no number up to :data:`MAX_MORE_ROUNDS` does."""
    k = np.arange(1, MAX_MORE_ROUNDS + 1)
    parts = [s2 / (n + k) for s2, n in sides]
    measured = sum(parts)
    denom = sum(v**2 / (n + k - 1) for v, (_, n) in zip(parts, sides))
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, measured**2 / np.where(denom > 0, denom, 1.0), np.inf)
    q = np.where(np.isinf(df), sps.norm.ppf(1 - alpha), sps.t.ppf(1 - alpha, np.where(np.isinf(df), 1.0, df)))
    ok = np.flatnonzero(q * np.sqrt(measured + floor**2) <= margin)
    return int(k[ok[0]]) if ok.size else None


def slowdown_verdict(base_rounds: Rounds, new_rounds: Rounds, *, threshold: float, alpha: float = 0.05,
                     paired: bool = False, floor: float | None = None) -> Verdict:
    """Whether ``new`` is slower than ``base`` by more than ``threshold`` (0.05: 5% fewer images/s).

    Rounds are per-round arrays of seconds per image (adjusted as both sides can be,
    ``gate.common_adjustments``); the unit is the round's median, on a log scale.  Unpaired (two runs): Welch's t on the two sides'
    log round medians, the variance widened by ``floor``² (default :data:`GATE_FLOOR`: what
    separates two processes and no round shows); paired (round i of both timed together): a
    one-sample t on the per-round log ratios (``floor`` default 0).  With ``q`` the one-sided
    ``1 - alpha`` quantile and ``L = log(1 - threshold)``:

    * **fail**: significantly slower (p < alpha) *and* the estimate beyond the threshold.  The
      estimate, not the bound: the test already keeps false flags of an unchanged speed under
      alpha; asking the bound to clear the threshold too would need about twice the rounds to flag
      a slowdown of twice the threshold, and it keeps what ``--fail-above`` has always meant.
    * **pass**: the lower bound of the ratio rules out a slowdown beyond the threshold.
    * **inconclusive**: neither; ``more_rounds`` says about how many more rounds per side would
      carry the bound past the threshold (or the test past alpha) if the estimate held.

    Non-finite or non-positive times are a ValueError."""
    lb, ln = _log_round_medians(base_rounds, "base"), _log_round_medians(new_rounds, "new")
    floor = (0.0 if paired else GATE_FLOOR) if floor is None else float(floor)
    if paired:
        if lb.size != ln.size:
            raise ValueError(f"paired rounds differ in number: {lb.size} and {ln.size}")
        diffs = lb - ln  # per-round log(new speed / base speed)
        d = float(diffs.mean())
        sides = [(float(diffs.var(ddof=1)), int(diffs.size))] if diffs.size >= 2 else []
    else:
        d = float(lb.mean() - ln.mean())
        sides = [(float(x.var(ddof=1)), int(x.size)) for x in (lb, ln)] if min(lb.size, ln.size) >= 2 else []
    return _decide(d, sides, (int(lb.size), int(ln.size)), threshold=threshold, alpha=alpha, paired=paired,
                   floor=floor)


def process_verdict(base_processes: Sequence[Rounds], new_processes: Sequence[Rounds], *, threshold: float,
                    alpha: float = 0.05, paired: bool = True) -> Verdict:
    """:func:`slowdown_verdict` with the *process* as the unit (``ab --processes K``: each side timed
    in K worker processes, Kalibera & Jones's executions): each process's mean log round median is
    one value.  What separates two processes (where their memory and code landed, what ran while
    they started: 10-17% between sides of an A/A on the 2026-12-03 VM, far more than their rounds
    show) is then measured rather than assumed as a floor; rounds only make each value precise.
    ``paired`` (process k of both sides started one after the other and timed in adjacent blocks):
    a one-sample t on the K per-pair log ratios, so what a pair shares cancels; else Welch's t on
    the two sides' values.  ``more_processes`` says about how many more processes per side would
    decide.  At least two processes on each side, as many on both when paired (else a
    ValueError); the rounds as for :func:`slowdown_verdict`."""
    if min(len(base_processes), len(new_processes)) < 2:
        raise ValueError("the process test needs at least two processes on each side")
    if paired and len(base_processes) != len(new_processes):
        raise ValueError(f"paired processes differ in number: {len(base_processes)} and {len(new_processes)}")
    mb = np.array([_log_round_medians(r, "base").mean() for r in base_processes])
    mn = np.array([_log_round_medians(r, "new").mean() for r in new_processes])
    values = [mb - mn] if paired else [mb, mn]
    sides = [(float(x.var(ddof=1)), int(x.size)) for x in values]
    counts = (sum(len(r) for r in base_processes), sum(len(r) for r in new_processes))
    return _decide(float(mb.mean() - mn.mean()), sides, counts, threshold=threshold, alpha=alpha, paired=paired,
                   floor=0.0, unit="process", processes=(int(mb.size), int(mn.size)))


def _decide(d: float, sides: Sequence[tuple[float, int]], counts: tuple[int, int], *, threshold: float,
            alpha: float, paired: bool, floor: float, unit: str = "round",
            processes: tuple[int, int] | None = None) -> Verdict:
    """The three outcomes from the estimate ``d`` (log new speed / base speed), the per-``unit``
    variance and count of each side (one, paired), and the floor."""
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    label = f"{threshold * 100:g}%"
    common = {"ratio": math.exp(d), "threshold": threshold, "alpha": alpha, "paired": paired, "rounds": counts}
    if processes is not None:
        common["processes"] = processes
    if not sides:
        return Verdict(INCONCLUSIVE, interval=(0.0, math.inf), p=1.0, more_rounds=None, **common,
                       reason=f"a {label} change cannot be told from one round on a side (no spread between "
                       "rounds to test against: time at least 2, better 6-10, rounds per side)")
    se, df = _t_figures([(s2 / n, n) for s2, n in sides], floor)
    q = _quantile(df, 1 - alpha)
    if se > 0:
        p = float(sps.norm.cdf(d / se) if math.isinf(df) else sps.t.cdf(d / se, df))
    else:
        p = 0.0 if d < 0 else 1.0
    lo, hi = d - q * se, d + q * se
    limit = math.log(1 - threshold)
    interval = (math.exp(lo), math.exp(hi))
    if p < alpha and d < limit:
        return Verdict(FAIL, interval=interval, p=p, more_rounds=None, **common,
                       reason=f"slower by {1 - math.exp(d):.1%} (p = {p:.2g}), beyond the {label} that matters")
    if lo > limit:
        return Verdict(PASS, interval=interval, p=p, more_rounds=None, **common,
                       reason=f"a slowdown beyond {label} is ruled out (bound {math.exp(lo) - 1:+.1%})")
    margin = d - limit if d >= limit else -d
    more = _more_rounds(margin, sides, floor, alpha)
    units = "processes" if unit == "process" else "rounds"
    if more is not None:
        why = f"about {more} more {unit if more == 1 else units} per side would"
    elif _floor_blocks(margin, floor, alpha):
        why = (f"more rounds would not: the {floor:.1%} (SD) that separates the two sides beyond their rounds "
               "alone is too much at this estimate")
    else:
        why = f"more than {MAX_MORE_ROUNDS} more {units} per side would be needed"
    extra = {"more_rounds": more} if unit == "round" else {"more_rounds": None, "more_processes": more}
    return Verdict(INCONCLUSIVE, interval=interval, p=p, **extra, **common,
                   reason=f"a {label} change cannot be told at this noise ({math.exp(d) - 1:+.1%} seen); {why}")


def _floor_blocks(margin: float, floor: float, alpha: float) -> bool:
    """Whether the process floor alone keeps the one-sided bound from clearing ``margin``."""
    return float(sps.norm.ppf(1 - alpha)) * floor >= margin


