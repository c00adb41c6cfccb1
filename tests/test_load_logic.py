"""Latency under load, the logic alone (issue 22): percentile bounds and early stopping on simulated
samples of known truth, the Poisson schedule, the SLO search on a queue whose p99 theory gives, the
gate's judgement on load figures, a level's summary and the record's round trip.  No clock, no threads."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from levit_bench.load import meets, proven, search_slo, summarize_level
from levit_bench.load_compare import judge
from levit_bench.load_record import LoadRecord
from levit_bench.loadgen import Level, LevelResult, _thin, poisson_schedule
from levit_bench.spec import Identity, Status
from levit_bench.stats import (early_stopping, latency_percentiles, min_requests_for, percentile_bounds,
                               rate_interval)
from levit_bench.verdict import FAIL, INCONCLUSIVE, PASS


# ---------------------------------------------------------------------------------------------
# M/D/1 theory (used here and by tests/test_load.py)


def md1_wait_cdf(t: float, rho: float, service_s: float) -> float:
    """P(W ≤ t) of the M/D/1 queue's waiting time (Erlang 1909; Crommelin 1932), service ``service_s``,
    load ``rho``: (1 - ρ) Σ_{k=0}^{⌊t/S⌋} [ρ(k - t/S)]^k / k! · e^{-ρ(k - t/S)}."""
    x = t / service_s
    return (1 - rho) * math.fsum((rho * (k - x)) ** k / math.factorial(k) * math.exp(-rho * (k - x))
                                 for k in range(int(math.floor(x)) + 1))


def md1_latency_quantile(q: float, rho: float, service_s: float) -> float:
    """The ``q`` quantile of M/D/1 latency (waiting + service), by bisection on the waiting time's CDF."""
    if md1_wait_cdf(0.0, rho, service_s) >= q:
        return service_s
    lo, hi = 0.0, service_s
    while md1_wait_cdf(hi, rho, service_s) < q:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_wait_cdf(mid, rho, service_s) < q else (lo, mid)
    return hi + service_s


def lindley_waits(arrivals: np.ndarray, service: np.ndarray | float, w0: float = 0.0) -> np.ndarray:
    """Exact FIFO single-server waits for these arrivals and service times (Lindley's recursion),
    the first request waiting ``w0``."""
    s = np.broadcast_to(np.asarray(service, dtype=float), arrivals.shape)
    w = np.zeros(arrivals.size)
    w[0] = w0
    for i in range(1, arrivals.size):
        w[i] = max(0.0, w[i - 1] + s[i - 1] - (arrivals[i] - arrivals[i - 1]))
    return w


def test_the_md1_formulas_agree_with_a_simulated_queue():
    rho, s = 0.8, 1.0
    waits = lindley_waits(poisson_schedule(rho / s, 200_000, seed=5), s)
    assert waits.mean() == pytest.approx(rho * s / (2 * (1 - rho)), rel=0.05)  # 2.0
    assert np.quantile(waits, 0.99) + s == pytest.approx(md1_latency_quantile(0.99, rho, s), rel=0.05)
    assert md1_wait_cdf(0.0, rho, s) == pytest.approx(1 - rho)


# ---------------------------------------------------------------------------------------------
# percentiles, early stopping, throughput


def test_percentile_bounds_cover_the_true_percentile():
    rng = np.random.default_rng(0)
    true_p99 = math.exp(sps.norm.ppf(0.99) * 0.5)  # lognormal(0, 0.5)
    covered = 0
    for _ in range(300):
        lo, hi = percentile_bounds(rng.lognormal(0, 0.5, 1000), 99.0)
        covered += lo <= true_p99 <= hi
    assert covered / 300 >= 0.93  # exact order statistics: at least 95% up to sampling


def test_a_bound_the_sample_cannot_give_is_none():
    need = min_requests_for(99.0, 0.975)  # the two-sided 95% interval's upper side
    assert need == 368
    rng = np.random.default_rng(1)
    assert percentile_bounds(rng.random(need - 1), 99.0)[1] is None
    assert percentile_bounds(rng.random(need), 99.0)[1] is not None
    assert percentile_bounds([], 50.0) == (None, None)


