"""The on-CPU share (``oncpu.py``): what a block records, what the adjustment removes (a stopped or
throttled process) and what the gate refuses to hide (code that waits more)."""
from __future__ import annotations

import copy
import math
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from levit_bench import gate, oncpu
from levit_bench.canary import Canary, Reference
from levit_bench.entry_parts import Timing
from levit_bench.harness import TimingOptions, time_block
from levit_bench.history import build_series, HistoryFile
from levit_bench.results import Entry, RunRecord
from levit_bench.schedule import Schedule, Timed, run_rounds, warm
from levit_bench.spec import Identity
from levit_bench.verdict import FAIL, INCONCLUSIVE

from .test_gate import SYSTEM

TINY = TimingOptions(min_time_s=0.05, min_calls=4, max_calls=40, warmup_s=0.0, warmup_calls=1, rewarm_s=0.0)


def _busy(seconds: float = 0.002) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_busy_block_is_on_the_cpu_and_a_sleeping_one_is_not():
    """Each busy call spins until 2 ms of CPU time passed, so the block holds at least 10 ms of CPU
    and (one thread) not much more than its wall time, whatever else the machine does; a sleeping
    one holds almost none."""
    busy, sleeping = time_block(_busy, 5), time_block(lambda: time.sleep(0.004), 5)
    assert 0.010 <= busy.cpu_s <= 1.3 * sum(busy.samples)
    assert sleeping.cpu_s < 0.2 * sum(sleeping.samples)
    assert time_block(_busy, 2, cuda=False).cpu_s is not None


def test_rounds_record_the_share_for_one_thread_cpu_items_only():
    on = Timed("on", _busy, lambda: None, False, threads=1)
    off, two = Timed("off", _busy, lambda: None, False), Timed("two", _busy, lambda: None, False, threads=2)
    for it in (on, off, two):
        warm(it, TINY)
    run_rounds([on, off, two], TINY, Schedule(rounds=3, seed=0))
    assert all(0 < r.on_cpu < 1.3 for r in on.rounds) and all("on_cpu" in r.to_dict() for r in on.rounds)
    assert all(r.on_cpu is None and "on_cpu" not in r.to_dict() for r in off.rounds + two.rounds)


