"""The timing path everything timed goes through: ``harness.warm_up`` once, then ``schedule.run_rounds``
(re-warm and ``harness.time_calls`` per round); durations that must be exact run on a fake clock
(``conftest.FakeClock``)."""
import math
import time

import pytest

from levit_bench.harness import TimingOptions
from levit_bench.schedule import Schedule, Timed, run_rounds, warm


def _timed(call, timing: TimingOptions, rounds: int, synchronize=lambda: None) -> Timed:
    item = Timed("x", call, synchronize, False)
    warm(item, timing)
    assert run_rounds([item], timing, Schedule(rounds, 0)) == rounds
    return item

FIRST_S, CALL_S = 2.0**-4, 2.0**-10  # 62.5 ms, then 0.98 ms: exact in binary


def test_first_call_warmup_and_minimums(fake_clock):
    calls = []

    def call():
        calls.append(1)
        fake_clock.advance(FIRST_S if len(calls) == 1 else CALL_S)

    timing = TimingOptions(warmup_s=0.02, warmup_calls=3, min_time_s=0.05, min_calls=10, rewarm_s=0.0)
    item = _timed(call, timing, rounds=2)
    assert item.warm.first_call_s >= 0.05
    assert item.warm.calls >= 3 and item.warm.rss_bytes > 0
    # blocks sized from the warm-up's per-call time to reach min_time_s and min_calls together
    per_round = max(math.ceil(0.05 / 2 / item.warm.per_call_s), 5)
    assert len(item.samples) == 2 * per_round >= 10
    assert all(0.0009 < s < 0.05 for s in item.samples)  # the slow first call is not a sample
    assert all(s == CALL_S for s in item.samples)  # each sample is exactly one call
    # no re-warm asked: nothing else ran but the untimed warm-up round's block
    assert len(calls) == 1 + item.warm.calls + item.calls_per_round + len(item.samples)
    assert [r.calls for r in item.rounds] == [item.calls_per_round] * 2


def test_min_calls_reached_even_when_calls_are_slow():
    timing = TimingOptions(warmup_s=0, warmup_calls=1, min_time_s=0.001, min_calls=5, rewarm_s=0.0)
    assert len(_timed(lambda: time.sleep(0.01), timing, rounds=1).samples) == 5
    assert [r.calls for r in _timed(lambda: time.sleep(0.01), timing, rounds=5).rounds] == [1] * 5


def test_rewarm_runs_untimed_calls_before_each_block():
    calls = []
    timing = TimingOptions(warmup_s=0, warmup_calls=1, min_time_s=0.0, min_calls=4, rewarm_s=0.02)
    item = _timed(lambda: (calls.append(1), time.sleep(0.001)), timing, rounds=2)
    assert len(calls) > 1 + item.warm.calls + len(item.samples) + 2  # about 0.02 s of calls per round
    assert len(item.samples) == 4


def test_synchronize_is_called_outside_timed_calls():
    log = []
    timing = TimingOptions(warmup_s=0, warmup_calls=1, min_time_s=0, min_calls=3, rewarm_s=0.0)
    item = _timed(lambda: log.append("call"), timing, rounds=1, synchronize=lambda: log.append("sync"))
    assert len(item.samples) == 3
    timed = log[-4:]  # the timed block: its calls, then one synchronize after the last clock read
    assert timed == ["call", "call", "call", "sync"]
    assert log.count("sync") == 4  # after the first call, the warm-up, the warm-up round's block, the block


def test_the_rewarm_is_at_most_a_twentieth_of_the_timed_seconds_unless_given():
    assert TimingOptions().rewarm_s == 0.1  # the default budget (2 s): the full re-warm
    assert TimingOptions(min_time_s=0.05).rewarm_s == pytest.approx(0.0025)  # not 20x the timed seconds
    assert TimingOptions(min_time_s=60.0).rewarm_s == 0.1
    assert TimingOptions(min_time_s=0.05, rewarm_s=0.3).rewarm_s == 0.3  # asked for: kept