def test_early_stopping_needs_loadgens_minimum_and_bounds_from_above():
    assert min_requests_for(90.0) == 44 and min_requests_for(99.0) == 459
    assert not early_stopping(np.ones(43), 90.0).enough
    rng = np.random.default_rng(2)
    above = 0
    for _ in range(400):
        verdict = early_stopping(rng.random(500), 90.0)
        assert verdict.enough and verdict.rank <= 500
        above += verdict.bound_s >= 0.9  # uniform: the true p90 is 0.9
    assert above / 400 >= 0.975  # 99% nominal
    assert "not enough requests" in early_stopping(np.ones(10), 99.0).words()


def test_latency_percentiles_name_each_with_its_interval():
    p = latency_percentiles(np.linspace(0.001, 0.1, 1000))
    assert set(p) == {"p50", "p90", "p99", "p99.9"}
    assert p["p50"]["ms"] == pytest.approx(50.5, rel=0.01)
    lo, hi = p["p99"]["ci95_ms"]
    assert lo <= p["p99"]["ms"] <= hi
    assert p["p99.9"]["ci95_ms"][1] is None  # 1000 requests cannot bound p99.9 from above


def test_rate_interval_holds_the_rate_of_a_poisson_stream():
    t = poisson_schedule(100.0, 30.0, seed=3)
    lo, hi = rate_interval(t, np.ones(t.size))
    assert lo < 100.0 < hi and hi / lo < 1.3


def test_poisson_schedule_is_seeded_and_exponential():
    a, b = poisson_schedule(200.0, 10.0, 7), poisson_schedule(200.0, 10.0, 7)
    assert np.array_equal(a, b) and not np.array_equal(a, poisson_schedule(200.0, 10.0, 8))
    assert a.max() < 10.0 and a.size == pytest.approx(2000, rel=0.1)
    gaps = np.diff(a)
    assert sps.kstest(gaps, "expon", args=(0, 1 / 200.0)).pvalue > 0.01
    assert poisson_schedule(1000.0, 100.0, 1, limit=500).size == 500


