"""The statistics of levit-bench: one estimator per question, used by the table, the report and the gate.

Every figure answers one of these questions, and each question has one function:

* *How fast are an entry's calls, and how spread?*  :func:`summarize_calls`: median call time,
  images/s, IQR, latency percentiles, and a noise flag when IQR/median > 10% (the threshold
  ``torch.utils.benchmark`` warns at).  Raw samples are kept and a spread always shown, as in pyperf.
* *How sure is an entry's speed?*  :func:`median_time_interval`: the round, not the call, is the unit
  that repeats (Kalibera & Jones, "Rigorous benchmarking in reasonable time", ISMM 2013: repeat at
  the level whose variation dominates), so the interval is the distribution-free binomial
  order-statistic interval of the round medians (of the calls, with one round).  It is as wide as
  the differences between rounds make it, not only as wide as the jitter between consecutive calls.
  (A two-level percentile bootstrap was tried first; with five to ten rounds of one or two calls, as
  slow entries get, it contained another run's estimate in 44% of the rerun study's cases:
  docs/measurement.md.)
* *How much faster is A than B, both timed in the same rounds?*  :func:`paired_ratio`: round by
  round (both were timed seconds apart, under the same machine state), so a drift cancels.
* *... timed in different runs?*  :func:`unpaired_ratio`: the ratio of medians, with the interval
  spanned by the two sides' :func:`median_time_interval`.
* *Did the new side get slower by more than the threshold that matters?*  :func:`slowdown_verdict`
  (``compare``'s gate and ``ab``'s): a one-sided t test on log round medians (Welch's between two
  runs, with :data:`PROCESS_FLOOR`; one-sample on the per-round log ratios when paired) combined
  with the size threshold: pass, fail or inconclusive, and about how many more rounds would decide.

Everything is deterministic: the same samples give the same figures.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

NOISE_THRESHOLD = 0.10

Rounds = Sequence[np.ndarray]  # per-call seconds, one array per round


# ---------------------------------------------------------------------------------------------
# calls


@dataclass(frozen=True)
class CallSummary:
    """What an entry's calls look like (all rounds pooled): the figures a results entry stores."""

    n: int
    median_s: float
    iqr_s: float
    min_s: float
    images_per_second: float
    iqr_ips: float
    latency_ms: dict[str, float]
    rel_iqr: float
    noisy: bool


def summarize_calls(samples_s: Sequence[float] | np.ndarray, images_per_call: int) -> CallSummary:
    """Median, spread and percentiles of per-call seconds for calls of ``images_per_call`` images
    each (the interval is not here: it is over rounds, :func:`median_time_interval`)."""
    x = np.asarray(samples_s, dtype=float)
    if x.size == 0:
        raise ValueError("no samples")
    q25, med, q75, p90, p99 = (float(v) for v in np.percentile(x, [25, 50, 75, 90, 99]))
    iqr = q75 - q25
    return CallSummary(
        n=int(x.size), median_s=med, iqr_s=iqr, min_s=float(x.min()), images_per_second=images_per_call / med,
        iqr_ips=images_per_call / q25 - images_per_call / q75,
        latency_ms={"p50": med * 1000.0, "p90": p90 * 1000.0, "p99": p99 * 1000.0},
        rel_iqr=iqr / med, noisy=iqr / med > NOISE_THRESHOLD,
    )


# ---------------------------------------------------------------------------------------------
# rounds


def split_rounds(samples: Sequence[float], calls_per_round: Sequence[int] | None) -> list[np.ndarray]:
    """Per-call seconds grouped by round (``calls_per_round`` from the results file; None: one round)."""
    x = np.asarray(samples, dtype=float)
    if not calls_per_round:
        return [x]
    if sum(calls_per_round) != x.size:
        raise ValueError(f"{x.size} samples but rounds hold {sum(calls_per_round)} calls")
    return [part for part in np.split(x, np.cumsum(calls_per_round)[:-1]) if part.size]


def round_medians(rounds: Rounds) -> np.ndarray:
    """The median call time of each (non-empty) round: the values that repeat."""
    return np.array([float(np.median(r)) for r in rounds if len(r)])


