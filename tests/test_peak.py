"""The machine's GEMM peak (issue 13): measured with the harness, cached per machine, never trusted
when damaged.  Measurements here use a tiny GEMM and a short time: they check the plumbing, not
the machine (no timed assertions)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from levit_bench import peak
from levit_bench.cli import main
from levit_bench.errors import UserError
from levit_bench.peak import Peak, cached_peak, get_peak, measure_peak

FAST = {"min_time": 0.05, "size": 32}
CLI_FAST = ["--size", "32", "--min-time", "0.05"]
SIZE = FAST["size"]


def _peak(**changes) -> Peak:
    fields = dict(gmacs_per_s=100.0, low=90.0, high=110.0, device="cpu", precision="fp32", threads=1, size=2048,
                  measured_at="2026-01-01T00:00:00+00:00", machine=peak.machine_fingerprint("cpu"))
    return Peak(**{**fields, **changes})


def test_a_peak_survives_its_dict_and_refuses_nonsense():
    p = _peak()
    assert Peak.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    for bad in ({**p.to_dict(), "low": 120.0}, {**p.to_dict(), "threads": "1"}, {**p.to_dict(), "gmacs_per_s": -1},
                {k: v for k, v in p.to_dict().items() if k != "machine"}, [], None):
        with pytest.raises(ValueError):
            Peak.from_dict(bad)


def test_measuring_uses_the_threads_asked_and_restores_them():
    before = torch.get_num_threads()
    seen = []
    real_mm = torch.mm
    torch_mm = lambda *a, **k: (seen.append(torch.get_num_threads()), real_mm(*a, **k))[1]  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "mm", torch_mm)
        p = measure_peak("cpu", "fp32", 1, **FAST)
    assert torch.get_num_threads() == before
    assert seen and set(seen) == {1}
    assert (p.device, p.precision, p.threads, p.size) == ("cpu", "fp32", 1, 32)
    assert 0 < p.low <= p.gmacs_per_s <= p.high
    assert p.machine == peak.machine_fingerprint("cpu")


def test_a_peak_whose_pooled_median_lies_outside_its_round_interval_is_still_cached(tmp_path, monkeypatch):
    """CI, 2026-12-02: a peak of ten rounds was measured, then not read back (its figure, the median
    of all calls pooled, lay outside the interval of its round medians, which a cached peak is checked
    for).  Here one long fast round and nine slow one-call rounds: pooled, the fast calls' median;
    over rounds, the slow one, the figure a peak now takes."""
    from levit_bench import schedule
    from levit_bench.schedule import RoundRecord

    def rounds(items, timing, sched, **_):
        for item in items:
            blocks = [[0.5e-6] * 100] + [[1e-6]] * 9
            item.samples = [s for b in blocks for s in b]
            item.rounds = [RoundRecord(i, 0, float(i), len(b)) for i, b in enumerate(blocks)]
        return len(blocks)

    monkeypatch.setattr(schedule, "run_rounds", rounds)
    first = get_peak("cpu", "fp32", 1, tmp_path, **FAST)
    assert first.low <= first.gmacs_per_s <= first.high
    assert first.gmacs_per_s == pytest.approx(SIZE ** 3 / 1e-6 / 1e9)
    assert cached_peak("cpu", "fp32", 1, tmp_path, SIZE) == first


@pytest.mark.slow  # three measurements
def test_the_cache_round_trip_and_a_corrupt_file_is_measured_again(tmp_path, monkeypatch):
    calls = []  # (a GEMM side asked for has its own cache file, issue 25 D5: SIZE throughout)
    real = peak.measure_peak
    monkeypatch.setattr(peak, "measure_peak", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    assert cached_peak("cpu", "fp32", 1, tmp_path, SIZE) is None
    first = get_peak("cpu", "fp32", 1, tmp_path, **FAST)
    assert len(calls) == 1 and cached_peak("cpu", "fp32", 1, tmp_path, SIZE) == first
    assert get_peak("cpu", "fp32", 1, tmp_path, **FAST) == first and len(calls) == 1  # read, not measured

    path = peak.cache_path("cpu", "fp32", 1, tmp_path, size=SIZE)
    for damage in ("{ not json", json.dumps({"format": 1, "peak": {"gmacs_per_s": "fast"}}),
                   json.dumps({"format": 99, "peak": first.to_dict()}),
                   json.dumps({"format": 1, "peak": {**first.to_dict(), "machine": "another-machine"}})):
        path.write_text(damage)
        assert cached_peak("cpu", "fp32", 1, tmp_path, SIZE) is None
    again = get_peak("cpu", "fp32", 1, tmp_path, **FAST)
    assert len(calls) == 2 and cached_peak("cpu", "fp32", 1, tmp_path, SIZE) == again
    get_peak("cpu", "fp32", 1, tmp_path, remeasure=True, **FAST)
    assert len(calls) == 3


@pytest.mark.slow  # a measurement
def test_entries_are_per_precision_and_threads(tmp_path):
    get_peak("cpu", "fp32", 1, tmp_path, **FAST)
    assert cached_peak("cpu", "fp32", 2, tmp_path) is None
    assert cached_peak("cpu", "bf16", 1, tmp_path) is None


@pytest.mark.slow  # a measurement
def test_an_unwritable_cache_costs_a_warning_not_the_measurement(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="cannot be cached"):
        p = get_peak("cpu", "fp32", 1, blocker, **FAST)
    assert p.gmacs_per_s > 0


def test_a_precision_torch_cannot_multiply_is_a_user_error(monkeypatch):
    def refuse(*_a, **_k):
        raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'\nmore')

    monkeypatch.setattr(torch, "mm", refuse)
    with pytest.raises(UserError, match="cannot multiply fp16 matrices on cpu"):
        measure_peak("cpu", "fp16", 1, **FAST)


def test_bad_settings_are_user_errors():
    for args in (("tpu", "fp32", 1), ("cpu", "fp8", 1), ("cpu", "fp32", 0)):
        with pytest.raises(UserError):
            measure_peak(*args, **FAST)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            measure_peak("cuda", "fp16", 1, **FAST)


# ---------------------------------------------------------------------------------------------
# levit-bench sysinfo --peak

def test_sysinfo_peak_measures_then_reads_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEVIT_BENCH_CACHE", str(tmp_path))
    assert main(["sysinfo", "--peak", "--json", "--threads", "1", *CLI_FAST]) == 0
    (fresh,) = json.loads(capsys.readouterr().out)
    assert fresh["cached"] is False and fresh["threads"] == 1 and fresh["size"] == 32
    assert list((tmp_path / "peak").glob("*.json"))
    assert main(["sysinfo", "--peak", "--json", "--threads", "1", *CLI_FAST]) == 0
    (cached,) = json.loads(capsys.readouterr().out)
    assert cached == {**fresh, "cached": True}
    assert main(["sysinfo", "--peak", "--json", "--threads", "1", "--remeasure", *CLI_FAST]) == 0
    (again,) = json.loads(capsys.readouterr().out)
    assert again["cached"] is False


@pytest.mark.slow  # two measurements, then two reads
def test_sysinfo_peak_defaults_to_one_thread_and_the_physical_cores(tmp_path, capsys):
    from levit_bench.sysinfo import physical_cores

    assert main(["sysinfo", "--peak", "--cache-dir", str(tmp_path), *CLI_FAST]) == 0
    out = capsys.readouterr().out
    assert "GMAC/s" in out and "measured now" in out
    assert main(["sysinfo", "--peak", "--json", "--cache-dir", str(tmp_path), *CLI_FAST]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["threads"] for r in rows] == list(dict.fromkeys([1, physical_cores()]))
    assert all(r["cached"] and r["precision"] == "fp32" and r["device"] == "cpu" for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["sysinfo", "--remeasure"], "only with --peak"),
    (["sysinfo", "--peak", "--threads", "0"], "--threads must be a positive integer"),
    (["sysinfo", "--peak", "--precision", "fp8"], "invalid choice"),
])
def test_sysinfo_bad_input_exits_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_sysinfo_peak_on_cuda_without_cuda_is_one_line(capsys):
    assert main(["sysinfo", "--peak", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no CUDA device" in err


# ---------------------------------------------------------------------------------------------
# the honest peak (issue 21, item 8): the best dense GEMM among the installed runtimes

from levit_bench.backends import gemm  # noqa: E402  (beside the tests it serves)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_each_runtimes_gemm_computes_the_product(runtime):
    if gemm.unavailable(runtime, "cpu", "fp32"):
        pytest.skip(gemm.unavailable(runtime, "cpu", "fp32"))
    call = gemm.BUILDERS[runtime](SIZE, 1)
    call()
    a, b = gemm.operands(SIZE)
    assert np.allclose(call.output(), a @ b, rtol=1e-4, atol=1e-4)


def test_torchs_gemm_is_always_measured_the_others_in_fp32_on_cpu_only():
    assert gemm.unavailable("torch", "cuda", "bf16") is None
    assert "fp32 only" in gemm.unavailable("openvino", "cpu", "bf16")
    assert "cpu only" in gemm.unavailable("onnxruntime", "cuda", "fp32")


def test_the_peak_is_the_fastest_runtime_and_keeps_every_runtimes_figure():
    p = measure_peak("cpu", "fp32", 1, **FAST)
    assert list(p.runtimes) == list(gemm.GEMM_RUNTIMES)
    measured = {r: f for r, f in p.runtimes.items() if "gmacs_per_s" in f}
    assert "torch" in measured
    for runtime in ("onnxruntime", "openvino"):
        assert (runtime in measured) == (gemm.unavailable(runtime, "cpu", "fp32") is None)
    assert p.runtime == max(measured, key=lambda r: measured[r]["gmacs_per_s"])
    assert (p.gmacs_per_s, p.low, p.high) == tuple(measured[p.runtime][k] for k in ("gmacs_per_s", "low", "high"))
    assert Peak.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_a_missing_or_failing_runtime_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.setattr(gemm, "missing_package", lambda module, pip: f"{module} is not installed (pip install {pip})"
                        if module == "openvino" else None)

    def broken(n, threads):
        raise RuntimeError("no MatMul kernel here\nsecond line")

    monkeypatch.setitem(gemm.BUILDERS, "onnxruntime", broken)
    p = measure_peak("cpu", "fp32", 1, **FAST)
    assert p.runtime == "torch"
    assert p.runtimes["openvino"] == {"skipped": "openvino is not installed (pip install openvino)"}
    assert p.runtimes["onnxruntime"] == {"skipped": "onnxruntime could not run a 32×32 MatMul: no MatMul kernel here"}


def test_a_peak_record_refuses_a_runtime_without_a_figure():
    p = _peak(runtime="openvino", runtimes={"torch": {"gmacs_per_s": 90.0, "low": 80.0, "high": 95.0},
                                            "openvino": {"gmacs_per_s": 100.0, "low": 90.0, "high": 110.0}})
    assert Peak.from_dict(p.to_dict()) == p
    for bad in ({**p.to_dict(), "runtime": "onnxruntime"},
                {**p.to_dict(), "runtimes": {**p.runtimes, "openvino": {"skipped": 3}}},
                {**p.to_dict(), "runtimes": {**p.runtimes, "torch": {"gmacs_per_s": 90.0, "low": 99.0, "high": 95.0}}}):
        with pytest.raises(ValueError):
            Peak.from_dict(bad)


def test_a_cached_peak_of_the_earlier_format_is_measured_again(tmp_path, monkeypatch):
    calls = []
    real = peak.measure_peak
    monkeypatch.setattr(peak, "measure_peak", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    old = {k: v for k, v in _peak(size=SIZE).to_dict().items() if k not in ("runtime", "runtimes")}  # format 1
    path = peak.cache_path("cpu", "fp32", 1, tmp_path, size=SIZE)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "peak": old}))
    assert cached_peak("cpu", "fp32", 1, tmp_path, SIZE) is None
    fresh = get_peak("cpu", "fp32", 1, tmp_path, **FAST)
    assert len(calls) == 1 and "torch" in fresh.runtimes
    assert json.loads(path.read_text())["format"] == peak.CACHE_FORMAT == 3
    assert cached_peak("cpu", "fp32", 1, tmp_path, SIZE) == fresh


@pytest.mark.slow  # a measurement of three runtimes
def test_sysinfo_peak_shows_every_runtime(tmp_path, capsys):
    assert main(["sysinfo", "--peak", "--threads", "1", "--cache-dir", str(tmp_path), *CLI_FAST]) == 0
    out = capsys.readouterr().out
    assert "(peak)" in out
    for runtime in gemm.GEMM_RUNTIMES:
        assert runtime in out
