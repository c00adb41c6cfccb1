"""Latency under load against queueing theory (issue 22): a service of known, deterministic time (a
spin on the clock, not a sleep) at Poisson arrivals reproduces the M/D/1 queue's mean wait and p99;
a closed loop at the same load under-reports the tail (the coordinated-omission trap), so the open
loop is open; a rate beyond capacity ends its level with the reason; dynamic batching and
concurrency raise capacity; and ``levit-bench load`` end to end on a spin backend registered as the
CLI tests register theirs: its SLO search brackets the peak rate theory gives, its file loads,
compares and is reported.  Bad input: one line and exit 2."""
from __future__ import annotations

import copy
import json
import time

import jsonschema
import numpy as np
import pytest

from levit_bench import results
from levit_bench.backends import BACKENDS
from levit_bench.backends.base import Backend, Runner
from levit_bench.backends.torch_eager import TorchBackend
from levit_bench.cli import main
from levit_bench.load import meets
from levit_bench.loadgen import Level, run_level

from .test_load_logic import lindley_waits, md1_latency_quantile, peak_under

S = 0.004  # the service time, seconds
#: what the generator itself may add to a request's wait on average (the dispatcher's and a worker's
#: wake-ups), measured against the exact FIFO waits of the same arrivals and service times: about
#: 0.1 ms on an idle machine, 1–2 ms on the 2-core VM shared with other test runs (load average 2+)
GENERATOR_OVERHEAD_S = 0.003
DURATION_S = 12.0
SPIN_TAIL_S = 0.001


def spin(seconds: float):
    """A call that takes ``seconds`` on the clock: it sleeps (freeing the core and the GIL, as a
    runtime's call does) until ``SPIN_TAIL_S`` before the end, then spins to the end, so the end is
    the clock's, not a sleep's wake-up (which is late by the scheduler's whim)."""
    clock = time.perf_counter

    def call() -> None:
        end = clock() + seconds
        if seconds > SPIN_TAIL_S:
            time.sleep(seconds - SPIN_TAIL_S)
        while clock() < end:
            pass

    return call


def sampling_band(rho: float, n: int, reps: int = 150) -> tuple[float, float]:
    """The standard deviations of the sample mean wait and of the sample p99 latency of ``n``
    consecutive M/D/1 customers at load ``rho`` (simulated, Lindley's recursion, other seeds)."""
    means, p99s = [], []
    for seed in range(1000, 1000 + reps):
        arrivals = np.random.default_rng(seed).exponential(S / rho, n + 200).cumsum()
        w = lindley_waits(arrivals, S)[200:]  # started in steady state, as the level's warm-up does
        means.append(w.mean())
        p99s.append(np.quantile(w + S, 0.99))
    return float(np.std(means)), float(np.std(p99s))


def wakeup_lateness(n: int = 200) -> float:
    """The machine's mean lateness of a 1 ms sleep's wake-up, now (seconds): what a loaded runner adds
    to each of the generator's two wake-ups per request (dispatcher and worker), whoever's code runs."""
    late = []
    for _ in range(n):
        t = time.perf_counter()
        time.sleep(0.001)
        late.append(time.perf_counter() - t - 0.001)
    return float(np.mean(late))


@pytest.fixture(scope="module")
def open_loop():
    out = {}
    for rho in (0.5, 0.8):
        before = wakeup_lateness()
        r = run_level([spin(S)], Level(rate=rho / S, duration_s=DURATION_S, warmup_s=1.0, seed=11))
        r.machine_lateness_s = (before + wakeup_lateness()) / 2
        out[rho] = r
    return out


