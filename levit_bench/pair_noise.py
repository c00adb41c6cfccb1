"""What the matched entries of two runs say about the noise between those two runs (issue 21).

A constant floor for "what separates two processes and no round shows" was calibrated on one VM
(1.9%, ``verdict.GATE_FLOOR``); on the VMs of 2026-12-03 an entry's estimate moved between runs by
5-11% (SD) beyond its own rounds' error, so a constant floor made clean reruns fail.  Two runs of a
plan hold many entries, each a sample of that between-run noise: the spread of their log speed
ratios around the common one, beyond what their rounds explain, measures it for this pair of runs
(robustly: a median and a MAD, so that the few entries a change really slowed do not inflate it).

The common part (the median ratio) is each run's machine-wide speed factor, or a change that slowed
every entry alike; the two cannot be told apart from two runs.  ``compare --normalize-by plan``
divides it out (each entry against the median of the *others*, so an entry never normalizes itself
away) and tests what is left with the measured spread as its floor.  That assumes most entries did
not change: a change that moves half the plan moves the median and widens the spread (its entries
come out inconclusive, not passed); a change to every entry (a runtime upgrade) is what
``levit-bench ab`` is for.  Without ``plan`` the common part stays in every entry's ratio, so the
floor holds it instead of the spread: what each run's machine-wide factor leaves after the figures'
adjustments (:func:`run_factor_floor`, measured in the rerun studies), and the summary says what the
entries showed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .oncpu import leading

#: ``compare --normalize-by plan``: every entry against the median of the others
PLAN = "plan"
#: fewer matched entries than this measure no spread: the constant floor stays
MIN_ENTRIES = 6
#: MAD -> standard deviation of a normal; the standard error of a median over a mean's
MAD_TO_SD = 1.4826
MEDIAN_SE = math.sqrt(math.pi / 2)
#: SD (log speed) of one run's machine-wide factor that the figures' adjustments leave, keyed by the
#: adjustment that matters most: per run, the median over its entries of their log speed relative to
#: the entry's mean over the study's three runs, pooled over the rerun studies (docs/measurement.md,
#: "The run's own factor"; keys: ``oncpu.leading``).  On-CPU share (measured with the canary after
#: it; the share alone gets about the same): the ten studies of 2026-12-04, 0.005-0.073 per study
#: (ci-like seeds 21, 22, 23 twice, 24 twice, 25 and three quiet ones, on two VMs; the first seed-24
#: study, 0.114, left out: its wall canary counted the stops twice, which the canary taken while
#: running is built not to do; that study predates it, so this is not measured).  At 0.031 (the first six) the default gate passed a 10% slowdown and
#: flagged 2.3% of clean entries over these studies; at 0.043, none and 0.9%.  The canary alone, the thirteen studies with
#: it from 2026-12-02 on: 0.005-0.092, and 0.22 and 0.25 in two ci-like ones whose stops its median
#: does not see (``oncpu.py``); multi-thread entries keep no on-CPU share and get this.  Raw: those
#: and the 12-03 processes study, 0.001-0.29 per study.
RUN_FACTOR_SD = {"on_cpu": 0.043, "canary": 0.104, "raw": 0.117}


@dataclass(frozen=True)
class PairNoise:
    """``common``: median log(new speed / base speed) over the matched entries; ``total_sd``: the
    robust SD of the entries' log ratios around it; ``excess_sd``: what of it their rounds' error
    does not explain (None with fewer than :data:`MIN_ENTRIES` entries); ``entries``: how many."""

    entries: int
    common: float
    excess_sd: float | None = None
    total_sd: float = 0.0

    def floor(self, minimum: float) -> float:
        """The unpaired test's floor: the measured excess, never below ``minimum``."""
        return max(minimum, self.excess_sd or 0.0)

    def common_se(self) -> float:
        """Standard error of a common log ratio taken over the other entries (a median of their spread)."""
        if self.excess_sd is None:
            return 0.0
        return MEDIAN_SE * self.total_sd / math.sqrt(self.entries - 1)


def common_without(diffs: Sequence[float], i: int) -> float:
    """The median log ratio of every entry but ``i``: what entry ``i`` is normalized by."""
    others = [d for j, d in enumerate(diffs) if j != i]
    return float(np.median(others)) if others else 0.0


def pair_noise(diffs: Sequence[float], round_vars: Sequence[float]) -> PairNoise:
    """From each matched entry's log ratio (``diffs``) and the variance of that ratio its rounds
    explain (``round_vars``: both sides' variance of the mean log round median, added).  The spread
    is a MAD around the median: a minority of entries a change really moved does not widen it."""
    d = np.asarray(diffs, dtype=float)
    v = np.asarray(round_vars, dtype=float)
    if d.size == 0:
        return PairNoise(0, 0.0)
    common = float(np.median(d))
    if d.size < MIN_ENTRIES:
        return PairNoise(int(d.size), common)
    total = MAD_TO_SD * float(np.median(np.abs(d - common)))
    excess = math.sqrt(max(0.0, total**2 - float(np.median(v))))
    return PairNoise(int(d.size), common, excess, total)


def run_factor_sd(by: Sequence[str]) -> float:
    """:data:`RUN_FACTOR_SD` for figures adjusted by ``by`` (``Timing.adjustments``; () raw)."""
    return RUN_FACTOR_SD[leading(by)]


def run_factor_floor(by: Sequence[str], minimum: float) -> float:
    """The unpaired test's floor when nothing divides the run's factor out: what separates two
    processes (``minimum``, ``verdict.GATE_FLOOR``) and the difference of two runs' factors (√2 ×
    :func:`run_factor_sd`), in quadrature.  A shift every entry shares, within it, is what the
    machine does from run to run: inconclusive, not a regression.  The entries' measured spread is
    left out here: a change that moves many entries inflates it (half of an 8-entry plan 20% slower:
    16%), and the run factor's part is the larger."""
    return math.hypot(minimum, math.sqrt(2) * run_factor_sd(by))