def test_a_stopped_process_loses_wall_time_but_not_cpu_time():
    """The mechanism itself, with a real SIGSTOP: a child busy for about a second, stopped for 0.4 s
    of it, reports an on-CPU share well below 1 (the share, not a speed, is asserted)."""
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from levit_bench.harness import time_block\n"
            "def busy():\n    end = time.process_time() + 0.01\n    while time.process_time() < end: pass\n"
            "print('ready', flush=True)\n"
            "b = time_block(busy, 100)\n"
            "print(b.cpu_s / sum(b.samples), flush=True)\n") % os.getcwd()
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        child.send_signal(signal.SIGSTOP)
        time.sleep(0.4)
        child.send_signal(signal.SIGCONT)
        share = float(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    assert 0.2 < share < 0.85


def _entry(rounds: list[np.ndarray], shares: list[float] | None, canary: list[float] | None = None,
           model: str = "levit_128s", batch: int = 1, canary_on_cpu: list[float] | None = None) -> Entry:
    dicts = [{"round": i, "position": 0, "start_s": float(i), "calls": len(r)} for i, r in enumerate(rounds)]
    for d, s in zip(dicts, shares or []):
        d["on_cpu"] = s
    for d, c in zip(dicts, canary or []):
        d["canary_s"] = c
    for d, c in zip(dicts, canary_on_cpu or []):
        d["canary_on_cpu"] = c
    e = Entry(Identity(model, "torch", "cpu", "fp32", 1, batch, 224))
    e.add_timing(Timing.measure(np.concatenate(rounds), dicts, batch))
    return e


def test_the_adjustment_takes_out_what_a_stopped_process_lost():
    rng = np.random.default_rng(0)
    work = [0.01 * rng.lognormal(0, 0.01, 5) for _ in range(8)]
    running = rng.uniform(0.5, 0.9, 8)  # the share of each block the process ran
    e = _entry([w / s for w, s in zip(work, running)], list(running))
    assert e.timing.adjustments() == ("on_cpu",) and e.timing.adjusted_by() == ("on_cpu",)
    adjusted = e.timing.adjusted_round_samples()
    assert np.concatenate(adjusted) == pytest.approx(np.concatenate(work))
    assert e.timing.adjusted_images_per_second == pytest.approx(1 / np.median(np.concatenate(work)))
    assert "on-CPU-adjusted" in e.timing.intervals["confidence"]["label"]
    # a runtime whose extra threads add CPU seconds is not made slower than it ran
    extra = _entry(work, [1.3] * 8)
    assert np.concatenate(extra.timing.adjusted_round_samples()) == pytest.approx(np.concatenate(work))
    assert oncpu.shares([{"on_cpu": 0.5}, {}]) is None and oncpu.shares(None) is None
    with pytest.raises(ValueError, match="on-CPU shares"):
        oncpu.on_cpu_rounds(work, [1.0])


def _run(stopped: float, seed: int, slower: dict[str, float] | None = None, waits: dict[str, float] | None = None,
         rounds: int = 8) -> RunRecord:
    """Four entries on a machine that stops the process ``stopped`` of the time (SD 0.15 between
    blocks); ``slower`` makes a model's code slower, ``waits`` makes it sleep that share of each call."""
    rng = np.random.default_rng(seed)
    entries = []
    for model, t in (("levit_128s", 0.004), ("levit_256", 0.008), ("efficientnet_b0", 0.010), ("efficientnet_b3", 0.02)):
        running = np.clip(rng.normal(1 - stopped, 0.05, rounds), 0.2, 1.0)
        idle = (waits or {}).get(model, 0.0)
        work = [t * (slower or {}).get(model, 1.0) * rng.lognormal(0, 0.01) * rng.lognormal(0, 0.01, 6)
                for _ in range(rounds)]
        wall = [w / (1 - idle) / s for w, s in zip(work, running)]
        entries.append(_entry(wall, list(running * (1 - idle)), model=model))
    return RunRecord(system=dict(SYSTEM), config={"argv": []}, results=entries, complete=True)


def test_the_gate_does_not_fail_a_run_stopped_more_and_fails_a_real_slowdown():
    base, stopped = _run(0.05, 0), _run(0.35, 1)
    raw = gate.compare_runs(_without_shares(base), _without_shares(stopped), fail_above_pct=5.0)
    # raw figures: a process stopped a third of the time looks 30% slower (never passed)
    assert all(r.change_pct < -25 and r.outcome in (FAIL, INCONCLUSIVE) for r in raw.rows)
    result = gate.compare_runs(base, stopped, fail_above_pct=5.0)
    assert not result.failed() and all(r.by == ("on_cpu",) and r.outcome == INCONCLUSIVE for r in result.rows)
    assert max(abs(r.change_pct) for r in result.rows) < 3.0
    slow = gate.compare_runs(base, _run(0.35, 2, slower={"levit_256": 1.25}), fail_above_pct=5.0)
    assert {r.base.model: r.outcome for r in slow.rows}["levit_256"] == FAIL
    assert sum(r.outcome == FAIL for r in slow.rows) == 1


def test_code_that_waits_more_is_not_hidden_by_the_adjustment():
    base, waiting = _run(0.2, 0), _run(0.2, 3, waits={"efficientnet_b0": 0.4})
    result = gate.compare_runs(base, waiting, fail_above_pct=5.0)
    rows = {r.base.model: r for r in result.rows}
    assert rows["efficientnet_b0"].by == () and rows["efficientnet_b0"].outcome == FAIL  # no canary here: raw
    assert rows["levit_128s"].by == ("on_cpu",)
    assert any("waits more" in w and "efficientnet_b0" in w for w in result.warnings)
    assert not oncpu.waits_more([0.7] * 5, [0.69] * 5) and oncpu.waits_more([0.9] * 5, [0.8] * 5)
    assert not oncpu.waits_more([0.9] * 5, [0.6] * 5, common=math.log(0.6 / 0.9))  # the machine's, not its own
    noisy = [0.62, 0.78, 0.70, 0.66, 0.74, 0.70]
    assert not oncpu.waits_more(noisy, [x * 0.94 for x in noisy[::-1]])  # 6% within this noise: not told
    assert oncpu.waits_more(noisy, [x * 0.75 for x in noisy[::-1]])


def _without_shares(record: RunRecord) -> RunRecord:
    """The same runs as a file from before the on-CPU share would hold them."""
    out = copy.deepcopy(record)
    for e in out.results:
        for r in e.timing.rounds:
            r.pop("on_cpu", None)
        e.timing.adjust(None, None, 1.0, None)
    return out


def test_a_series_with_an_older_file_is_adjusted_only_as_every_file_can_be():
    """A file from before the on-CPU share (its rounds carry the canary only) keeps the series on the
    canary alone; files that all carry both are adjusted by both; one with neither makes it raw."""
    rng = np.random.default_rng(0)

    def record(shares: bool, canary: bool) -> RunRecord:
        rounds = [0.01 * rng.lognormal(0, 0.01, 4) for _ in range(6)]
        e = _entry(rounds, [0.8] * 6 if shares else None, [1e-3] * 6 if canary else None)
        if canary:
            e.timing.adjust(Reference("blend", 1e-3, "test"), None, 1.0, 1e-3)
        return RunRecord(system=dict(SYSTEM), config={"argv": []}, results=[e], complete=True)

    at = datetime(2026, 12, 1, tzinfo=timezone.utc)

    def series(*records: RunRecord):
        return build_series([HistoryFile(r, at + timedelta(days=i), i) for i, r in enumerate(records)])[0]

    new = record(True, True)
    assert series(new, record(True, True)).by == ("on_cpu", "canary")
    assert series(record(False, True), new).by == ("canary",)
    assert not series(record(False, False), new).adjusted
    assert series(new).points[0].ips == pytest.approx(new.results[0].timing.adjusted_images_per_second)


def test_the_on_cpu_adjusted_efficiency_is_against_the_peak_as_measured():
    """The peak is on-CPU-scaled as well (``peak.py``), so an on-CPU-adjusted speed is a share of it
    unscaled; the canary's run factor scales only a canary-adjusted one."""
    work = [np.full(4, 0.02)] * 6
    e = _entry([w / 0.8 for w in work], [0.8] * 6)
    e.timing.canary = {"name": "blend", "reference_s": 0.0010, "run_s": 0.0012}
    e.add_explain(1_000_000_000, 1, 100.0)  # adjusted: 50 images/s, 50 of 100 GMAC/s
    assert e.timing.adjusted_images_per_second == pytest.approx(50.0)
    assert e.timing.canary["adjusted_efficiency"] == pytest.approx(0.5)
    assert e.explain.efficiency == pytest.approx(0.4)  # raw: 40 images/s


def test_the_rerun_interval_of_on_cpu_adjusted_figures_keeps_the_host_drift():
    """The share removes what the process lost while it did not run, not the host's drift between
    runs: the rerun interval of on-CPU-adjusted figures is as wide as the raw one's, wider than a
    canary-adjusted one's (``oncpu.RERUN_RESIDUAL``)."""
    rounds = [np.full(4, 0.01) * f for f in (1.0, 1.02, 0.99, 1.01, 1.0, 0.98)]
    on_cpu = _entry(rounds, [1.0] * 6).timing.intervals["rerun"]["images_per_second"]
    raw = _entry(rounds, None).timing.intervals["rerun"]["images_per_second"]
    assert on_cpu == pytest.approx(raw)
    canary = _entry(rounds, None, canary=[1e-3] * 6)
    canary.timing.adjust(Reference("blend", 1e-3, "test"), None, 1.0, 1e-3)
    lo, hi = canary.timing.intervals["rerun"]["images_per_second"]
    assert hi / lo < on_cpu[1] / on_cpu[0]
    assert build_series([HistoryFile(_run(0.3, 0), datetime(2026, 12, 1, tzinfo=timezone.utc))])[0].by == ("on_cpu",)
    both = _entry(rounds, [0.8] * 6, canary=[1e-3] * 6)
    both.timing.adjust(Reference("blend", 1e-3, "test"), None, 1.0, 1e-3)
    assert both.timing.adjusted_by() == ("on_cpu", "canary")
    assert "on-CPU- and canary-adjusted" in both.timing.intervals["rerun"]["label"]
    assert np.concatenate(both.timing.adjusted_round_samples()) == pytest.approx(np.concatenate(rounds) * 0.8)


# ---------------------------------------------------------------------------------------------
# the canary's own share: a stopped canary window is not counted twice


def test_the_canary_records_its_own_share_at_one_thread_only():
    """A canary that sleeps is off the CPU for most of its window; a busy one holds at least the CPU
    seconds it spins for, whatever else the machine does (a loaded machine only lowers its share).
    The share is kept beside the wall seconds (raw kept) for one-thread items, not with more threads."""
    busy = Canary("busy", lambda: _busy(0.001), calls=2)
    sleeping = Canary("sleeping", lambda: time.sleep(0.002), calls=2)
    window = busy.window()
    assert window.on_cpu * window.seconds * busy.calls >= 0.0019 and window.on_cpu < 1.3
    assert sleeping.window().on_cpu < 0.3
    for canary, low, high in ((busy, 0.0, 1.0), (sleeping, 0.0, 0.3)):
        one, two = Timed("one", _busy, lambda: None, False, threads=1), Timed("two", _busy, lambda: None, False, threads=2)
        for it in (one, two):
            warm(it, TINY)
        run_rounds([one, two], TINY, Schedule(rounds=3, seed=0), canary=canary)
        assert all(low < r.canary_on_cpu <= high and r.canary_s > 0 for r in one.rounds)
        assert all("canary_on_cpu" in r.to_dict() for r in one.rounds)
        assert all(r.canary_on_cpu is None and "canary_on_cpu" not in r.to_dict() for r in two.rounds)


def _stopped_run(stopped: float, seed: int, canary_share: bool = True, slower: float = 1.0,
                 host: float = 1.0) -> RunRecord:
    """Four entries on a machine that stops the process ``stopped`` of the time, blocks and canary
    windows alike, and runs it ``host`` times slower while running (the canary at 1 ms a call times
    that); ``slower``: the entries' code is that much slower; ``canary_share`` False: the file as it
    was before the canary's share."""
    rng = np.random.default_rng(seed)
    entries = []
    for model, t in (("levit_128s", 0.004), ("levit_256", 0.008), ("efficientnet_b0", 0.010), ("efficientnet_b3", 0.02)):
        running = np.clip(rng.normal(1 - stopped, 0.05, 8), 0.2, 1.0)
        canary_running = np.clip(rng.normal(1 - stopped, 0.05, 8), 0.2, 1.0)
        work = [t * slower * host * rng.lognormal(0, 0.01, 6) for _ in range(8)]
        e = _entry([w / s for w, s in zip(work, running)], list(running), list(host * 1e-3 / canary_running), model=model,
                   canary_on_cpu=list(canary_running) if canary_share else None)
        entries.append(e)
    return RunRecord(system=dict(SYSTEM), config={"argv": []}, results=entries, complete=True)


def test_a_canary_stopped_like_the_blocks_does_not_count_the_stops_twice():
    """Blocks and canary windows stopped alike: the blocks' share takes the stops out and the canary,
    taken while running, only the machine's speed.  The wall canary (files before its share) carries
    the stops too, so on top of the share it counted them twice: a run stopped 45% of the time came
    out about 1 / 0.55 faster than one stopped 5%."""
    base, stopped = _stopped_run(0.05, 0), _stopped_run(0.45, 1, host=1.15)
    result = gate.compare_runs(base, stopped, fail_above_pct=5.0)
    assert all(r.by == ("on_cpu", "canary") for r in result.rows)
    assert max(abs(r.change_pct) for r in result.rows) < 3.0 and not result.failed()
    no_canary = [copy.deepcopy(r) for r in (base, stopped)]
    for record in no_canary:
        for e in record.results:
            for r in e.timing.rounds:
                r.pop("canary_s"), r.pop("canary_on_cpu")
    on_cpu_only = gate.compare_runs(*no_canary, fail_above_pct=5.0)  # the host's 15% stays without the canary
    assert all(r.by == ("on_cpu",) and -16 < r.change_pct < -10 for r in on_cpu_only.rows)
    wall = gate.compare_runs(_stopped_run(0.05, 0, False), _stopped_run(0.45, 1, False, host=1.15), fail_above_pct=5.0)
    assert all(r.by == ("on_cpu", "canary") and r.change_pct > 40 for r in wall.rows)
    slow = gate.compare_runs(base, _stopped_run(0.45, 2, slower=1.4, host=1.15), fail_above_pct=5.0)
    assert all(-35 < r.change_pct < -20 for r in slow.rows)
    entry = stopped.results[0].timing
    assert oncpu.canary_while_running(entry.rounds)
    assert entry.canary_seconds() == pytest.approx([1.15e-3] * 8)
    assert oncpu.canary_seconds([{"canary_s": 2e-3}, {"canary_s": 3e-3, "canary_on_cpu": 0.5}]) == [2e-3, 3e-3]
    assert oncpu.canary_seconds(None) == [None] and not oncpu.canary_while_running(None)


def test_a_wall_canary_and_one_while_running_are_not_compared():
    """One file with the canary's share and one without: their canary figures are in other units, so
    the comparison keeps the share and leaves the canary out."""
    result = gate.compare_runs(_stopped_run(0.05, 0, False), _stopped_run(0.05, 1), fail_above_pct=5.0)
    assert all(r.by == ("on_cpu",) for r in result.rows)