def test_a_level_refuses_a_rate_that_is_not_positive():
    for bad in (0.0, -5.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            Level(rate=bad)


# ---------------------------------------------------------------------------------------------
# the SLO search, on a queue whose p99 theory gives

SERVICE_S = 0.004


def theory_level(rate: float) -> dict:
    """A level as ``summarize_level`` makes it, its p99 the M/D/1 latency's (±3% bounds); at ρ ≥ 1
    the queue is unbounded."""
    rho = rate * SERVICE_S
    if rho >= 1:
        return {"rate": rate, "concurrency": 1, "unsustainable": "unsustainable: the queue grows", "latency": {}}
    p99 = md1_latency_quantile(0.99, rho, SERVICE_S) * 1000
    return {"rate": rate, "concurrency": 1, "unsustainable": None, "unserved": 0, "achieved_rate": rate,
            "latency": {"p99": {"ms": p99, "ci95_ms": [p99 * 0.97, p99 * 1.03]}}}


def peak_under(slo_ms: float) -> float:
    lo, hi = 1.0, 1 / SERVICE_S
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_latency_quantile(0.99, mid * SERVICE_S, SERVICE_S) * 1000 <= slo_ms else (lo, mid)
    return lo


def test_the_search_brackets_the_theoretical_peak_rate():
    slo = 20.0
    sweep = (50, 100, 150, 200, 240, 275)
    levels = [theory_level(r) for r in sweep]
    truth = peak_under(slo)
    met0, failed0 = max(r for r in sweep if r <= truth), min(r for r in sweep if r > truth)
    measured = []
    search = search_slo(levels, lambda r: measured.append(r) or theory_level(r), slo, steps=3)
    met, failed = search["met"]["rate"], search["failed"]["rate"]
    assert met <= truth <= failed
    assert 1 <= len(measured) <= 3 and all(met0 < r < failed0 for r in measured)  # bisected inside the sweep's bracket
    assert failed / met < failed0 / met0 and len(levels) == len(sweep) + len(measured)
    assert search["met"]["p99_ms"] <= slo < search["failed"]["p99_ms"]
    assert "met up to" in search["statement"] and search["proven"] in (True, False)


def test_an_slo_no_level_meets_reports_the_best_level():
    levels = [theory_level(r) for r in (50, 100, 200)]
    search = search_slo(levels, theory_level, 1.0, steps=3)  # below the service time itself
    assert search["met"] is None and search["failed"]["rate"] == 50
    assert search["statement"].startswith("no level met p99 ≤ 1 ms; the best level was 50/s")


def test_an_slo_every_level_meets_looks_above_then_says_the_peak_is_higher():
    levels = [theory_level(r) for r in (20, 40)]
    search = search_slo(levels, theory_level, 500.0, steps=3)  # looks above: 60, 90, 135/s
    assert search["failed"] is None and search["met"]["rate"] == pytest.approx(135.0)
    assert "above the highest rate measured" in search["statement"] and len(levels) == 5
    found = search_slo([theory_level(r) for r in (100, 150)], theory_level, 20.0, steps=3)
    assert found["failed"] is not None  # 150 met 20 ms? then 225/s (ρ 0.9) did not


def test_meeting_and_proving_an_slo():
    level = theory_level(150)
    p99 = level["latency"]["p99"]["ms"]
    assert meets(level, p99 * 1.01) and proven(level, p99 * 1.05) and not proven(level, p99 * 1.01)
    assert not meets(level, p99 * 0.99) and proven(level, p99 * 0.9)
    assert not meets(theory_level(300), 1e9) and proven(theory_level(300), 1e9)


# ---------------------------------------------------------------------------------------------
# the gate on load figures


def test_judging_p99_and_peak_rate():
    assert judge(50, (48, 52), 80, (77, 83), 0.10, True)[1] == FAIL
    assert judge(50, (48, 52), 50.5, (48.5, 52.5), 0.10, True)[1] == PASS
    outcome, reason = judge(50, (48, None), 51, (49, 53), 0.10, True)[1:]
    assert outcome == INCONCLUSIVE and "too few requests" in reason
    assert judge(100, (100, 110), 60, (60, 66), 0.10, False)[1] == FAIL  # the peak rate fell
    assert judge(100, (100, 110), 104, (104, 112), 0.10, False)[1] == PASS
    assert judge(100, (100, None), 104, (104, None), 0.10, False)[1] == INCONCLUSIVE


# ---------------------------------------------------------------------------------------------
# a level's summary and the record


def synthetic_result(max_batch: int = 1) -> LevelResult:
    """Ten requests every 0.1 s from 1.0 s, each served 2 ms after arriving for 4 ms."""
    scheduled = 1.0 + 0.1 * np.arange(10)
    start, end = scheduled + 0.002, scheduled + 0.006
    calls = [(s, e, 1) for s, e in zip(start, end)]
    level = Level(rate=10.0, duration_s=1.0, warmup_s=1.0, max_batch=max_batch)
    return LevelResult(level, scheduled, start, end, np.ones(10, dtype=int), calls,
                       [(1.0 + 0.1 * i, 1 + (i == 4) * 5) for i in range(10)], offered=10, unserved=0, wall_s=2.1)


def test_summarize_level_figures():
    s = summarize_level(synthetic_result(), images_per_call=1)
    assert s["requests"] == 10 and s["unserved"] == 0 and s["max_queue"] == 6
    assert s["mean_wait_ms"] == pytest.approx(2.0) and s["mean_latency_ms"] == pytest.approx(6.0)
    assert s["service_ms"] == pytest.approx(4.0)
    assert s["achieved_rate"] == pytest.approx(10 / 0.906)
    assert s["latency"]["p50"]["ms"] == pytest.approx(6.0)
    assert len(s["latency_s"]) == 10 and s["seed"] == 0
    batched = summarize_level(synthetic_result(max_batch=8), images_per_call=8)
    assert batched["images_per_second"] == pytest.approx(batched["achieved_rate"])  # padding is not counted


def test_thinning_keeps_the_longest_queue():
    points = [(float(i), 1) for i in range(1000)]
    points[537] = (537.0, 99)
    kept = _thin(points, 50)
    assert len(kept) == 50 and (537.0, 99) in kept


def test_a_load_record_round_trips():
    identity = Identity("levit_128s", "onnxruntime", "cpu", "fp32", 2, 1, 224)
    r = LoadRecord(identity, Status.OK, "server", sweep="rate", levels=[theory_level(100)], slo_p99_ms=20.0,
                   peak_rate=180.0)
    back = LoadRecord.from_dict(r.to_dict())
    assert back == r and back.key == (identity.key, "server") and back.ok
    assert back.p99_ms(back.levels[0]) == pytest.approx(theory_level(100)["latency"]["p99"]["ms"])
    assert LoadRecord(identity, "failed", "server", "boom").status is Status.FAILED


def test_older_files_load_without_load_records_and_one_with_them_round_trips(tmp_path):
    import json
    from pathlib import Path

    import jsonschema

    from levit_bench import results

    fixtures = sorted((Path(__file__).parent / "fixtures").glob("results-v*.json"))
    assert len(fixtures) >= 3
    for f in fixtures:
        assert results.load(f).load == []
    system = json.loads(fixtures[-1].read_text())["system"]
    identity = Identity("levit_128s", "onnxruntime", "cpu", "fp32", 2, 1, 224)
    level = summarize_level(synthetic_result(), images_per_call=1)
    record = results.RunRecord(system=system, config={"command": "load"}, complete=True,
                               load=[LoadRecord(identity, Status.OK, "server", levels=[level], peak_rate=11.0)])
    path = record.save(tmp_path / "load.json")
    data = json.loads(path.read_text())
    jsonschema.validate(data, results.schema())
    assert data["schema_version"] == results.SCHEMA_VERSION >= 5  # load records arrived in schema 5
    back = results.load(path)
    assert back.load == record.load and back.results == []


def _server_record(scale: float = 1.0, peak: tuple[float, float] = (140.0, 149.0)) -> LoadRecord:
    """A server record of the theory queue's levels, every latency times ``scale``, and an SLO bracket."""
    levels = []
    for rate in (50.0, 100.0, 150.0):
        lv = theory_level(rate)
        p = lv["latency"]["p99"]
        lv["latency"] = {"p99": {"ms": p["ms"] * scale, "ci95_ms": [v * scale for v in p["ci95_ms"]]}}
        levels.append(lv)
    search = {"met": {"rate": peak[0]}, "failed": {"rate": peak[1]}, "proven": True, "statement": "…"}
    return LoadRecord(Identity("levit_128s", "onnxruntime", "cpu", "fp32", 2, 1, 224), Status.OK, "server",
                      levels=levels, slo_p99_ms=20.0, search=search, peak_rate=peak[0])


def test_the_gate_on_load_figures():
    from levit_bench.load_compare import compare_load_records

    same = compare_load_records(_server_record(), _server_record(), 0.10)
    assert [r.figure for r in same] == ["p99 ms at 50/s, 1 workers", "p99 ms at 100/s, 1 workers",
                                        "p99 ms at 150/s, 1 workers", "peak rate/s under p99 ≤ 20 ms"]
    assert all(r.outcome == PASS for r in same[:3])  # ±3% bounds: a 10% change is ruled out
    assert same[3].outcome == PASS  # a bracket 140–149 wide on each side rules out a 10% drop (140/149 > 1/1.1)
    coarse = compare_load_records(_server_record(peak=(100.0, 149.0)), _server_record(peak=(100.0, 149.0)), 0.10)
    assert coarse[3].outcome == INCONCLUSIVE and "straddle" in coarse[3].reason  # 100–149 cannot
    slower = compare_load_records(_server_record(), _server_record(scale=1.5, peak=(80.0, 88.0)), 0.10)
    assert [r.outcome for r in slower] == [FAIL] * 4
    assert slower[0].change_pct == pytest.approx(50.0)