def measured_load(r) -> float:
    return r.level.rate * float((r.end_s - r.start_s).mean())


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_the_open_loop_reproduces_the_md1_queue(open_loop, rho):
    r = open_loop[rho]
    assert r.unsustainable is None and r.unserved == 0
    service = r.end_s - r.start_s
    assert np.median(service) == pytest.approx(S, rel=0.02)  # the service time asked for
    # mechanics: every wait is at least an ideal FIFO server's for the same arrivals and service
    # times (the generator never hides queueing), and exceeds it by the generator's own delay only
    exact = lindley_waits(r.scheduled_s, service, float(r.wait_s[0]))
    overhead = r.wait_s - exact
    assert float(overhead.min()) > -1e-6
    # the generator's own bound, widened by what the machine's scheduler adds to its two wake-ups per
    # request as measured around the level (a full suite beside other jobs: 4.3 ms seen at load 5).
    # Where the runner stretched the calls themselves (preempted: M/D/1's constant S did not hold), it
    # delays the threads' wake-ups by as much, and no probe beside the level sees that (a sleeping
    # child saw 0.10 ms while four CPU hogs made the generator 5.2 ms late, the calls' p99 2.1 S):
    # there each of the two wake-ups may be late by twice the calls' p99 stretch, and the floor above stands
    allowed = GENERATOR_OVERHEAD_S + 2 * r.machine_lateness_s
    if not deterministic_service(r):
        allowed += 4 * float(np.quantile(service, 0.99) - S)
    assert float(overhead.mean()) < allowed, (f"the generator adds {overhead.mean() * 1e3:.3f} ms (allowed "
                                              f"{allowed * 1e3:.2f} ms: wake-ups late by {r.machine_lateness_s * 1e3:.2f} ms)")
    # theory: Pollaczek–Khinchine with the measured service moments (ρS/(2(1-ρ)) for a constant S),
    # within four standard deviations of the sample mean of that many M/D/1 customers
    lam = r.level.rate
    s1, s2 = float(service.mean()), float((service ** 2).mean())
    theory_wait = lam * s2 / (2 * (1 - lam * s1))
    sd_mean, _sd_p99 = sampling_band(lam * s1, r.scheduled_s.size)
    queued = float(r.wait_s.mean() - overhead.mean())
    assert abs(queued - theory_wait) <= 4 * sd_mean, (queued, theory_wait, sd_mean)
    p99 = float(np.quantile(r.latency_s, 0.99))
    if deterministic_service(r):
        assert p99 == pytest.approx(md1_latency_quantile(0.99, lam * s1, s1), rel=0.4)
    else:  # a loaded runner stretched some calls: M/D/1's tail is not what ran; the exact FIFO tail is
        exact_p99 = float(np.quantile(exact + service, 0.99))
        assert exact_p99 <= p99 < exact_p99 + 2 * allowed + 0.25 * exact_p99, (p99, exact_p99)


def deterministic_service(r) -> bool:
    """Whether the calls took S as asked, tail included (M/D/1's assumption): on a runner shared with
    other jobs a preempted call takes several times S, and those land in the latency's tail."""
    return float(np.quantile(r.end_s - r.start_s, 0.99)) <= 1.5 * S


@pytest.mark.slow
def test_p99_grows_with_load_as_theory_says(open_loop):
    measured = {rho: float(np.quantile(r.latency_s, 0.99)) for rho, r in open_loop.items()}
    deterministic = all(deterministic_service(r) for r in open_loop.values())
    if deterministic:
        theory = {rho: md1_latency_quantile(0.99, measured_load(r), S) for rho, r in open_loop.items()}
    else:  # a loaded runner stretched some calls: the theory is the exact FIFO tail of what ran
        theory = {rho: float(np.quantile(lindley_waits(r.scheduled_s, r.end_s - r.start_s, float(r.wait_s[0]))
                                         + (r.end_s - r.start_s), 0.99)) for rho, r in open_loop.items()}
    expected = theory[0.8] / theory[0.5]
    # each p99 rests on the top ~15 of some 1,500 latencies (about ±25% from sampling alone) and a shared
    # runner's preemptions land in that tail: the growth must be within a factor 1.6 of theory's
    # (seen: 3.6 against theory's 2.6 in one full run on the 2-core VM, which failed the earlier ±35%)
    growth = measured[0.8] / measured[0.5]
    assert expected / 1.6 < growth < expected * 1.6, (growth, expected)
    if deterministic:  # M/D/1's own tail more than doubles from ρ = 0.5 to 0.8, and so must the measured one
        assert expected > 2.0 and growth > 1.5, (growth, expected)
    # (where preemptions stretched the calls, they dominate both tails: the FIFO tail of what ran grew
    # only 1.31× in a full suite beside its second worker, and the measured tail must follow that instead)


@pytest.mark.slow
def test_a_closed_loop_at_the_same_load_hides_the_tail(open_loop):
    """The coordinated-omission trap: a client that waits for each answer, sends at the next
    scheduled time (or at once when late) and times from the send sees almost no queue."""
    trap = run_level([spin(S)], Level(rate=0.8 / S, duration_s=6.0, warmup_s=1.0, seed=11, closed_at_rate=True))
    closed_p99 = float(np.quantile(trap.latency_s, 0.99))
    service_p99 = float(np.quantile(trap.end_s - trap.start_s, 0.99))
    open_p99 = float(np.quantile(open_loop[0.8].latency_s, 0.99))
    assert closed_p99 <= service_p99 * 1.01  # it reports the service time, whatever queued
    assert open_p99 > 3 * S and open_p99 > 2.5 * closed_p99  # the open loop shows the queue theory says is there


