"""The machine-speed canary (issue 21): adjustment on simulated drift of known size, the process
floor and the rerun interval on simulated runs with known truth, the untimed warm-up round and the
canary's place in the rounds on the fake clock, and files without a canary loading raw only."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from levit_bench import canary as canaries
from levit_bench import stats
from levit_bench.cli import render
from levit_bench.harness import TimingOptions
from levit_bench.entry_parts import Timing
from levit_bench.results import Entry, load
from levit_bench.schedule import Schedule, Timed, run_rounds, warm
from levit_bench.spec import Identity

from .test_gate import make_record

FIXTURES = Path(__file__).parent / "fixtures"
REF = 0.001  # the canary's seconds per call at the reference speed


def _run(rng: np.random.Generator, base_s: float, run_factor: float, rounds: int = 10, calls: int = 8,
         drift: float = 0.10, canary_noise: float = 0.01, own: float = 1.0) -> tuple[list[np.ndarray], list[float]]:
    """One simulated run of one entry: each round's machine factor (lognormal, ``drift``) times the
    run's, seen by the entry's calls (3% call noise) and by the canary next to its block; ``own``
    slows the entry alone (the canary does not see it)."""
    factors = run_factor * rng.lognormal(0.0, drift, rounds)
    blocks = [base_s * own * f * rng.lognormal(0.0, 0.03, calls) for f in factors]
    canary_s = [REF * f * rng.lognormal(0.0, canary_noise) for f in factors]
    return blocks, canary_s


def _estimate(rounds) -> float:
    return float(np.median(np.concatenate(rounds)))


def test_a_machine_wide_slowdown_of_known_size_is_removed():
    rng = np.random.default_rng(0)
    a = _run(rng, 0.05, run_factor=1.0)
    b = _run(rng, 0.05, run_factor=1.25)  # the whole machine 25% slower in the second run
    raw = _estimate(b[0]) / _estimate(a[0])
    adjusted = _estimate(stats.adjusted_rounds(*b, REF)) / _estimate(stats.adjusted_rounds(*a, REF))
    assert raw > 1.15
    assert abs(math.log(adjusted)) < 0.02
    # ... and the drift between rounds too: adjusted round medians spread far less than raw ones
    assert stats.between_round_spread(stats.adjusted_rounds(*a, REF)) < stats.between_round_spread(a[0]) / 2


def test_a_slowdown_of_one_entry_is_kept():
    rng = np.random.default_rng(1)
    a = _run(rng, 0.05, run_factor=1.0)
    b = _run(rng, 0.05, run_factor=1.2, own=1.10)  # the machine 20% slower, the entry 10% slower on top
    change = _estimate(stats.adjusted_rounds(*b, REF)) / _estimate(stats.adjusted_rounds(*a, REF))
    assert 1.07 < change < 1.13


def test_the_canary_is_applied_as_far_as_it_tracks_the_entries():
    """A canary that follows the blocks' drift gets a slope near 1 (the drift between rounds is
    removed); one that is noise only gets a slope near 0, and then adjusting leaves the rounds'
    spread as it was instead of adding the canary's noise; either way the run's machine-wide factor,
    measured over all blocks, is removed whole."""
    rng = np.random.default_rng(5)
    tracking = [_run(rng, 0.05 * (k + 1), run_factor=1.3) for k in range(4)]
    beta = stats.canary_tracking(tracking)
    assert beta > 0.85
    blind = [(rounds, [REF * 1.3 * rng.lognormal(0.0, 0.15) for _ in rounds]) for rounds, _ in tracking]
    beta0 = stats.canary_tracking(blind)
    assert beta0 < 0.3
    rounds, canary_s = blind[0]
    whole = stats.adjusted_rounds(rounds, canary_s, REF)
    shrunk = stats.adjusted_rounds(rounds, canary_s, REF, beta0)
    raw_spread = stats.between_round_spread(rounds)
    assert stats.between_round_spread(whole) > raw_spread * 1.2  # applied whole, a blind canary adds noise
    assert stats.between_round_spread(shrunk) < raw_spread * 1.15
    # the run-level factor (1.3 against the reference) is removed in both
    assert abs(math.log(_estimate(shrunk) / (_estimate(rounds) / 1.3))) < 0.1
    assert stats.canary_tracking([]) == 0.0 and stats.canary_tracking([([np.ones(3)], [REF])]) == 0.0
    with pytest.raises(ValueError, match="beta"):
        stats.adjusted_rounds(rounds, canary_s, REF, 1.5)


def test_no_adjustment_without_a_canary_figure_for_every_round():
    rounds = [np.full(3, 0.01)] * 3
    assert stats.adjusted_rounds(rounds, [REF, None, REF], REF) is None
    assert stats.adjusted_rounds(rounds, [REF, REF], REF) is None
    with pytest.raises(ValueError):
        stats.adjusted_rounds(rounds, [REF] * 3, float("nan"))


def test_the_confidence_interval_has_the_process_floor():
    steady = [np.full(5, 0.02)] * 8  # no spread at all: only the floor is left
    lo, hi = stats.confidence_interval(steady)
    assert math.isclose(math.log(0.02 / lo), stats.PROCESS_FLOOR) and math.isclose(math.log(hi / 0.02), stats.PROCESS_FLOOR)
    rng = np.random.default_rng(2)
    noisy = [0.02 * rng.lognormal(0, 0.1, 5) for _ in range(8)]
    olo, ohi = stats.median_time_interval(noisy)
    clo, chi = stats.confidence_interval(noisy)
    assert clo < olo and chi > ohi  # wider than the rounds alone, and never narrower than the floor
    assert math.log(chi / clo) >= 2 * stats.PROCESS_FLOOR


def test_rerun_interval_holds_another_run_and_the_confidence_interval_its_own_truth():
    """Simulated runs with known truth: each run has its own process effect (SD floor/1.96) and a
    between-run residual the canary leaves (SD RERUN_RESIDUAL_ADJUSTED/1.96) on top of a run
    factor the canary removes.  The rerun interval must hold the next run's adjusted estimate about
    95% of the time; the confidence interval (this run's alone) less often, as it should."""
    rng = np.random.default_rng(3)
    truth, z = 0.05, 1.96
    rerun_hits = ci_hits = truth_hits = 0
    trials = 400

    def one_run() -> list[np.ndarray]:
        per_run = rng.lognormal(0, stats.PROCESS_FLOOR / z) * rng.lognormal(0, stats.RERUN_RESIDUAL_ADJUSTED / z)
        blocks, canary_s = _run(rng, truth * per_run, run_factor=rng.lognormal(0, 0.12), drift=0.08)
        return stats.adjusted_rounds(blocks, canary_s, REF)

    for _ in range(trials):
        a, b = one_run(), one_run()
        lo, hi = stats.rerun_interval(a, adjusted=True)
        rerun_hits += lo <= _estimate(b) <= hi
        clo, chi = stats.confidence_interval(a)
        ci_hits += clo <= _estimate(b) <= chi
        # the confidence interval's truth here is the run's own mean (truth × its per-run effects)
    assert rerun_hits / trials >= 0.90
    assert ci_hits / trials < rerun_hits / trials
    raw = [np.full(4, 0.05)] * 6
    lo, hi = stats.rerun_interval(raw, adjusted=False)
    alo, ahi = stats.rerun_interval(raw, adjusted=True)
    assert hi / lo > ahi / alo  # without a canary the run's machine factor stays: a much wider interval


def test_intervals_are_labelled_in_the_entry_and_survive_the_file(tmp_path):
    rng = np.random.default_rng(4)
    blocks, canary_s = _run(rng, 0.05, run_factor=1.3)
    rounds = [{"round": i, "position": 0, "start_s": float(i), "calls": len(b), "canary_s": c}
              for i, (b, c) in enumerate(zip(blocks, canary_s))]
    e = Entry(Identity("levit_128s", "torch", "cpu", "fp32", 1, 16, 224))
    e.add_timing(Timing.measure(np.concatenate(blocks), rounds, 16, canary=canaries.Reference("gemm", REF, "this run"),
                                canary_cost_s=0.05))
    e.add_explain(305_000_000, 7_000_000, 100.0)
    t = e.timing
    assert t.adjusted_images_per_second > 1.2 * t.images_per_second  # the slow machine adjusted back
    assert t.canary["cost_share"] == pytest.approx(0.05 / sum(t.samples_s))
    assert t.canary["adjusted_efficiency"] > e.explain.efficiency
    conf, rerun = t.intervals["confidence"], t.intervals["rerun"]
    assert conf["of"] == rerun["of"] == "adjusted_images_per_second"
    assert "confidence" in conf["label"] and "rerun" in rerun["label"] and "canary-adjusted" in conf["label"]
    assert rerun["images_per_second"][0] < conf["images_per_second"][0] < t.adjusted_images_per_second \
        < conf["images_per_second"][1] < rerun["images_per_second"][1]
    path = tmp_path / "r.json"
    make_record([e]).save(path)
    again = load(path).results[0]
    assert again.timing.intervals == t.intervals and again.timing.adjusted_images_per_second == t.adjusted_images_per_second
    assert again.timing.canary_seconds() == canary_s
    assert re.search(r"adj \d", _text(render.results_table([again])))


def _text(table) -> str:
    con = render.console()
    with con.capture() as cap:
        con.print(table)
    return cap.get()


@pytest.mark.parametrize("name", ["results-v1-2026-11-27.json", "results-v2-2026-12-01.json",
                                  "results-v3-2026-12-02.json"])
def test_files_without_canary_load_and_show_raw_only(name):
    record = load(FIXTURES / name)
    ok = [e for e in record.results if e.ok]
    assert ok and all(e.timing.adjusted_images_per_second is None and e.timing.canary is None for e in ok)
    assert all(e.timing.adjusted_round_samples() is None and e.timing.adjusted_round_samples(REF) is None for e in ok)
    text = _text(render.results_table(record.results))
    assert not re.search(r"adj \d", text)
    # a new run's entry without a canary (a CUDA run) gets the raw, wider intervals, labelled so
    e = Entry(ok[0].identity)
    first = ok[0].timing
    e.add_timing(Timing.measure(first.samples_s, [{"round": 0, "position": 0, "start_s": 0.0,
                                                   "calls": len(first.samples_s)}], first.images_per_call))
    assert e.timing.adjusted_images_per_second is None and e.timing.intervals["confidence"]["of"] == "images_per_second"
    assert "raw" in e.timing.intervals["rerun"]["label"]


# ---------------------------------------------------------------------------------------------
# the rounds, on the fake clock


def test_warmup_round_is_untimed_and_the_canary_brackets_every_block(fake_clock):
    """A call that is slow for its first calls after warm-up (cold caches of a freshly visited
    entry): the untimed warm-up round absorbs them, so round 0 is not slow.  The canary is timed
    before each re-warm and after each block; each round records their geometric mean."""
    timing = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=8, rewarm_s=0.0)
    counts = {"a": 0, "b": 0}

    def make(label: str):
        def call() -> None:
            counts[label] += 1
            fake_clock.advance(2.0**-6 if counts[label] <= 3 else 2.0**-8)  # 3 cold calls, then steady
        return call

    items = [Timed(k, make(k), lambda: None, False) for k in counts]
    for it in items:
        warm(it, timing, first_call_s=0.5)  # the parity check made the first call: one cold call of warm-up left
    canary_calls = []

    def canary_call() -> None:
        canary_calls.append(fake_clock.now)
        fake_clock.advance(2.0**-10 * (1 + len(canary_calls) % 2))  # before and after differ: 1 and 2 units

    probe = canaries.Canary("fake", canary_call, calls=1)
    assert run_rounds(items, timing, Schedule(4, 0), canary=probe) == 4
    for it in items:
        assert it.samples == [2.0**-8] * 8  # nothing cold was recorded
        assert [r.round for r in it.rounds] == [0, 1, 2, 3]
        assert all(r.canary_s == pytest.approx(math.sqrt(2.0**-10 * 2.0**-9)) for r in it.rounds)
        assert 4 * 3 * 2.0**-10 < it.canary_cost_s <= 4 * 3 * 2.0**-10 + 2.0**-9  # its blocks' and its warm-up's
    assert len(canary_calls) == 2 + 2 * 4 * 2  # one per entry in the warm-up round, two per block
    assert probe.cost_s == pytest.approx(sum(it.canary_cost_s for it in items)) == pytest.approx(9 * 3 * 2.0**-10)
    counts.update(a=0, b=0)
    cold = [Timed(k, make(k), lambda: None, False) for k in counts]
    for it in cold:
        warm(it, timing, first_call_s=0.5)
    run_rounds(cold, timing, Schedule(4, 0, warmup_round=False))
    assert max(cold[0].round_samples()[0]) == 2.0**-6  # without it, round 0 times the cold calls


