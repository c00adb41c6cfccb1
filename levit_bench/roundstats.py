"""Statistics over interleaved rounds: intervals that include the machine's drift, paired ratios.

A shared machine's speed wanders over minutes.  Timing every entry in several short rounds (each
round visiting every entry in a random order) spreads that drift over all entries; these functions
turn it into honest uncertainty:

* :func:`median_ci` — a two-level (hierarchical) bootstrap, rounds first, then calls within each
  resampled round (Kalibera & Jones, "Rigorous benchmarking in reasonable time", ISMM 2013).  Its
  interval is as wide as the differences between rounds make it, not only as wide as the jitter
  between consecutive calls.
* :func:`paired_ratio` — the ratio of two entries' speeds computed round by round (both were timed
  minutes apart at most, under the same machine state), then summarized over rounds (Student t), so a drift
  cancels instead of landing on one side.

Everything is vectorised with numpy and seeded: the same samples give the same interval.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .stats import Comparison

N_BOOT = 2000
#: elements per bootstrap chunk (rounds x calls x resamples), to bound memory
_CHUNK_ELEMENTS = 4_000_000


def split_rounds(samples: Sequence[float], calls_per_round: Sequence[int] | None) -> list[np.ndarray]:
    """Per-call seconds grouped by round (``calls_per_round`` from the results file; None: one round)."""
    x = np.asarray(samples, dtype=float)
    if not calls_per_round:
        return [x]
    if sum(calls_per_round) != x.size:
        raise ValueError(f"{x.size} samples but rounds hold {sum(calls_per_round)} calls")
    return [part for part in np.split(x, np.cumsum(calls_per_round)[:-1]) if part.size]


def _padded(rounds: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array([len(r) for r in rounds])
    table = np.full((len(rounds), sizes.max()), np.nan)
    for i, r in enumerate(rounds):
        table[i, : len(r)] = r
    return table, sizes


def bootstrap_medians(rounds: Sequence[np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Medians of ``n_boot`` two-level resamples: rounds with replacement, then calls within each
    chosen round (as many as it had).  With one round: the ordinary bootstrap over calls."""
    rounds = [np.asarray(r, dtype=float) for r in rounds if len(r)]
    if not rounds:
        raise ValueError("no samples")
    table, sizes = _padded(rounds)
    n_rounds, width = table.shape
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_ELEMENTS // (n_rounds * width))
    stats = []
    for start in range(0, n_boot, per_chunk):
        b = min(per_chunk, n_boot - start)
        pick = rng.integers(0, n_rounds, size=(b, n_rounds)) if n_rounds > 1 else np.zeros((b, 1), dtype=int)
        n = sizes[pick][..., None]  # calls in each chosen round
        calls = np.floor(rng.random((b, n_rounds, width)) * n).astype(int)
        drawn = table[pick[..., None], calls]
        drawn[np.arange(width)[None, None, :] >= n] = np.inf  # a round contributes its own number of calls
        stats.append(_median_of_finite(drawn.reshape(b, -1), n[..., 0].sum(axis=1)))
    return np.concatenate(stats)


def median_ci(rounds: Sequence[np.ndarray], confidence: float = 0.95, n_boot: int = N_BOOT,
              seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the median per-call time under two-level resampling."""
    if sum(len(r) for r in rounds) == 1:
        v = float(next(r for r in rounds if len(r))[0])
        return v, v
    lo, hi = np.quantile(bootstrap_medians(rounds, n_boot, seed), [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def _median_of_finite(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row medians when each row's finite values come first after sorting (the rest are +inf)."""
    rows = np.sort(rows, axis=1)
    idx = np.arange(rows.shape[0])
    return (rows[idx, (counts - 1) // 2] + rows[idx, counts // 2]) / 2


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


def unpaired_ratio(a_rounds: Sequence[np.ndarray], b_rounds: Sequence[np.ndarray], confidence: float = 0.95,
                   n_boot: int = N_BOOT, seed: int = 0) -> Ratio:
    """Speed of A over speed of B measured in different runs (nothing to pair): the ratio of the
    medians, its interval from independent two-level resamples of each side."""
    a_all = np.concatenate([np.asarray(r, dtype=float) for r in a_rounds])
    b_all = np.concatenate([np.asarray(r, dtype=float) for r in b_rounds])
    value = float(np.median(b_all) / np.median(a_all))
    ratios = bootstrap_medians(b_rounds, n_boot, seed) / bootstrap_medians(a_rounds, n_boot, seed + 1)
    lo, hi = np.quantile(ratios, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Ratio(value, (float(lo), float(hi)), False, min(len(a_rounds), len(b_rounds)))


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
