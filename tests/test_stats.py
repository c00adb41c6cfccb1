import numpy as np
import pytest

from levit_bench.stats import NOISE_THRESHOLD, compare_samples, median_ci, summarize


def test_known_percentiles_and_speed():
    x = np.arange(1, 101, dtype=float) / 1000  # 1..100 ms
    s = summarize(x, images_per_call=16)
    assert s.median_s == pytest.approx(0.0505)
    assert s.latency_ms == pytest.approx({"p50": 50.5, "p90": 90.1, "p99": 99.01})
    assert s.images_per_second == pytest.approx(16 / 0.0505)
    assert s.iqr_s == pytest.approx(0.0495)
    assert s.min_s == pytest.approx(0.001)
    assert s.noisy  # IQR ~98% of the median


def test_median_ci_contains_median_and_has_nominal_coverage():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(300):
        sample = rng.lognormal(0.0, 0.2, 101)  # true median 1.0
        lo, hi = median_ci(sample)
        assert lo <= np.median(sample) <= hi
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / 300 <= 0.995


def test_speed_ci_is_inverse_of_time_ci():
    x = np.random.default_rng(1).normal(0.1, 0.002, 200)
    s = summarize(x, 8)
    assert s.ci95_ips[0] == pytest.approx(8 / s.ci95_s[1])
    assert s.ci95_ips[0] < s.images_per_second < s.ci95_ips[1]
    assert not s.noisy and s.rel_iqr < NOISE_THRESHOLD


def test_compare_detects_20_percent_and_not_1_percent_noise():
    rng = np.random.default_rng(2)
    base = rng.lognormal(np.log(0.05), 0.05, 100)
    slower = base * 1.25 * rng.lognormal(0, 0.02, 100)
    same = base * rng.lognormal(0, 0.01, 100)
    c = compare_samples(base, slower)
    assert c.significant and c.speed_ratio == pytest.approx(0.8, rel=0.03) and c.ratio_ci95[1] < 1
    assert not compare_samples(base, same).significant


def test_single_sample_summary():
    s = summarize([0.5], 1)
    assert s.ci95_s == (0.5, 0.5) and s.images_per_second == 2.0