def between_round_spread(rounds: Rounds) -> float:
    """IQR of the round medians relative to their median (0 with fewer than two rounds): how much
    the machine drifted during the run, beside the call-level IQR."""
    meds = round_medians(rounds)
    if meds.size < 2:
        return 0.0
    q25, q50, q75 = np.percentile(meds, [25, 50, 75])
    return float((q75 - q25) / q50)


@functools.lru_cache(maxsize=1024)
def _order_statistic_ranks(n: int, confidence: float) -> tuple[int, int]:
    """0-based ranks bounding the ``confidence`` interval of the median of ``n`` values (-1 or n:
    beyond the sample), as ``scipy.stats.quantile_test(...).confidence_interval`` takes them from
    Binomial(n, 1/2); only n matters, so they are computed once per size."""
    tail = (1 - confidence) / 2
    bd = sps.binom(n, 0.5)
    return int(bd.ppf(tail)) - 1, int(bd.isf(tail))


def _median_interval_of(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The exact distribution-free (binomial order-statistic) interval of the median of ``values``;
    bounds beyond the sample are its min or max."""
    x = np.sort(np.asarray(values, dtype=float))
    if x.size < 2:
        return float(x[0]), float(x[0])
    lo, hi = _order_statistic_ranks(int(x.size), float(confidence))
    return float(x[max(lo, 0)]), float(x[min(hi, x.size - 1)])


def median_time_interval(rounds: Rounds, confidence: float = 0.95) -> tuple[float, float]:
    """Interval of an entry's median call time, the round as the unit: the order-statistic interval
    of the round medians (of the calls, with one round).  With five rounds it is [min, max] of the
    round medians (coverage 94%); with ten, the 2nd and 9th.  Speed bounds are images over these."""
    rounds = [np.asarray(r, dtype=float) for r in rounds if len(r)]
    if not rounds:
        raise ValueError("no samples")
    return _median_interval_of(round_medians(rounds) if len(rounds) >= 2 else rounds[0], confidence)


# ---------------------------------------------------------------------------------------------
# ratios of two entries' speeds


@dataclass(frozen=True)
class Ratio:
    """Speed of A over speed of B, with a 95% interval; ``paired``: computed round by round."""

    value: float
    ci95: tuple[float, float]
    paired: bool
    rounds: int


def can_pair(a_rounds: Rounds, b_rounds: Rounds) -> bool:
    """Whether two entries' rounds can be paired (the caller knows they come from one timed group)."""
    return len(a_rounds) == len(b_rounds) >= 2


def paired_ratio(a_rounds: Rounds, b_rounds: Rounds, confidence: float = 0.95) -> Ratio:
    """Speed of A over speed of B from per-call times of the same rounds (round i of A was timed in
    the same round as round i of B): the geometric mean over rounds of median(B)/median(A), and a
    Student-t interval on the per-round log ratios (with ten-odd rounds a percentile bootstrap
    over rounds covers too rarely: 83% for a nominal 95% in tests/test_measurement.py)."""
    a, b = round_medians(a_rounds), round_medians(b_rounds)
    if a.size != b.size:
        raise ValueError(f"paired rounds differ in number: {a.size} and {b.size}")
    logs = np.log(b / a)
    mean = float(logs.mean())
    if logs.size < 2:
        return Ratio(math.exp(mean), (math.exp(mean), math.exp(mean)), True, int(logs.size))
    half = float(sps.t.ppf((1 + confidence) / 2, logs.size - 1) * logs.std(ddof=1) / np.sqrt(logs.size))
    return Ratio(math.exp(mean), (math.exp(mean - half), math.exp(mean + half)), True, int(logs.size))


def ratio_of_medians(a_rounds: Rounds, b_rounds: Rounds) -> float:
    """Speed of A over speed of B as their images/s give it: median(B calls) / median(A calls)."""
    return float(np.median(np.concatenate(b_rounds)) / np.median(np.concatenate(a_rounds)))


def unpaired_ratio(a_rounds: Rounds, b_rounds: Rounds, confidence: float = 0.95) -> Ratio:
    """Speed of A over speed of B measured in different runs (nothing to pair): the ratio of the
    medians, and the interval spanned by the two sides' :func:`median_time_interval` (conservative:
    it holds whenever both do, and it is as wide as each side's drift between rounds)."""
    a_lo, a_hi = median_time_interval(a_rounds, confidence)
    b_lo, b_hi = median_time_interval(b_rounds, confidence)
    return Ratio(ratio_of_medians(a_rounds, b_rounds), (b_lo / a_hi, b_hi / a_lo), False,
                 min(len(a_rounds), len(b_rounds)))


# ---------------------------------------------------------------------------------------------
# the gate's verdict (issue 21): did the new side get slower by more than the threshold?

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
#: Standard deviation of the log speed difference between two processes of the same program on one
#: machine that no interval inside one run sees: a per-entry, per-process effect (code and heap
#: layout, which core and cache slice a process got).  The rerun study (issue 21) found about 2% of
#: it left after canary normalisation (levit_256/openvino was 7% off in two of three quiet runs), and
#: an interval with this floor held the rerun's estimate in 82-92% of cases against 58-81% without.
#: Added to the variance of every unpaired difference (two runs, two processes); the rounds of one
#: process pair share their processes, so the paired test leaves it out unless told (``floor``).
PROCESS_FLOOR = 0.02
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


def canary_adjusted(rounds: Rounds, canary_s: Sequence[float]) -> list[np.ndarray]:
    """Each round's times divided by the machine-speed canary's seconds per call timed next to it:
    unit-free figures in which a machine-wide speed factor shared by canary and block cancels (two
    runs' canaries are the same workload, so their references cancel in a ratio too)."""
    if len(rounds) != len(canary_s):
        raise ValueError(f"{len(rounds)} rounds but {len(canary_s)} canary figures")
    c = np.asarray(canary_s, dtype=float)
    if not (np.isfinite(c).all() and (c > 0).all()):
        raise ValueError("canary seconds must be finite and positive")
    return [np.asarray(r, dtype=float) / k for r, k in zip(rounds, c)]


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

    Rounds are per-round arrays of seconds per image (canary-adjusted when both sides have it); the
    unit is the round's median, on a log scale.  Unpaired (two runs): Welch's t on the two sides'
    log round medians, the variance widened by ``floor``² (default :data:`PROCESS_FLOOR`: what
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
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    lb, ln = _log_round_medians(base_rounds, "base"), _log_round_medians(new_rounds, "new")
    floor = (0.0 if paired else PROCESS_FLOOR) if floor is None else float(floor)
    if paired:
        if lb.size != ln.size:
            raise ValueError(f"paired rounds differ in number: {lb.size} and {ln.size}")
        diffs = lb - ln  # per-round log(new speed / base speed)
        d = float(diffs.mean())
        sides = [(float(diffs.var(ddof=1)), int(diffs.size))] if diffs.size >= 2 else []
    else:
        d = float(lb.mean() - ln.mean())
        sides = [(float(x.var(ddof=1)), int(x.size)) for x in (lb, ln)] if min(lb.size, ln.size) >= 2 else []
    counts = (int(lb.size), int(ln.size))
    label = f"{threshold * 100:g}%"
    common = {"ratio": math.exp(d), "threshold": threshold, "alpha": alpha, "paired": paired, "rounds": counts}
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
    if more is not None:
        why = f"about {more} more round{'s' if more > 1 else ''} per side would"
    elif _floor_blocks(margin, floor, alpha):
        why = (f"more rounds would not: the {floor:.0%} between processes alone is too much at this estimate "
               "(time both sides in one job: levit-bench ab)")
    else:
        why = f"more than {MAX_MORE_ROUNDS} more rounds per side would be needed"
    return Verdict(INCONCLUSIVE, interval=interval, p=p, more_rounds=more, **common,
                   reason=f"a {label} change cannot be told at this noise ({math.exp(d) - 1:+.1%} seen); {why}")


def _floor_blocks(margin: float, floor: float, alpha: float) -> bool:
    """Whether the process floor alone keeps the one-sided bound from clearing ``margin``."""
    return float(sps.norm.ppf(1 - alpha)) * floor >= margin