def test_a_renewed_canary_moves_its_buffers_before_every_window_and_computes_the_same():
    import torch

    for name in canaries.CANARIES:
        kept, renewed = canaries.build(name, target_s=0.001, renew=False), canaries.build(name, target_s=0.001)
        assert isinstance(renewed.call, canaries.Workload) and renewed.call.tensors
        before = [t.data_ptr() for t in renewed.call.tensors]
        values = [t.clone() for t in renewed.call.tensors]
        kept_before = [t.data_ptr() for t in kept.call.tensors]
        renewed.measure()
        kept.measure()
        assert all(a != b for a, b in zip(before, (t.data_ptr() for t in renewed.call.tensors)))
        assert [t.data_ptr() for t in kept.call.tensors] == kept_before
        assert all(torch.equal(v, t) for v, t in zip(values, renewed.call.tensors))  # same inputs, weights, output
        with torch.inference_mode():  # as a run measures it (bench times its rounds in inference mode)
            before = [t.data_ptr() for t in renewed.call.tensors]
            renewed.measure()
        assert all(a != b for a, b in zip(before, (t.data_ptr() for t in renewed.call.tensors)))


def test_every_candidate_builds_and_measures(tmp_path):
    for name in canaries.CANARIES:
        c = canaries.build(name, target_s=0.001)
        assert c.calls >= 1 and 0 < c.measure() < 1.0 and c.cost_s > 0
    with pytest.raises(KeyError, match="gemm"):
        canaries.build("nope")
    assert canaries.DEFAULT_CANARY in canaries.CANARIES
    assert canaries.block_index(1.0, 4.0) == 2.0


