"""Statistics over interleaved rounds: intervals that include the machine's drift, paired ratios.

A shared machine's speed wanders over minutes.  Timing every entry in several short rounds (each
round visiting every entry in a random order) spreads that drift over all entries; these functions
turn it into honest uncertainty:

* :func:`median_ci` — the round, not the call, is the unit that repeats (Kalibera & Jones,
  "Rigorous benchmarking in reasonable time", ISMM 2013: repeat at the level whose variation
  dominates): a distribution-free interval of the median from the order statistics of the round
  medians.  It is as wide as the differences between rounds make it, not only as wide as the jitter
  between consecutive calls.  (A two-level percentile bootstrap was tried first; with five to ten
  rounds of one or two calls, as slow entries get, it contained another run's estimate in 44% of
  the rerun study's cases: docs/measurement.md.)
* :func:`paired_ratio` — the ratio of two entries' speeds computed round by round (both were timed
  minutes apart at most, under the same machine state), then summarized over rounds (Student t), so a drift
  cancels instead of landing on one side.

Everything is deterministic or seeded: the same samples give the same interval.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .stats import Comparison
from .stats import median_ci as order_statistic_ci

N_BOOT = 2000


def split_rounds(samples: Sequence[float], calls_per_round: Sequence[int] | None) -> list[np.ndarray]:
    """Per-call seconds grouped by round (``calls_per_round`` from the results file; None: one round)."""
    x = np.asarray(samples, dtype=float)
    if not calls_per_round:
        return [x]
    if sum(calls_per_round) != x.size:
        raise ValueError(f"{x.size} samples but rounds hold {sum(calls_per_round)} calls")
    return [part for part in np.split(x, np.cumsum(calls_per_round)[:-1]) if part.size]


def median_ci(rounds: Sequence[np.ndarray], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median call time: the binomial order-statistic interval
    of the round medians (rounds are the independent units), or of the calls with one round.  With
    five rounds it is [min, max] of the round medians (coverage 94%); with ten, the 2nd and 9th."""
    rounds = [np.asarray(r, dtype=float) for r in rounds if len(r)]
    if not rounds:
        raise ValueError("no samples")
    values = round_medians(rounds) if len(rounds) >= 2 else rounds[0]
    return order_statistic_ci(values, confidence)


def round_medians(rounds: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([float(np.median(r)) for r in rounds if len(r)])


def between_round_spread(rounds: Sequence[np.ndarray]) -> float:
    """IQR of the round medians relative to their median (0 with fewer than two rounds)."""
    meds = round_medians(rounds)
    if meds.size < 2:
        return 0.0
    q25, q50, q75 = np.percentile(meds, [25, 50, 75])
    return float((q75 - q25) / q50)


@dataclass(frozen=True)
class Ratio:
    """Speed of A over speed of B, with a 95% interval; ``paired``: computed round by round."""

    value: float
    ci95: tuple[float, float]
    paired: bool
    rounds: int


def paired_ratio(a_rounds: Sequence[np.ndarray], b_rounds: Sequence[np.ndarray], confidence: float = 0.95) -> Ratio:
    """Speed of A over speed of B from per-call times of the same rounds (round i of A was timed in
    the same round as round i of B): the geometric mean over rounds of median(B)/median(A), and a
    Student-t interval on the per-round log ratios (with ten-odd rounds a percentile bootstrap
    over rounds covers too rarely: 83% for a nominal 95% in tests/test_measurement.py)."""
    a, b = round_medians(a_rounds), round_medians(b_rounds)
    if a.size != b.size:
        raise ValueError(f"paired rounds differ in number: {a.size} and {b.size}")
    logs = np.log(b / a)
    value = float(np.exp(logs.mean()))
    if logs.size < 2:
        return Ratio(value, (value, value), True, int(logs.size))
    half = float(sps.t.ppf((1 + confidence) / 2, logs.size - 1) * logs.std(ddof=1) / np.sqrt(logs.size))
    return Ratio(value, (float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))), True, int(logs.size))


def unpaired_ratio(a_rounds: Sequence[np.ndarray], b_rounds: Sequence[np.ndarray],
                   confidence: float = 0.95) -> Ratio:
    """Speed of A over speed of B measured in different runs (nothing to pair): the ratio of the
    medians, and the interval spanned by the two sides' :func:`median_ci` (conservative: it holds
    whenever both do)."""
    a_all = np.concatenate([np.asarray(r, dtype=float) for r in a_rounds])
    b_all = np.concatenate([np.asarray(r, dtype=float) for r in b_rounds])
    value = float(np.median(b_all) / np.median(a_all))
    a_lo, a_hi = median_ci(a_rounds, confidence)
    b_lo, b_hi = median_ci(b_rounds, confidence)
    return Ratio(value, (b_lo / a_hi, b_hi / a_lo), False, min(len(a_rounds), len(b_rounds)))


def can_pair(a_rounds: Sequence[np.ndarray], b_rounds: Sequence[np.ndarray]) -> bool:
    """Whether two entries' rounds can be paired (the caller knows they come from one timed group)."""
    return len(a_rounds) == len(b_rounds) >= 2


def compare_rounds(base_rounds: Sequence[np.ndarray], new_rounds: Sequence[np.ndarray], alpha: float = 0.01,
                   confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """New against base, two runs of per-image (or relative) seconds by round.

    The round is the unit that repeats (calls of one round share the machine's state), so both the
    test and the interval work on round medians: Mann-Whitney U on them, and a bootstrap over
    rounds of the ratio of their medians (cheap: a gate compares thousands of entries).  The
    ratio reported is that of the pooled medians, as the entries' images/s are.  Significant when
    the test rejects at ``alpha`` and the interval excludes 1."""
    b, n = round_medians(base_rounds), round_medians(new_rounds)
    p = float(sps.mannwhitneyu(b, n, alternative="two-sided").pvalue)
    value = float(np.median(np.concatenate(base_rounds)) / np.median(np.concatenate(new_rounds)))
    rng = np.random.default_rng(seed)
    boot = np.median(b[rng.integers(0, b.size, (n_boot, b.size))], axis=1) / \
        np.median(n[rng.integers(0, n.size, (n_boot, n.size))], axis=1)
    lo, hi = (float(v) for v in np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2]))
    return Comparison(value, (lo, hi), p, p < alpha and (hi < 1.0 or lo > 1.0))
