"""Worker processes: the protocol, fault isolation (a crash or a hang fails its own entries only),
``run --processes K`` pooling rounds of K processes, and ``levit-bench ab``."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from levit_bench import results
from levit_bench.backends import BACKENDS
from levit_bench.backends.torch_eager import TorchBackend
from levit_bench.cli import main
from levit_bench.cli.ab import FAIL, INCONCLUSIVE, PASS, verdict
from levit_bench.entry_parts import Timing
from levit_bench.errors import UserError
from levit_bench.executions import Side, execute_ab, execute_in_workers
from levit_bench.harness import TimingOptions, Warmup
from levit_bench.results import Entry
from levit_bench.schedule import RoundRecord, Schedule, Timed, pool, run_rounds
from levit_bench.selection import Selection
from levit_bench.spec import Identity, ModelId, Settings, Status
from levit_bench.worker import PLUGIN_ENV, PROTOCOL
from levit_bench.workers import Timeouts, Worker, remote_item, warm_remote

PLUGIN = str(Path(__file__).parent / "worker_plugin.py")
FAST = ["--min-time", "0.05", "--warmup", "0", "--min-calls", "3", "--threads", "1"]
TINY = TimingOptions(warmup_s=0.0, warmup_calls=3, min_time_s=0.05, min_calls=3, rewarm_s=0.0)


def _selection(backends: tuple[str, ...], cache: Path, batch_sizes: tuple[int, ...] = (1,)) -> Selection:
    return Selection(("levit_128s",), backends, batch_sizes, ("fp32",), Settings("cpu", "fp32", 1), cache_dir=str(cache))


@pytest.fixture
def plugin(monkeypatch):
    """The misbehaving backends, in the workers (through the plugin hook) and here (the flags check names)."""
    monkeypatch.setenv(PLUGIN_ENV, PLUGIN)
    for name in ("crash-in-rounds", "exit-in-rounds", "hang-in-rounds"):
        monkeypatch.setitem(BACKENDS, name, TorchBackend())


# ---------------------------------------------------------------------------------------------
# fast: the schedule's parts the workers use, and the verdict on simulated rounds


def _fake(label: str, together=None, process=None) -> Timed:
    t = Timed(label, lambda: None, lambda: None, False, together=together, process=process)
    t.warm = Warmup(0.0, 1, 0.001, 0)
    t.block, t.rewarm = (lambda n: [0.001] * n), (lambda s, pc: 0)
    return t


def test_items_that_go_together_are_adjacent_in_every_round(fake_clock):
    items = [_fake(f"{k}{side}", together=k) for k in range(4) for side in "ab"] + [_fake("alone")]
    timing = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=12, rewarm_s=0.0)
    assert run_rounds(items, timing, Schedule(12, 5)) == 12
    firsts = set()
    for r in range(12):
        at = {it.label: next(x.position for x in it.rounds if x.round == r) for it in items}
        for k in range(4):
            assert abs(at[f"{k}a"] - at[f"{k}b"]) == 1
            firsts.add(at[f"{k}a"] < at[f"{k}b"])
    assert firsts == {True, False}  # either side may go first


def test_pool_keeps_each_process_block_a_round_of_its_own(fake_clock):
    items = [_fake("p0", process=0), _fake("p1", process=1)]
    items[1].block = lambda n: [0.002] * n
    timing = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=6, rewarm_s=0.0)
    run_rounds(items, timing, Schedule(3, 1))
    samples, rounds = pool(items)
    assert [(r.round, r.process) for r in rounds] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert samples == [0.001, 0.001, 0.002, 0.002] * 3 and all(r.to_dict()["process"] in (0, 1) for r in rounds)


def _entry(round_medians: np.ndarray, side: str) -> Entry:
    e = Entry(Identity("levit_128s", "torch", "cpu", "fp32", 1, 1, 224), side=side)
    e.add_timing(Timing.measure([float(x) for x in round_medians],
                                [{"round": i, "position": 0, "start_s": float(i), "calls": 1}
                                 for i in range(len(round_medians))], 1))
    return e


@pytest.mark.parametrize("slowdown, expected", [(0.0, PASS), (0.20, FAIL)])
def test_the_ab_verdict_on_simulated_paired_rounds(slowdown, expected):
    """Known truth: a machine drift common to both sides (it cancels in the pairs) and 1% noise."""
    rng = np.random.default_rng(3)
    drift = np.exp(rng.normal(0, 0.15, 10))
    base = 0.01 * drift * np.exp(rng.normal(0, 0.01, 10))
    new = 0.01 * (1 + slowdown) * drift * np.exp(rng.normal(0, 0.01, 10))
    v = verdict(_entry(base, "base"), _entry(new, "new"), 5.0)
    assert v["outcome"] == expected and v["rounds"] == 10
    assert v["bounds"][0] < 1 / (1 + slowdown) < v["bounds"][1]


def test_the_ab_verdict_is_inconclusive_when_the_noise_hides_the_threshold():
    rng = np.random.default_rng(4)
    base = 0.01 * np.exp(rng.normal(0, 0.10, 4))
    new = 0.01 * np.exp(rng.normal(0, 0.10, 4))
    assert verdict(_entry(base, "base"), _entry(new, "new"), 5.0)["outcome"] == INCONCLUSIVE


# ---------------------------------------------------------------------------------------------
# slow: real workers (a fresh interpreter importing torch each: seconds)


@pytest.mark.slow
def test_a_runs_canary_adjustment_comes_from_every_process_block():
    from levit_bench.canary import Reference
    from levit_bench.executions import canary_adjustment

    items = []
    for k, canary_s in enumerate(([1.0, 2.0, 1.0], [2.0, 4.0, 2.0])):  # two processes, the canary drifting
        it = _fake("e", process=k)
        it.rounds = [RoundRecord(r, 0, 0.0, 1, canary_s=c, process=k) for r, c in enumerate(canary_s)]
        it.samples = [0.01 * c for c in canary_s]  # each block slowed exactly as its canary
        items.append(it)
    asked = []
    adjustment = canary_adjustment(items, lambda run_s: asked.append(run_s) or Reference("blend", 1.5, "test"))
    assert asked == [2.0] and adjustment.run_s == 2.0  # the median canary of all six blocks
    assert adjustment.beta == pytest.approx(1.0)  # every block tracks its canary
    assert adjustment.reference.reference_s == 1.5
    no_canary = _fake("e")
    no_canary.rounds, no_canary.samples = [RoundRecord(0, 0, 0.0, 1)], [0.01]
    assert canary_adjustment([no_canary], lambda run_s: pytest.fail("no canary: no reference")) is None


def test_worker_protocol_round_trip(export_cache):
    w = Worker.start()
    try:
        assert w.hello["hello"] == PROTOCOL and w.hello["versions"]["torch"] and w.hello["python"]
        outcomes = w.prepare(_selection(("torch",), export_cache))
        assert [(o["status"], o["identity"]["model"], o["identity"]["batch_size"]) for o in outcomes] == [
            ("ok", "levit_128s", 1)]
        item = remote_item(w, outcomes[0], "x")
        warm_remote(item, w, outcomes[0]["item"], TINY, outcomes[0]["first_call_s"])
        assert item.error is None and item.warm.calls >= 1 and item.warm.per_call_s > 0
        block = item.block(3)
        assert len(block.samples) == 3 and all(s > 0 for s in block.samples)
        assert block.cpu_s is not None and block.cpu_s > 0  # the worker's CPU seconds over its calls
        assert item.rewarm(0.0, item.warm.per_call_s) == 0
        with pytest.raises(RuntimeError, match="KeyError"):
            w.request({"op": "block", "item": 99, "n": 1}, 30)  # an unknown item fails that request only
        assert len(item.block(1).samples) == 1
    finally:
        w.stop()
    assert w.proc.returncode == 0


@pytest.mark.slow
def test_crashing_workers_fail_their_entries_and_the_run_goes_on(plugin, tmp_path, cache_args):
    """A worker killed by a signal and one that exits mid-run, in one run beside a healthy entry."""
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s", "--backend", "torch,crash-in-rounds,exit-in-rounds", "--batch-size", "1",
                 "--rounds", "3", "--processes", "2", "--out", str(out), *FAST, *cache_args]) == 0
    data = json.loads(out.read_text())
    jsonschema.validate(data, results.schema())
    ok, *crashed = data["results"]
    assert ok["status"] == "ok" and ok["backend"] == "torch" and len(ok["timing"]["rounds"]) == 6
    for entry, reason in zip(crashed, ("worker killed by SIGSEGV", "worker exited with status 3"), strict=True):
        assert entry["status"] == "failed" and reason in entry["reason"], entry["reason"]
        assert "process" in entry["reason"]
    assert [e.status for e in results.load(out).results] == [Status.OK, Status.FAILED, Status.FAILED]


@pytest.mark.slow
def test_a_hanging_worker_is_killed_after_its_time_limit(plugin, export_cache):
    entries, interrupted = execute_in_workers(_selection(("torch", "hang-in-rounds"), export_cache), TINY,
                                              Schedule(3, 0), 1, timeouts=Timeouts(floor_s=3.0, factor=1.0))
    assert not interrupted and entries[0].status is Status.OK
    assert entries[1].status is Status.FAILED and "worker did not answer within 3 s" in entries[1].reason


@pytest.mark.slow
def test_processes_2_pools_rounds_of_two_processes(tmp_path, cache_args):
    out = tmp_path / "r.json"
    assert main(["--model", "levit_128s", "--backend", "torch", "--batch-size", "1", "--rounds", "3",
                 "--processes", "2", "--out", str(out), *FAST, *cache_args]) == 0
    data = json.loads(out.read_text())
    jsonschema.validate(data, results.schema())
    (e,) = data["results"]
    assert e["status"] == "ok" and data["config"]["processes"] == 2
    assert sorted((r["round"], r["process"]) for r in e["timing"]["rounds"]) == [(r, k) for r in range(3) for k in (0, 1)]
    assert len(results.load(out).results[0].timing.round_samples()) == 6  # each process's block a round of its own
    # the canary, timed in the parent next to every worker's block: adjusted figures as in one process
    t = e["timing"]
    assert all(r["canary_s"] > 0 for r in t["rounds"])
    assert t["adjusted_images_per_second"] > 0 and t["canary"]["run_s"] > 0 and t["canary"]["cost_s"] > 0
    assert t["intervals"]["confidence"]["of"] == "adjusted_images_per_second"


@pytest.mark.slow
def test_ab_a_a_writes_both_sides_and_exits_by_its_verdict(tmp_path, cache_args):
    import sys

    out = tmp_path / "ab.json"
    code = main(["ab", "--base", sys.executable, "--new", sys.executable, "--model", "levit_128s", "--backend",
                 "torch", "--batch-size", "1", "--rounds", "4", "--out", str(out), *FAST, *cache_args])
    data = json.loads(out.read_text())
    jsonschema.validate(data, results.schema())
    assert [e["side"] for e in data["results"]] == ["base", "new"]
    assert all(e["status"] == "ok" and len(e["timing"]["rounds"]) == 4 for e in data["results"])
    assert data["ab"]["base"]["python"] and data["ab"]["new"]["versions"]["torch"]
    (v,) = data["ab"]["verdicts"]
    # one process a side: its per-process offset can flag an A/A pair (docs/measurement.md), so the
    # outcome is not asserted, only that the exit code follows it
    assert v["rounds"] == 4 and code == (1 if v["outcome"] == FAIL else 0)
    base, new = data["results"]
    for r in range(4):  # adjacent in every round
        at = [next(x["position"] for x in e["timing"]["rounds"] if x["round"] == r) for e in (base, new)]
        assert abs(at[0] - at[1]) == 1
    assert {e.side for e in results.load(out).results} == {"base", "new"}


@pytest.mark.slow
def test_ab_processes_2_pairs_process_k_of_both_sides_and_judges_by_process(tmp_path, cache_args):
    import sys

    out = tmp_path / "ab.json"
    code = main(["ab", "--base", sys.executable, "--new", sys.executable, "--model", "levit_128s", "--backend",
                 "torch", "--batch-size", "1", "--rounds", "3", "--processes", "2", "--out", str(out), *FAST,
                 *cache_args])
    data = json.loads(out.read_text())
    jsonschema.validate(data, results.schema())
    assert data["config"]["processes"] == 2
    base, new = data["results"]
    for e in (base, new):
        assert e["status"] == "ok" and sorted({r["process"] for r in e["timing"]["rounds"]}) == [0, 1]
        assert len(e["timing"]["rounds"]) == 6
    for r in range(3):  # process k of the base next to process k of the new side in every round
        for k in range(2):
            at = [next(x["position"] for x in e["timing"]["rounds"] if (x["round"], x["process"]) == (r, k))
                  for e in (base, new)]
            assert abs(at[0] - at[1]) == 1
    (v,) = data["ab"]["verdicts"]
    assert v["processes"] == 2 and v["rounds"] == 6 and code == (1 if v["outcome"] == FAIL else 0)


@pytest.mark.slow
def test_ab_refuses_sides_that_prepared_different_identities(monkeypatch, export_cache):
    monkeypatch.delenv("LEVIT_BENCH_TEST_WEIGHTS_HASH", raising=False)
    new = Side("new", env={PLUGIN_ENV: PLUGIN, "LEVIT_BENCH_TEST_WEIGHTS_HASH": "0123abcd"})
    with pytest.raises(UserError, match="weights_hash .* \\(base\\) against '0123abcd' \\(new\\)"):
        execute_ab(_selection(("torch",), export_cache), TINY, Schedule(2, 0), Side("base"), new)


def test_ab_bad_interpreter_exits_2(tmp_path, capsys):
    assert main(["ab", "--base", "/nonexistent/python", "--new", "python", "--out", str(tmp_path)]) == 2
    assert "no such interpreter" in capsys.readouterr().err and not list(tmp_path.glob("*.json"))


def test_ab_times_32_paired_rounds_unless_told_and_run_chooses_its_own():
    from levit_bench.cli.ab import AB_ROUNDS, ab_parser
    from levit_bench.cli.run import run_parser

    assert AB_ROUNDS == 32 and ab_parser().parse_args(["--base", "p", "--new", "p"]).rounds == AB_ROUNDS
    assert ab_parser().parse_args(["--base", "p", "--new", "p", "--rounds", "6"]).rounds == 6
    assert run_parser().parse_args([]).rounds is None  # chosen per group (schedule.choose_rounds)
    assert "default: 32" in " ".join(ab_parser().format_help().split())
