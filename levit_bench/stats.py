"""Summaries and tests on raw per-call samples (scipy.stats where it has the method).

As in pyperf, the raw samples are kept and a spread is always reported: the median call time, its
IQR and a 95% distribution-free confidence interval of the median (binomial order statistics, via
``scipy.stats.quantile_test``), latency percentiles, and a noise flag when IQR/median > 10% (the
threshold ``torch.utils.benchmark`` warns at).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as sps

NOISE_THRESHOLD = 0.10


@dataclass
class Summary:
    n: int
    median_s: float
    iqr_s: float
    min_s: float
    ci95_s: tuple[float, float]
    images_per_second: float
    ci95_ips: tuple[float, float]
    iqr_ips: float
    latency_ms: dict[str, float]
    rel_iqr: float
    noisy: bool


def median_ci(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (exact binomial order statistics)."""
    if len(samples) < 2:
        v = float(samples[0])
        return v, v
    med = float(np.median(samples))
    ci = sps.quantile_test(samples, q=med, p=0.5).confidence_interval(confidence)
    lo = float(ci.low) if np.isfinite(ci.low) else float(samples.min())
    hi = float(ci.high) if np.isfinite(ci.high) else float(samples.max())
    return lo, hi


def summarize(samples_s: list[float] | np.ndarray, images_per_call: int) -> Summary:
    """Summary of per-call seconds for calls that each process ``images_per_call`` images."""
    x = np.asarray(samples_s, dtype=float)
    if x.size == 0:
        raise ValueError("no samples")
    q25, med, q75 = np.percentile(x, [25, 50, 75])
    lo, hi = median_ci(x)
    p50, p90, p99 = np.percentile(x, [50, 90, 99]) * 1000.0
    iqr = float(q75 - q25)
    return Summary(
        n=int(x.size),
        median_s=float(med),
        iqr_s=iqr,
        min_s=float(x.min()),
        ci95_s=(lo, hi),
        images_per_second=images_per_call / float(med),
        ci95_ips=(images_per_call / hi, images_per_call / lo),
        iqr_ips=images_per_call / float(q25) - images_per_call / float(q75),
        latency_ms={"p50": float(p50), "p90": float(p90), "p99": float(p99)},
        rel_iqr=iqr / float(med),
        noisy=iqr / float(med) > NOISE_THRESHOLD,
    )


@dataclass
class Comparison:
    """New against base: ratio of median speeds and whether the difference is significant."""

    speed_ratio: float  # new images/s over base images/s
    ratio_ci95: tuple[float, float]
    p_value: float
    significant: bool


