"""The one statistics module: each question's estimator, and the same answer wherever it is asked."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from levit_bench.entry_parts import Timing
from levit_bench.results import Entry
from levit_bench.spec import Identity
from levit_bench.stats import NOISE_THRESHOLD, median_time_interval, paired_ratio, summarize_calls, unpaired_ratio

# ---------------------------------------------------------------------------------------------
# calls


def test_known_percentiles_and_speed():
    x = np.arange(1, 101, dtype=float) / 1000  # 1..100 ms
    s = summarize_calls(x, images_per_call=16)
    assert s.median_s == pytest.approx(0.0505)
    assert s.latency_ms == pytest.approx({"p50": 50.5, "p90": 90.1, "p99": 99.01})
    assert s.images_per_second == pytest.approx(16 / 0.0505)
    assert s.iqr_s == pytest.approx(0.0495)
    assert s.iqr_ips == pytest.approx(16 / np.percentile(x, 25) - 16 / np.percentile(x, 75))
    assert s.min_s == pytest.approx(0.001)
    assert s.noisy  # IQR ~98% of the median


def test_quiet_calls_are_not_noisy_and_one_sample_summarizes():
    s = summarize_calls(np.random.default_rng(1).normal(0.1, 0.002, 200), 8)
    assert not s.noisy and s.rel_iqr < NOISE_THRESHOLD
    one = summarize_calls([0.5], 1)
    assert one.images_per_second == 2.0 and one.iqr_s == 0.0 and one.n == 1
    with pytest.raises(ValueError):
        summarize_calls([], 1)


# ---------------------------------------------------------------------------------------------
# the round-level interval


@pytest.mark.parametrize("n", [2, 3, 5, 6, 10, 41, 101, 2000])
def test_interval_is_scipys_order_statistic_interval_of_the_median(n):
    """The method kept from before: scipy.stats.quantile_test's interval (bounds beyond the sample
    are its min and max), computed from the binomial ranks once per size."""
    rng = np.random.default_rng(n)
    for x in (rng.lognormal(0, 0.2, n), np.round(rng.lognormal(0, 0.2, n), 1)):  # ties too
        ci = sps.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
        want = (float(ci.low) if np.isfinite(ci.low) else x.min(), float(ci.high) if np.isfinite(ci.high) else x.max())
        assert median_time_interval([x]) == want


def test_interval_over_rounds_is_that_of_the_round_medians():
    rounds = [np.array([1.0, 1.1, 5.0]), np.array([2.0]), np.array([0.9, 1.0]), np.array([3.0, 3.0]),
              np.array([1.5, 1.6, 1.7])]
    assert median_time_interval(rounds) == (0.95, 3.0)  # five rounds: the range of their medians
    assert median_time_interval([r for r in rounds] + [np.array([])]) == (0.95, 3.0)  # empty rounds ignored
    with pytest.raises(ValueError):
        median_time_interval([np.array([])])


def test_interval_has_nominal_coverage():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(300):
        sample = rng.lognormal(0.0, 0.2, 101)  # true median 1.0
        lo, hi = median_time_interval([sample])
        assert lo <= np.median(sample) <= hi
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / 300 <= 0.995


def test_entry_record_takes_plain_data_and_its_speed_interval_inverts_the_time_interval():
    rng = np.random.default_rng(3)
    rounds = [0.1 * rng.lognormal(0, 0.03, 4) for _ in range(6)]
    e = Entry(Identity("levit_128s", "torch", "cpu", "fp32", 1, 8))
    e.add_timing(Timing.measure(np.concatenate(rounds), [{"round": i, "position": 0, "start_s": i, "calls": 4}
                                                         for i in range(6)], 8, warmup_calls=3, first_call_s=0.2))
    lo, hi = median_time_interval(rounds)
    t = e.timing
    assert e.ok and t.ci95 == [8 / hi, 8 / lo] and t.ci95[0] < t.images_per_second < t.ci95[1]
    assert t.images_per_second == summarize_calls(np.concatenate(rounds), 8).images_per_second
    assert t.warmup_calls == 3 and t.first_call_s == 0.2 and len(t.round_samples()) == 6
    code = "import sys, levit_bench.results; print('levit_bench.schedule' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "results imports the schedule"


# ---------------------------------------------------------------------------------------------
# ratios and the two-sample test


def test_unpaired_ratio_is_the_ratio_of_medians_within_both_intervals():
    rng = np.random.default_rng(4)
    a = [0.01 * rng.lognormal(0, 0.05, 5) for _ in range(6)]
    b = [0.02 * rng.lognormal(0, 0.05, 5) for _ in range(6)]
    r = unpaired_ratio(a, b)
    (a_lo, a_hi), (b_lo, b_hi) = median_time_interval(a), median_time_interval(b)
    assert r.value == pytest.approx(np.median(np.concatenate(b)) / np.median(np.concatenate(a)))
    assert r.ci95 == (b_lo / a_hi, b_hi / a_lo) and not r.paired and r.rounds == 6
    assert r.ci95[0] < r.value < r.ci95[1]


def test_paired_ratio_is_the_geometric_mean_of_per_round_ratios():
    a = [np.array([1.0]), np.array([2.0]), np.array([1.5])]
    r = paired_ratio(a, [x * 3 for x in a])
    assert r.value == pytest.approx(3.0) and r.ci95 == pytest.approx((3.0, 3.0)) and r.paired
    with pytest.raises(ValueError, match="differ in number"):
        paired_ratio(a, a[:2])