@pytest.mark.slow
def test_a_rate_beyond_capacity_ends_its_level_with_the_reason():
    start = time.perf_counter()
    r = run_level([spin(S)], Level(rate=2 / S, duration_s=30.0, warmup_s=0.5, backlog_s=0.5, seed=3))
    assert time.perf_counter() - start < 10.0  # not the 30 s asked: it ended early
    assert r.unsustainable and r.unsustainable.startswith("unsustainable") and "without bound" in r.unsustainable
    assert r.unserved > 0


@pytest.mark.slow
def test_dynamic_batching_serves_a_rate_one_request_per_call_cannot():
    level = dict(rate=1.5 / S, duration_s=3.0, warmup_s=0.5, seed=4, backlog_s=0.5)
    single = run_level([spin(S)], Level(**level))
    batched = run_level([spin(S)], Level(**level, max_batch=4, max_delay_s=0.002))
    assert single.unsustainable
    assert batched.unsustainable is None and batched.unserved == 0 and batched.batch.mean() > 1.2


@pytest.mark.slow
def test_two_workers_serve_what_one_cannot():
    def wait(seconds: float):  # a service that frees the GIL, as a runtime's call does
        return lambda: time.sleep(seconds)

    level = dict(rate=150.0, duration_s=3.0, warmup_s=0.5, seed=5, backlog_s=0.5)
    one = run_level([wait(0.010)], Level(**level))
    two = run_level([wait(0.010)] * 2, Level(**level, concurrency=2))
    assert one.unsustainable and two.unsustainable is None and two.unserved == 0


# ---------------------------------------------------------------------------------------------
# the command, on a spin backend


class _SpinRunner(Runner):
    """Parity through the real torch runner; the bound call a spin of S."""

    def __init__(self, inner: Runner):
        self.inner = inner

    def bind(self, x):
        return spin(S)

    def __call__(self, x):
        return self.inner(x)


class _Spin(Backend):
    name = "spin-4ms"

    def prepare(self, model, model_id, example, settings, cache):
        prepared = TorchBackend().prepare(model, model_id, example, settings, cache)
        prepared.runner = _SpinRunner(prepared.runner)
        return prepared


@pytest.fixture
def spin_backend(monkeypatch):
    monkeypatch.setitem(BACKENDS, "spin-4ms", _Spin())


COMMON = ["load", "--model", "levit_128s", "--backend", "spin-4ms", "--threads", "1", "--warmup", "0.2",
          "--level-warmup", "0.3"]


@pytest.mark.slow
def test_server_sweep_and_slo_search_bracket_the_theoretical_peak(tmp_path, capsys, spin_backend, cache_args):
    out = tmp_path / "load.json"
    slo = 20.0
    assert main([*COMMON, "--scenario", "server", "--sweep", "rate", "--slo-p99-ms", str(slo), "--duration", "2",
                 "--out", str(out), *cache_args]) == 0
    printed = capsys.readouterr().out
    assert "peak rate under the SLO" in printed and "p99 ms" in printed
    data = json.loads(out.read_text())
    jsonschema.validate(data, results.schema())
    assert data["schema_version"] == results.SCHEMA_VERSION == 7 and data["results"] == []
    (record,) = results.load(out).load
    assert record.ok and record.scenario == "server" and record.sweep == "rate"
    assert len(record.levels) > 6  # the automatic sweep and the bisection's levels
    assert not meets(record.levels[5], slo)  # 1.1× the warm-up's capacity
    met, failed = record.search["met"]["rate"], record.search["failed"]["rate"]
    # never above theory's peak for the bare service (a closed loop would claim more: it hides the
    # queue), and not below theory's peak once the generator's own delay on this VM (at most
    # GENERATOR_OVERHEAD_S on average, twice that at p99) is taken from the SLO
    truth, floor = peak_under(slo), peak_under(slo - 2 * GENERATOR_OVERHEAD_S * 1000)
    assert met <= truth * 1.1 and failed >= floor / 1.1, (met, failed, truth, floor)
    assert record.peak_rate == met and record.concurrency["workers"] == 1


@pytest.mark.slow
def test_single_stream_and_offline(tmp_path, capsys, spin_backend, cache_args):
    out = tmp_path / "ss.json"
    assert main([*COMMON, "--scenario", "single-stream", "--duration", "1", "--out", str(out), *cache_args]) == 0
    printed = capsys.readouterr().out
    (r,) = results.load(out).load
    p90, p99 = r.early_stopping
    assert p90["enough"] and p90["bound_ms"] >= S * 1000 * 0.99  # ~230 requests: enough for p90 at 99%
    assert not p99["enough"] and p99["min_requests"] == 459 and "not enough requests" in printed
    assert r.levels[0]["latency"]["p50"]["ms"] == pytest.approx(S * 1000, rel=0.1)
    off = tmp_path / "off.json"
    assert main([*COMMON, "--scenario", "offline", "--batch-size", "1,2", "--duration", "1", "--out", str(off),
                 *cache_args]) == 0
    loads = results.load(off).load
    assert [x.batch_size for x in loads] == [1, 2] and all(x.best_level == 0 for x in loads)
    # a spin of S per call whatever the batch: batch 2 doubles images/s
    ips = [x.levels[0]["images_per_second"] for x in loads]
    assert ips[1] / ips[0] == pytest.approx(2.0, rel=0.15)
    assert "offline best" in capsys.readouterr().out