def bootstrap_medians(samples: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``n_resamples`` medians of bootstrap resamples of ``samples`` (size n, with replacement).

    Exactly distributed as ``np.median(rng.choice(samples, n))``, drawn from the exact distribution
    of a resample's middle order statistics over the sorted samples instead of drawing the n x B
    resamples (O(n + B log n), not O(n B)).  With C(i) the number of the n draws at sorted positions
    0..i, C(i) ~ Binomial(n, (i+1)/n), and the k-th order statistic (k = ceil(n/2)) sits at
    position i with probability P(C(i) >= k) - P(C(i-1) >= k).  For even n the median also needs
    the (k+1)-th: it is at the same position unless exactly k draws fall at or below i, which has
    probability C(n,k) ((n-1-i)/n)^(n-k) [((i+1)/n)^k - (i/n)^k]; then it is the lowest of the
    n-k other draws, spread uniformly over the n-1-i positions above i.
    """
    xs = np.sort(np.asarray(samples, dtype=float))
    n = xs.size
    if n == 1:
        return np.full(n_resamples, xs[0])
    pos, cdf = _median_cells(n)
    cell = np.minimum(np.searchsorted(cdf, rng.random(n_resamples), side="right"), cdf.size - 1)
    if n % 2:
        return xs[pos[cell]]
    i, split = pos[cell // 2], cell % 2 == 1
    k = n // 2
    above = n - 1 - i  # positions above i; the n-k remaining draws are uniform over them
    u = rng.random(n_resamples)
    step = np.floor(above * (1.0 - u ** (1.0 / (n - k)))).astype(np.int64)
    j = np.where(split & (above > 0), i + 1 + np.clip(step, 0, np.maximum(above - 1, 0)), i)
    return (xs[i] + xs[j]) / 2.0


@functools.lru_cache(maxsize=256)
def _median_cells(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For :func:`bootstrap_medians` (it depends on n only): the sorted positions the k-th order
    statistic of a resample can take, and the normalised CDF over them (odd n) or over (position,
    whether the (k+1)-th is at the same position or above it) pairs (even n)."""
    k = (n + 1) // 2
    # outside k +- 6 sqrt(n) (12 standard deviations of C(i)) the probability is below 1e-30
    half = int(6 * np.sqrt(n)) + 2
    pos = np.arange(max(0, k - 1 - half), min(n, k + half))
    at_or_below = special.bdtrc(k - 1, n, (pos + 1) / n)  # P(C(i) >= k): k-th order statistic <= position i
    p_kth = np.diff(at_or_below, prepend=0.0 if pos[0] == 0 else special.bdtrc(k - 1, n, pos[0] / n))
    p_kth = p_kth.clip(min=0.0)
    if n % 2:
        cdf = np.cumsum(p_kth)
    else:
        # C(n,k) ((n-1-i)/n)^(n-k) ((i+1)/n)^k (1 - (i/(i+1))^k), in logs: n is in the thousands
        log_choose = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
        with np.errstate(divide="ignore"):
            log_p = log_choose + special.xlogy(n - k, (n - 1 - pos) / n) + special.xlogy(k, (pos + 1) / n)
            p_split = np.exp(log_p) * -np.expm1(k * np.log(pos / (pos + 1)))
        p_split = np.minimum(p_split.clip(min=0.0), p_kth)
        cdf = np.cumsum(np.stack([p_kth - p_split, p_split], axis=1).ravel())
    cdf /= cdf[-1]
    pos.flags.writeable = cdf.flags.writeable = False
    return pos, cdf


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of the Mann-Whitney U test, as ``scipy.stats.mannwhitneyu`` computes it
    (``method="auto"``, continuity correction): the same normal approximation with the tie
    correction, computed directly for samples of more than 8 (a tenth of scipy's time, which
    counts over thousands of entries), scipy's exact test otherwise."""
    n1, n2 = x.size, y.size
    if n1 <= 8 or n2 <= 8:
        return float(sps.mannwhitneyu(x, y, alternative="two-sided").pvalue)
    xy = np.concatenate([x, y])
    order = np.argsort(xy, kind="mergesort")
    v = xy[order]
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    ties = np.diff(np.r_[starts, v.size])
    ranks = np.empty(v.size)
    ranks[order] = np.repeat(starts + (ties + 1) / 2.0, ties)  # 1-based, ties share their mean rank
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    u = max(u1, n1 * n2 - u1)
    n = n1 + n2
    t = ties.astype(float)
    s = np.sqrt(n1 * n2 / 12 * ((n + 1) - (t**3 - t).sum() / (n * (n - 1))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.float64(u - n1 * n2 / 2 - 0.5) / s
    return float(np.clip(2 * special.ndtr(-z), 0.0, 1.0))


def compare_samples(base_s: np.ndarray, new_s: np.ndarray, alpha: float = 0.01, seed: int = 0,
                    n_resamples: int = 2000) -> Comparison:
    """Mann-Whitney U on the per-call times, and a bootstrap CI of the ratio of median speeds.

    A change is significant when the U test rejects at ``alpha`` *and* the bootstrap interval
    excludes 1, so that neither a tiny shift on huge samples nor a lucky draw fires alone.  The
    bootstrap is the percentile interval of ``median(base*) / median(new*)`` over independent
    resamples of each side (seeded), drawn with :func:`bootstrap_medians`: milliseconds per entry
    whatever the sample size.  Non-finite or non-positive times are a ValueError.
    """
    base = np.asarray(base_s, dtype=float)
    new = np.asarray(new_s, dtype=float)
    for name, x in (("base", base), ("new", new)):
        if x.size == 0 or not (np.isfinite(x).all() and (x > 0).all()):
            raise ValueError(f"{name} samples must be non-empty, finite and positive")
    ratio = float(np.median(base) / np.median(new))
    if base.size < 3 or new.size < 3:
        return Comparison(ratio, (ratio, ratio), 1.0, False)
    p = mann_whitney_p(base, new)
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(base, n_resamples, rng) / bootstrap_medians(new, n_resamples, rng)
    lo, hi = (float(v) for v in np.percentile(ratios, [2.5, 97.5]))
    significant = p < alpha and (hi < 1.0 or lo > 1.0)
    return Comparison(ratio, (lo, hi), p, significant)
