"""Summaries and tests on raw per-call samples (scipy.stats where it has the method).

As in pyperf, the raw samples are kept and a spread is always reported: the median call time, its
IQR and a 95% distribution-free confidence interval of the median (binomial order statistics, via
``scipy.stats.quantile_test``), latency percentiles, and a noise flag when IQR/median > 10% (the
threshold ``torch.utils.benchmark`` warns at).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
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

    def to_dict(self) -> dict:
        return asdict(self)


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


def compare_samples(base_s: np.ndarray, new_s: np.ndarray, alpha: float = 0.01, seed: int = 0) -> Comparison:
    """Mann-Whitney U on the per-call times, and a bootstrap CI of the ratio of median speeds.

    A change is significant when the U test rejects at ``alpha`` *and* the bootstrap interval
    excludes 1, so that neither a tiny shift on huge samples nor a lucky draw fires alone.
    """
    base = np.asarray(base_s, dtype=float)
    new = np.asarray(new_s, dtype=float)
    ratio = float(np.median(base) / np.median(new))
    if base.size < 3 or new.size < 3:
        return Comparison(ratio, (ratio, ratio), 1.0, False)
    p = float(sps.mannwhitneyu(base, new, alternative="two-sided").pvalue)
    res = sps.bootstrap(
        (base, new), lambda b, n: np.median(b) / np.median(n), n_resamples=2000, vectorized=False,
        paired=False, confidence_level=0.95, method="percentile", random_state=np.random.default_rng(seed),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    significant = p < alpha and (hi < 1.0 or lo > 1.0)
    return Comparison(ratio, (lo, hi), p, significant)