def test_the_reference_is_cached_per_machine_and_a_damaged_cache_is_replaced(tmp_path):
    first = canaries.reference("gemm", "cpu", 1, "m1", tmp_path, 0.002)
    assert first.reference_s == 0.002 and "cached as" in first.source
    again = canaries.reference("gemm", "cpu", 1, "m1", tmp_path, 0.009)  # a busy machine's run: kept
    assert again.reference_s == 0.002 and again.source.startswith("cache ")
    assert canaries.reference("gemm", "cpu", 1, "m1", tmp_path, 0.00197).reference_s == 0.002  # within 3%
    other = canaries.reference("gemm", "cpu", 2, "m1", tmp_path, 0.003)  # other threads: its own reference
    assert other.reference_s == 0.003
    path = next((tmp_path / "canary").glob("m1-cpu-1t-gemm-*.json"))
    path.write_text("{not json")
    assert canaries.reference("gemm", "cpu", 1, "m1", tmp_path, 0.004).reference_s == 0.004
    assert json.loads(path.read_text())["reference_s"] == 0.004
    assert canaries.reference("gemm", "cpu", 1, "m1", None, 0.005).source == "this run"


def test_a_reference_measured_on_a_busy_machine_gives_way_to_a_faster_run(tmp_path):
    busy = canaries.reference("blend", "cpu", 2, "m1", tmp_path, 0.0077)  # seeded at load average 5
    assert busy.reference_s == 0.0077
    quiet = canaries.reference("blend", "cpu", 2, "m1", tmp_path, 0.0028)
    assert quiet.reference_s == 0.0028 and "faster than the cached 7.7 ms it replaced" in quiet.source
    assert canaries.reference("blend", "cpu", 2, "m1", tmp_path, 0.0035).reference_s == 0.0028  # and stays
