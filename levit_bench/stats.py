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
  (A two-level percentile bootstrap, tried first, held another run's estimate in 44%: docs/measurement.md.)
* *How much faster is A than B, both timed in the same rounds?*  :func:`paired_ratio`: round by
  round (both were timed seconds apart, under the same machine state), so a drift cancels.
* *... timed in different runs?*  :func:`unpaired_ratio`: the ratio of medians, with the interval
  spanned by the two sides' :func:`median_time_interval`.
* *Did the new side get slower by more than the threshold that matters?*  ``verdict.slowdown_verdict``
  (``compare``'s gate and ``ab``'s), in a module of its own.
* *Where does this run's estimate lie, and where will a rerun's?*  :func:`confidence_interval` and
  :func:`rerun_interval`, on canary-adjusted rounds (:func:`adjusted_rounds`) where there are some.

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
    """0-based ranks bounding the ``confidence`` interval of the median of ``n`` values (-1 or n: beyond
    the sample), from Binomial(n, 1/2) as ``scipy.stats.quantile_test`` takes them; once per size."""
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


def _unit_values(rounds: Rounds) -> np.ndarray:
    """The values an interval over rounds is of: the round medians (the calls, with one round)."""
    if not (rounds := [np.asarray(r, dtype=float) for r in rounds if len(r)]):
        raise ValueError("no samples")
    return round_medians(rounds) if len(rounds) >= 2 else rounds[0]


def round_median_time(rounds: Rounds) -> float:
    """The median of the round medians: the estimate :func:`median_time_interval` always holds (the
    median of all calls pooled, an entry's images/s, can fall just beyond the 2nd or 9th of ten)."""
    return float(np.median(_unit_values(rounds)))


def median_time_interval(rounds: Rounds, confidence: float = 0.95) -> tuple[float, float]:
    """Interval of an entry's median call time, the round as the unit: the order-statistic interval
    of the round medians (of the calls, with one round).  With five rounds it is [min, max] of the
    round medians (coverage 94%); with ten, the 2nd and 9th.  Speed bounds are images over these."""
    return _median_interval_of(_unit_values(rounds), confidence)


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
    half = 0.0 if logs.size < 2 else float(sps.t.ppf((1 + confidence) / 2, logs.size - 1) * logs.std(ddof=1)
                                            / np.sqrt(logs.size))
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
# the machine-speed canary: adjusted figures and the two labelled intervals (issue 21)

#: 95% half-width (relative, on log seconds) of the per-process effect no canary removes, the floor
#: of a run's confidence interval: in the rerun study (docs/perf/rerun-study/run1..3.json, 24 entries,
#: 3 runs), after a time-local reference (the other entries' blocks within 2 s) the between-run spread
#: left beyond each run's own round-to-round error was 1.9% (one SD); on the quiet VM a single entry
#: (levit_256/openvino) was 7% off in two of three runs; a normalised interval with a 2% floor held
#: the rerun in 82–92% of cases across the three data sets, without one 58–81% (issue 21).
PROCESS_FLOOR = 0.02
#: 95% half-width of what stays between two runs on one machine beyond both runs' own errors, on
#: canary-adjusted figures: 1.96 × 1.9% (the residual above).  Without a canary the run's own
#: machine-wide factor stays: 1.96 × 8.3% (the same study's residual with no reference).
RERUN_RESIDUAL_ADJUSTED = 0.037
RERUN_RESIDUAL_RAW = 0.16


def adjusted_rounds(rounds: Rounds, canary_s: Sequence[float | None], reference_s: float = 1.0,
                    beta: float = 1.0, run_s: float | None = None) -> list[np.ndarray] | None:
    """Each round's call times as if the machine ran at the reference's speed: scaled by
    ``reference_s / c̃`` (c̃ = ``run_s``, the median canary of every block of the run's group: the
    run's machine-wide factor, measured over some hundred blocks, so precisely; without it, this
    entry's own median canary) and by ``(c̃ / canary_s)^beta`` (the round's own deviation, as far as
    the canary tracks the entries: ``beta`` from :func:`canary_tracking`; 1 with ``beta`` 1, which is
    ``reference_s / canary_s``).  A machine-wide slowdown slows the canary by the same factor and
    cancels; what slows one entry alone does not.  None when a round has no canary figure (older
    files, or a canary that was not timed).  The gate uses ``reference_s`` 1: unit-free figures, in
    which two runs' references cancel in a ratio."""
    if len(canary_s) != len(rounds) or not all(c is not None and c > 0 for c in canary_s):
        return None
    if not (math.isfinite(reference_s) and reference_s > 0):
        raise ValueError(f"reference_s must be finite and positive, got {reference_s!r}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    run = float(run_s) if run_s is not None and run_s > 0 else float(np.median(np.asarray(canary_s, dtype=float)))
    return [np.asarray(r, dtype=float) * (reference_s / run) * (run / float(c)) ** beta
            for r, c in zip(rounds, canary_s)]


def group_canary(entries: Sequence[tuple[Rounds, Sequence[float | None]]]) -> tuple[float, float | None]:
    """What adjusting a group's entries needs from the whole group (each entry: its rounds and their
    canary seconds): :func:`canary_tracking`'s slope, and the median canary of every block (the
    run's machine factor, ``run_s`` of :func:`adjusted_rounds`; None without a canary)."""
    values = [float(c) for _, canary_s in entries for c in canary_s if c is not None]
    return canary_tracking(entries), (float(np.median(values)) if values else None)


def canary_tracking(entries: Sequence[tuple[Rounds, Sequence[float | None]]]) -> float:
    """How far the canary's round-to-round changes are the entries' own: the pooled slope of each
    entry's log round medians on its rounds' log canary, both centred per entry, clipped to [0, 1].

    A canary measured in a few milliseconds is itself noisy: on a loaded 2-core VM a 5-10 ms window
    tracked the blocks with a correlation of 0.03-0.73 and, applied whole (slope 1), made adjusted
    rounds spread more than raw ones (docs/measurement.md).  Regressing on it shrinks that noise away
    (a canary that does not track gets a slope near 0: the rounds keep their raw spread) and keeps
    what it does track (near 1 under a common-mode slowdown).  0 with fewer than three usable rounds."""
    xs, ys = [], []
    for rounds, canary_s in entries:
        pairs = [(math.log(float(c)), math.log(float(np.median(r)))) for r, c in zip(rounds, canary_s)
                 if c is not None and c > 0 and len(r) and float(np.median(r)) > 0]
        if len(pairs) < 2:
            continue
        x, y = np.array(pairs).T
        xs.append(x - x.mean())
        ys.append(y - y.mean())
    if not xs or sum(len(x) for x in xs) < 3:
        return 0.0
    x, y = np.concatenate(xs), np.concatenate(ys)
    sxx = float(x @ x)
    return 0.0 if sxx <= 0 else min(1.0, max(0.0, float(x @ y) / sxx))


def _widened(rounds: Rounds, extra: float, confidence: float, scale: float) -> tuple[float, float]:
    """:func:`median_time_interval`'s sides on log seconds, each half-width ``h`` made
    ``sqrt((scale·h)² + extra²)``, around the median call time: (low, high) seconds."""
    lo, hi = median_time_interval(rounds, confidence)
    mid = float(np.median(np.concatenate([np.asarray(r, dtype=float) for r in rounds])))
    lo, hi = min(lo, mid), max(hi, mid)
    down, up = math.log(mid / lo), math.log(hi / mid)
    return (mid * math.exp(-math.hypot(scale * down, extra)), mid * math.exp(math.hypot(scale * up, extra)))


def confidence_interval(rounds: Rounds, floor: float = PROCESS_FLOOR, confidence: float = 0.95) -> tuple[float, float]:
    """The confidence interval of this run's median call time (adjusted rounds where there is a
    canary): the order-statistic interval of the round medians, each side combined in quadrature
    with the process-level ``floor`` (an independent error of this process that its rounds cannot
    show).  Seconds: (low, high)."""
    return _widened(rounds, floor, confidence, 1.0)


def rerun_interval(rounds: Rounds, adjusted: bool, floor: float = PROCESS_FLOOR, confidence: float = 0.95,
                   residual: float | None = None) -> tuple[float, float]:
    """Where another run's median call time on this machine will land: the difference of two runs'
    estimates holds both runs' round-to-round errors (√2 × this run's half-width), both processes'
    effects (√2 × ``floor``) and what differs between runs beyond them (``residual``; default
    ``RERUN_RESIDUAL_ADJUSTED`` for canary-adjusted rounds, else ``RERUN_RESIDUAL_RAW``), in quadrature."""
    residual = residual if residual is not None else RERUN_RESIDUAL_ADJUSTED if adjusted else RERUN_RESIDUAL_RAW
    return _widened(rounds, math.hypot(math.sqrt(2) * floor, residual), confidence, math.sqrt(2))


def labelled_intervals(rounds: Rounds, images_per_call: int, of: str, how: str | None = None,
                       residual: float | None = None) -> dict[str, dict]:
    """Both intervals of an entry's images/s, each labelled: ``of`` names the figure they bound
    (``adjusted_images_per_second``: adjusted ``rounds``; ``how`` by what, ``residual`` its rerun one)."""
    adjusted = of.startswith("adjusted")
    how = how or ("canary-adjusted" if adjusted else "raw: no canary")
    lo, hi = confidence_interval(rounds)
    rlo, rhi = rerun_interval(rounds, adjusted, residual=residual)
    return {
        "confidence": {"images_per_second": [images_per_call / hi, images_per_call / lo], "level": 0.95, "of": of,
                       "label": f"95% confidence interval of this run's estimate ({how}; "
                                f"±{PROCESS_FLOOR:.0%} process floor)"},
        "rerun": {"images_per_second": [images_per_call / rhi, images_per_call / rlo], "level": 0.95, "of": of,
                  "label": f"95% rerun interval: where another run on this machine will land ({how})"},
    }


# ---------------------------------------------------------------------------------------------
# latency under load (issue 22): percentiles with distribution-free bounds, LoadGen's early stopping

#: the latency percentiles a load level reports (LoadGen: p90 single-stream, p99 server)
LOAD_PERCENTILES = (50.0, 90.0, 99.0, 99.9)
#: LoadGen's early-stopping confidence: the reported bound holds the true percentile with this probability
EARLY_STOPPING_CONFIDENCE = 0.99


def percentile_bounds(samples: Sequence[float] | np.ndarray, pct: float,
                      confidence: float = 0.95) -> tuple[float | None, float | None]:
    """The exact distribution-free (binomial order-statistic) two-sided interval of the ``pct``-th
    percentile (``scipy.stats.quantile_test``); a side the sample is too small to bound is None
    (e.g. the upper bound of p99 at 95%, two-sided, needs 368 samples or more)."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        return None, None
    lo, hi = sps.quantile_test(x, p=pct / 100.0).confidence_interval(confidence)
    return (float(lo) if math.isfinite(lo) else None), (float(hi) if math.isfinite(hi) else None)


def min_requests_for(pct: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """The fewest samples whose largest value bounds the ``pct``-th percentile from above with
    ``confidence`` (1 - q^n ≥ confidence): 44 for p90 and 459 for p99 at 99%."""
    q = pct / 100.0
    return int(math.ceil(math.log(1 - confidence) / math.log(q) - 1e-9))


@dataclass(frozen=True)
class EarlyStop:
    """LoadGen's early-stopping verdict on one percentile: whether the sample is large enough for
    an upper bound at ``confidence``, that bound (the order statistic ``rank``, 1-based) and the
    fewest samples that would give one."""

    pct: float
    n: int
    enough: bool
    bound_s: float | None
    rank: int | None
    min_requests: int
    confidence: float

    def words(self) -> str:
        if not self.enough:
            return (f"p{self.pct:g}: not enough requests ({self.n}); at least {self.min_requests} give a "
                    f"{self.confidence:.0%} upper bound")
        return (f"p{self.pct:g} ≤ {self.bound_s * 1000:.3g} ms with {self.confidence:.0%} confidence "
                f"(early stopping: order statistic {self.rank} of {self.n})")

    def to_dict(self) -> dict:
        ms = None if self.bound_s is None else self.bound_s * 1000.0
        return {"pct": self.pct, "n": self.n, "enough": self.enough, "bound_ms": ms, "rank": self.rank,
                "min_requests": self.min_requests, "confidence": self.confidence}


def early_stopping(samples: Sequence[float] | np.ndarray, pct: float,
                   confidence: float = EARLY_STOPPING_CONFIDENCE) -> EarlyStop:
    """LoadGen's early stopping for a percentile: the smallest order statistic that bounds the true
    ``pct``-th percentile from above with ``confidence`` (one-sided ``quantile_test``), when the
    sample has one; the rank is where Binomial(n, q) reaches ``confidence``."""
    x = np.sort(np.asarray(samples, dtype=float))
    need = min_requests_for(pct, confidence)
    if x.size < need:
        return EarlyStop(pct, int(x.size), False, None, None, need, confidence)
    rank = int(sps.binom(x.size, pct / 100.0).isf(1 - confidence))  # 0-based, as quantile_test takes it
    if rank >= x.size:
        return EarlyStop(pct, int(x.size), False, None, None, need, confidence)
    return EarlyStop(pct, int(x.size), True, float(x[rank]), rank + 1, need, confidence)


def latency_percentiles(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict[str, dict]:
    """Each of :data:`LOAD_PERCENTILES` of per-request seconds as a results file keeps it:
    ``{"p99": {"ms": x, "ci95_ms": [lo, hi]}}`` (a bound the sample cannot give is null)."""
    x = np.asarray(samples, dtype=float)
    out: dict[str, dict] = {}
    for pct in LOAD_PERCENTILES:
        lo, hi = percentile_bounds(x, pct, confidence)
        out[f"p{pct:g}"] = {"ms": float(np.percentile(x, pct)) * 1000.0 if x.size else None,
                            "ci95_ms": [None if lo is None else lo * 1000.0, None if hi is None else hi * 1000.0]}
    return out


def rate_interval(completions_s: Sequence[float] | np.ndarray, images: Sequence[int] | np.ndarray,
                  slices: int = 10, confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free interval of a level's throughput (items/s): the time from first to last
    completion cut into ``slices`` equal parts, each part's items over its seconds, and the
    order-statistic interval of their median; None with fewer than two completions."""
    t = np.asarray(completions_s, dtype=float)
    k = np.asarray(images, dtype=float)
    if t.size < 2 or t[-1] <= t[0]:
        return None
    edges = np.linspace(t[0], t[-1], slices + 1)
    counts = np.histogram(t, bins=edges, weights=k)[0]
    rates = counts / np.diff(edges)
    return _median_interval_of(rates, confidence)
