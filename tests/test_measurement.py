"""Interleaved rounds and the intervals they give: schedule, order statistics of round medians, paired ratios.

The coverage tests simulate a machine whose speed drifts (an Ornstein-Uhlenbeck process on the log
of the per-call time, correlation time 0.5 s, 8% standard deviation) under 2% per-call noise: the
regime the project's 2-core VMs show (docs/measurement.md).  "True value" is an entry's time at the
machine's long-run mean speed, which a rerun estimates afresh.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats as sps

from levit_bench import stats
from levit_bench.harness import TimingOptions
from levit_bench.schedule import Schedule, Timed, calls_per_round, choose_rounds, run_rounds, warm

# ---------------------------------------------------------------------------------------------
# the schedule


def _items(n: int, log: list[str]) -> list[Timed]:
    def make(label: str) -> Timed:
        return Timed(label, lambda: log.append(label), lambda: None, False)

    return [make(f"e{i}") for i in range(n)]


def _schedule_run(seed: int, rounds: int = 6) -> tuple[list[Timed], list[str]]:
    log: list[str] = []
    items = _items(5, log)
    timing = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=rounds, rewarm_s=0.0)
    for it in items:
        warm(it, timing)
    log.clear()
    assert run_rounds(items, timing, Schedule(rounds, seed)) == rounds
    assert log[:5] == log[5:10]  # the untimed warm-up round, in the first round's order
    return items, log[5:]


def test_every_entry_once_per_round_in_a_seeded_random_order():
    items, log = _schedule_run(seed=7)
    per_round = [log[i * 5:(i + 1) * 5] for i in range(6)]  # one call per entry per round here
    for r, visited in enumerate(per_round):
        assert sorted(visited) == [f"e{i}" for i in range(5)], f"round {r} visited {visited}"
    assert len({tuple(v) for v in per_round}) > 1, "the order never changed"
    for it in items:  # what the results file keeps: round, position in that round, start time, calls
        assert [r.round for r in it.rounds] == list(range(6))
        assert [per_round[r.round][r.position] for r in it.rounds] == [it.label] * 6
        assert all(b.start_s >= a.start_s for a, b in zip(it.rounds, it.rounds[1:]))
    again, log2 = _schedule_run(seed=7)
    assert log2 == log, "the same seed must give the same orders"
    _, log3 = _schedule_run(seed=8)
    assert log3 != log


def test_automatic_rounds_fit_the_time_one_block_per_entry_would_take():
    timing = TimingOptions(min_time_s=2.0, min_calls=5)
    assert choose_rounds([0.001, 0.01, 0.05], timing) == 10  # fast entries split their 2 s freely
    assert choose_rounds([3.0, 3.0], timing) == 6  # a call per round: 6 calls, within 1.25x the 5 min_calls asks
    mixed = [0.01] * 8 + [0.45] * 4 + [3.0] * 4  # the README's main command on a 2-core VM
    r = choose_rounds(mixed, timing)
    assert 5 <= r < 10
    one_block = sum(max(2.0, 5 * c) for c in mixed)
    assert sum(r * calls_per_round(c, timing, r) * c for c in mixed) <= 1.25 * one_block


def test_calls_per_round_share_min_time_and_min_calls():
    timing = TimingOptions(min_time_s=2.0, min_calls=5)
    assert calls_per_round(0.01, timing, 10) == 20  # 0.2 s per round
    assert calls_per_round(3.0, timing, 10) == 1  # a slow entry: one call per round
    assert calls_per_round(3.0, timing, 2) == 3  # min_calls 5 over 2 rounds


def test_a_runtime_error_mid_rounds_stops_that_entry_only():
    log: list[str] = []
    items = _items(3, log)
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("device lost\nmore")

    items[1].call = flaky
    timing = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=4, rewarm_s=0.0)
    for it in items:
        warm(it, timing)
    run_rounds(items, timing, Schedule(4, 0))
    assert items[1].error == "device lost"
    assert len(items[0].rounds) == len(items[2].rounds) == 4 and len(items[1].rounds) < 4


# ---------------------------------------------------------------------------------------------
# simulated drift


def _drift(rng: np.random.Generator, seconds: float, dt: float = 0.01, tau: float = 0.5, sigma: float = 0.08):
    """log speed factor on a time grid: a stationary Ornstein-Uhlenbeck process."""
    n = int(seconds / dt) + 2
    a = np.exp(-dt / tau)
    x = np.empty(n)
    x[0] = rng.normal(0, sigma)
    shocks = rng.normal(0, sigma * np.sqrt(1 - a * a), n)
    for i in range(1, n):
        x[i] = a * x[i - 1] + shocks[i]
    return lambda t: np.exp(x[np.minimum((np.asarray(t) / dt).astype(int), n - 1)])


def _calls(t_true, start, seconds, factor, rng, noise=0.02):
    """Per-call times of a block starting at ``start`` lasting about ``seconds``."""
    out, now = [], start
    while now - start < seconds or not out:
        dt = t_true * float(factor(now)) * rng.lognormal(0, noise)
        out.append(dt)
        now += dt
    return np.array(out), now


def _simulated_run(rng, truths, min_time=2.0, rounds=10, interleaved=True):
    """Per-entry rounds of per-call times for one run of the entries ``truths`` (seconds per call)."""
    total = min_time * len(truths)
    factor = _drift(rng, total * 1.5)
    got = [[] for _ in truths]
    now = 0.0
    if not interleaved:
        for e, t in enumerate(truths):
            block, now = _calls(t, now, min_time, factor, rng)
            got[e].append(block)
        return got
    for _ in range(rounds):
        for e in rng.permutation(len(truths)):
            block, now = _calls(truths[e], now, min_time / rounds, factor, rng)
            got[e].append(block)
    return got


@pytest.mark.slow
def test_hierarchical_interval_covers_the_truth_where_the_per_block_one_does_not():
    rng = np.random.default_rng(2026)
    truths = [0.02, 0.05, 0.01, 0.03, 0.04, 0.015]
    new_hits = old_hits = total = 0
    for sim in range(200):
        inter = _simulated_run(rng, truths, interleaved=True)
        seq = _simulated_run(rng, truths, interleaved=False)
        e = sim % len(truths)  # one entry per simulated run: the runs are independent
        lo, hi = stats.median_time_interval(inter[e])
        new_hits += lo <= truths[e] <= hi
        lo, hi = stats.median_time_interval([np.concatenate(seq[e])])  # the calls of one block
        old_hits += lo <= truths[e] <= hi
        total += 1
    assert new_hits / total >= 0.90, f"interleaved + hierarchical covers {new_hits}/{total}"
    assert old_hits / total < 0.5, f"sequential + per-block covers {old_hits}/{total}"


def test_paired_ratios_cancel_a_drift_that_unpaired_ones_do_not():
    rng = np.random.default_rng(11)
    paired_err, unpaired_err = [], []
    for _ in range(60):
        a, b = _simulated_run(rng, [0.01, 0.02], interleaved=True)
        paired_err.append(abs(stats.paired_ratio(a, b).value / 2 - 1))
        a, b = _simulated_run(rng, [0.01, 0.02], interleaved=False)
        unpaired_err.append(abs(float(np.median(np.concatenate(b)) / np.median(np.concatenate(a))) / 2 - 1))
    # measured: paired 1.2%, unpaired 5.2% (median absolute error over 60 runs)
    assert np.median(paired_err) < 0.02
    assert np.median(unpaired_err) > 3 * np.median(paired_err)


def test_paired_ratio_interval_contains_the_truth_under_drift():
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(100):
        a, b = _simulated_run(rng, [0.01, 0.03], interleaved=True)
        lo, hi = stats.paired_ratio(a, b).ci95
        hits += lo <= 3.0 <= hi
    assert hits >= 90  # a 95% interval; measured 95.5% over 200 simulated runs


def test_median_time_interval_with_one_round_is_the_order_statistic_interval_over_calls():
    x = np.random.default_rng(0).lognormal(0, 0.05, 200)
    lo, hi = stats.median_time_interval([x])
    ci = sps.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
    assert (lo, hi) == (ci.low, ci.high)
    assert lo < np.median(x) < hi and (hi - lo) / np.median(x) < 0.05


def test_median_time_interval_over_few_rounds_of_one_call_is_wide_enough():
    """Slow entries get one call per round: with six rounds the interval is the range of the six,
    which holds the median 97% of the time (a percentile bootstrap of six values holds it far less)."""
    rng = np.random.default_rng(9)
    hits = 0
    for _ in range(400):
        x = rng.lognormal(0, 0.15, 6)
        lo, hi = stats.median_time_interval([np.array([v]) for v in x])
        hits += lo <= 1.0 <= hi
    assert hits / 400 >= 0.93


def test_split_rounds_checks_the_counts():
    assert [len(r) for r in stats.split_rounds([1.0] * 5, [2, 3])] == [2, 3]
    with pytest.raises(ValueError):
        stats.split_rounds([1.0] * 5, [2, 2])


def test_target_ci_adds_rounds_until_met_or_out_of_time(fake_clock):
    """On the fake clock (``conftest.FakeClock``): a steady entry meets the target in the planned
    rounds, a noisy one gets rounds added until --max-time, and not one round more."""
    timing = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=5, rewarm_s=0.0)
    rng = np.random.default_rng(0)
    call_s = 2.0**-6  # about 16 ms: some twenty rounds fit in the 0.3 s

    def noisy():  # 30% noise
        fake_clock.advance(call_s * rng.lognormal(0, 0.3))

    def steady():
        fake_clock.advance(call_s)

    for call, target, max_time, more in ((steady, 0.5, 5.0, False), (noisy, 1e-6, 0.3, True)):
        item = Timed("x", call, lambda: None, False)
        warm(item, timing)
        start = time.perf_counter()
        done = run_rounds([item], timing, Schedule(5, 0, target_ci=target, max_time_s=max_time, warmup_round=False))
        assert (done > 5) is more
        elapsed = time.perf_counter() - start
        assert elapsed < max_time + 1.0  # bounded by --max-time
        if more:  # ... and stopped at the first round past it
            last_round_s = sum(item.samples[-item.rounds[-1].calls:])
            assert elapsed >= max_time and elapsed - last_round_s < max_time


def test_an_item_can_bring_its_own_block_and_rewarm():
    """How profiling's profiled arm runs through the same rounds: the schedule sizes, orders and
    records the blocks; the item says how a block and a re-warm run (inside a profiler, say)."""
    log: list[str] = []
    items = _items(2, log)
    blocks: list[int] = []
    rewarms: list[tuple[float, float]] = []

    def block(n: int) -> list[float]:
        blocks.append(n)
        log.extend(["hooked"] * n)
        return [0.001] * n

    items[1].block = block
    items[1].rewarm = lambda seconds, per_call: rewarms.append((seconds, per_call))
    timing = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=8, rewarm_s=0.0)
    for it in items:
        warm(it, timing)
    log.clear()
    assert run_rounds(items, timing, Schedule(4, 3)) == 4
    per_call = items[1].warm.per_call_s
    assert blocks == [2] * 4 and len(rewarms) == 5 and rewarms[1:] == [(0.0, per_call)] * 4
    assert rewarms[0] == (2 * per_call, per_call)  # the warm-up round: its own re-warm, a block's seconds
    assert "e1" not in log and log.count("hooked") == 8 and log.count("e0") == 8 + 2  # + the warm-up round
    assert [r.calls for r in items[1].rounds] == [2] * 4 and items[1].samples == [0.001] * 8
