import time

from levit_bench.harness import TimingOptions, measure


def test_first_call_warmup_and_minimums():
    calls = []

    def call():
        calls.append(1)
        time.sleep(0.05 if len(calls) == 1 else 0.001)

    m = measure(call, TimingOptions(warmup_s=0.02, warmup_calls=3, min_time_s=0.05, min_calls=10))
    assert m.first_call_s >= 0.05
    assert m.warmup_calls >= 3
    assert len(m.samples_s) >= 10 and sum(m.samples_s) >= 0.04
    assert all(0.0009 < s < 0.05 for s in m.samples_s)  # the slow first call is not a sample
    assert len(calls) == 1 + m.warmup_calls + len(m.samples_s)
    assert m.peak_rss_bytes > 0


def test_min_calls_reached_even_when_calls_are_slow():
    m = measure(lambda: time.sleep(0.01), TimingOptions(warmup_s=0, warmup_calls=1, min_time_s=0.001, min_calls=5))
    assert len(m.samples_s) == 5


def test_synchronize_is_called_outside_timed_calls():
    log = []
    m = measure(lambda: log.append("call"), TimingOptions(warmup_s=0, warmup_calls=1, min_time_s=0, min_calls=3),
                synchronize=lambda: log.append("sync"))
    assert log.count("sync") == 3 and len(m.samples_s) == 3