@pytest.mark.slow
def test_an_slo_no_level_meets_is_stated_and_exits_0(tmp_path, capsys, spin_backend, cache_args):
    out = tmp_path / "slo.json"
    assert main([*COMMON, "--scenario", "server", "--rate", "50", "--slo-p99-ms", "1", "--duration", "1",
                 "--out", str(out), *cache_args]) == 0
    assert "no level met p99 ≤ 1 ms; the best level was 50/s" in capsys.readouterr().out
    (r,) = results.load(out).load
    assert r.peak_rate is None and r.search["met"] is None


@pytest.mark.slow
def test_compare_gates_p99_and_report_plots_the_curve(tmp_path, capsys, spin_backend, cache_args):
    base = tmp_path / "base.json"
    # 5 s per level: the 100/s level serves more than the 368 requests a p99 bound needs at 95% even
    # where a loaded runner makes 200/s unsustainable (with 2 s, such a run had no bound: inconclusive)
    assert main([*COMMON, "--scenario", "server", "--rate", "100,200", "--duration", "5", "--out", str(base),
                 *cache_args]) == 0
    assert main(["compare", str(base), str(base), "--fail-above", "10"]) == 0
    data = json.loads(base.read_text())
    slower = copy.deepcopy(data)
    for lv in slower["load"][0]["levels"]:  # the same levels, every latency tripled
        for p in lv["latency"].values():
            p["ms"] *= 3
            p["ci95_ms"] = [None if v is None else v * 3 for v in p["ci95_ms"]]
    new = tmp_path / "new.json"
    new.write_text(json.dumps(slower))
    capsys.readouterr()
    assert main(["compare", str(base), str(new), "--fail-above", "10", "--markdown"]) == 1
    printed = capsys.readouterr().out
    assert "p99 ms at 100/s" in printed and "FAIL" in printed and "+200.0%" in printed
    assert main(["report", str(base), "-o", str(tmp_path / "R.md")]) == 0
    md = (tmp_path / "R.md").read_text()
    assert "Latency under load" in md and list(tmp_path.glob("R-load-*.png"))


@pytest.mark.parametrize("argv, message", [
    (["--scenario", "bogus"], "invalid choice"),
    (["--scenario", "server", "--rate", "0"], "--rate must be a number > 0"),
    (["--scenario", "server", "--rate", "-3"], "--rate must be a number > 0"),
    (["--rate", "10"], "--rate is a server setting"),
    (["--scenario", "server"], "needs --rate"),
    (["--scenario", "server", "--sweep", "concurrency", "--rate", "5"], "closed loop"),
    (["--scenario", "single-stream", "--batch-size", "4"], "--batch-size 1 only"),
    (["--scenario", "server", "--rate", "5", "--max-delay-ms", "3"], "--max-batch 2 or more"),
    (["--scenario", "server", "--rate", "5", "--concurrency", "1,2"], "takes one value"),
    (["--scenario", "server", "--slo-p99-ms", "0"], "--slo-p99-ms must be a number > 0"),
    (["--scenario", "server", "--rate", "5", "--max-batch", "4", "--batch-size", "2"], "contradicts"),
])
def test_bad_load_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    assert main(["load", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.json"))


def test_the_report_plots_p99_against_rate_and_tables_the_peak():
    from pathlib import Path

    from levit_bench import report

    from .test_load_logic import _server_record

    system = json.loads(sorted((Path(__file__).parent / "fixtures").glob("results-v*.json"))[-1].read_text())["system"]
    for lv in (r := _server_record()).levels:
        lv["achieved_rate"] = lv["rate"]
    record = results.RunRecord(system=system, config={"argv": ["load", "--scenario", "server"]}, complete=True,
                               load=[r])
    built = report.build_report([record])
    assert "## Latency under load" in built.markdown and "peak rate/s" in built.markdown
    assert "| levit_128s | onnxruntime |" in built.markdown and "140/s" in built.markdown
    (name, png), = built.figures.items()
    assert name.startswith("load-") and png.startswith(b"\x89PNG") and f"]({name})" in built.markdown
