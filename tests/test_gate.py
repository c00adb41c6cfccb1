"""compare and the CI gate on synthetic results files with seeded samples: significant slowdowns
fail, noise does not, normalization survives a machine factor, bad files exit 2."""
from __future__ import annotations

import dataclasses

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from levit_bench import gate
from levit_bench.cli import main
from levit_bench.errors import UserError
from levit_bench.results import Entry, RunRecord, speed_ratio
from levit_bench.spec import Conditions, Identity, RuntimeOptions, variant
from levit_bench.stats import median_time_interval, summarize_calls

SYSTEM = {
    "cpu": "Synthetic CPU", "arch": "x86_64", "physical_cores": 2, "logical_cores": 2, "memory_bytes": 8 * 2**30,
    "os": "Linux", "hostname": "ci-runner", "python": "3.11", "versions": {"torch": "2.4"}, "gpu": None,
}
#: seconds per image on the synthetic machine
SPEEDS = {("levit_128s", "torch"): 0.004, ("levit_128s", "onnxruntime"): 0.0025,
          ("efficientnet_b0", "torch"): 0.010, ("efficientnet_b0", "onnxruntime"): 0.006}
BATCHES = (1, 4)


def ok_entry(model: str, backend: str, batch: int, samples, *, threads: int = 2, device: str = "cpu",
             precision: str = "fp32") -> Entry:
    """A successful entry (one block of calls) whose summary fields come from ``samples`` as a run fills them."""
    s = summarize_calls(samples, batch)
    lo, hi = median_time_interval([np.asarray(samples, dtype=float)])
    return Entry(Identity(model, backend, device, precision, threads, batch, 224), "ok",
                 images_per_second=s.images_per_second, ci95=[batch / hi, batch / lo], iqr=s.iqr_ips, noisy=s.noisy,
                 latency_ms=s.latency_ms, time_s={"median": s.median_s, "iqr": s.iqr_s, "min": s.min_s},
                 samples_s=[float(x) for x in samples], images_per_call=batch, warmup_calls=3,
                 parity={"ok": True}, export_s=0.0, first_call_s=float(samples[0]), peak_rss_bytes=1)


def not_ok_entry(model: str, backend: str, batch: int, status: str, reason: str, threads: int = 2) -> Entry:
    return Entry(Identity(model, backend, "cpu", "fp32", threads, batch), status, reason)


def make_record(entries: list[Entry], system: dict | None = None, argv: list[str] | None = None) -> RunRecord:
    return RunRecord(system=copy.deepcopy(system or SYSTEM), config={"argv": argv or ["--device", "cpu"]},
                     results=entries, complete=True)


def base_record(seed: int = 0, n: int = 30, noise: float = 0.04) -> RunRecord:
    rng = np.random.default_rng(seed)
    entries = [ok_entry(m, b, bs, bs * t * rng.lognormal(0.0, noise, n))
               for (m, b), t in SPEEDS.items() for bs in BATCHES]
    return make_record(entries)


def rescaled(record: RunRecord, factor: dict[str, float] | float = 1.0, noise: float = 0.01,
             seed: int = 1) -> RunRecord:
    """A copy whose samples are multiplied by a per-model factor and ``noise`` relative noise."""
    rng = np.random.default_rng(seed)
    out = []
    for e in record.results:
        f = factor if isinstance(factor, float) else factor.get(e.model, 1.0)
        samples = np.asarray(e.samples_s) * f * (1.0 + rng.normal(0.0, noise, len(e.samples_s)))
        out.append(ok_entry(e.model, e.backend, e.batch_size, samples, threads=e.threads))
    return make_record(out)


def save(record: RunRecord, path: Path) -> str:
    record.save(path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """base, a 1%-noise copy, a copy with efficientnet_b0 20% slower, and both on a 1.7× slower machine."""
    d = tmp_path_factory.mktemp("gate")
    base = base_record()
    copy_ = rescaled(base, 1.0, seed=1)
    slow = rescaled(base, {"efficientnet_b0": 1.25}, noise=0.02, seed=2)
    return {
        "base": save(base, d / "base.json"),
        "copy": save(copy_, d / "copy.json"),
        "slow": save(slow, d / "slow.json"),
        "copy_machine": save(rescaled(copy_, 1.7, noise=0.0), d / "copy-machine.json"),
        "slow_machine": save(rescaled(slow, 1.7, noise=0.0), d / "slow-machine.json"),
        "dir": d,
    }


def verdicts(result: gate.CompareResult) -> dict[tuple, str]:
    return {r.key: r.verdict for r in result.rows}


# ---------------------------------------------------------------------------------------------
# verdicts and exit codes


def test_twenty_percent_slowdown_is_a_significant_regression(files, capsys):
    result = gate.compare_files(files["base"], files["slow"])
    for r in result.rows:
        if r.base.model == "efficientnet_b0":
            assert r.verdict == gate.SLOWER and r.significant and r.p_value < 0.01
            assert r.change_pct == pytest.approx(-20.0, abs=3.0)
            assert r.ratio_ci95[1] < 1.0
        else:
            assert r.verdict == gate.UNCHANGED, r.base.label()
    assert len(result.regressions(5.0)) == 4 and not result.regressions(30.0)
    assert main(["compare", files["base"], files["slow"], "--fail-above", "5"]) == 1
    out = capsys.readouterr().out
    assert "slower" in out and "FAIL" in out and "efficientnet_b0" in out


def test_regression_below_the_threshold_passes(files):
    assert main(["compare", files["base"], files["slow"], "--fail-above", "30"]) == 0
    assert main(["compare", files["base"], files["slow"]]) == 0  # no gate asked for


def test_one_percent_noise_is_no_significant_change(files, capsys):
    result = gate.compare_files(files["base"], files["copy"])
    assert set(verdicts(result).values()) == {gate.UNCHANGED}
    assert all(abs(r.change_pct) < 2.0 for r in result.rows)
    assert main(["compare", files["base"], files["copy"], "--fail-above", "5"]) == 0
    assert "pass" in capsys.readouterr().out


def test_speed_up_is_reported_as_faster_and_passes(files):
    result = gate.compare_files(files["slow"], files["base"])  # the other way round
    slower_before = {r.key for r in result.rows if r.base.model == "efficientnet_b0"}
    assert {r.key for r in result.rows if r.verdict == gate.FASTER} == slower_before
    assert not result.failed(5.0)


def test_large_but_noisy_slowdown_on_few_samples_is_not_flagged():
    """What a fixed threshold gets wrong: 10% slower medians from 6 calls with 30% noise prove nothing."""
    rng = np.random.default_rng(5)
    base = make_record([ok_entry("levit_128s", "torch", 1, 0.004 * rng.lognormal(0, 0.3, 6))])
    new = make_record([ok_entry("levit_128s", "torch", 1, 0.0044 * rng.lognormal(0, 0.3, 6))])
    result = gate.compare_runs(base, new)
    (row,) = result.rows
    assert row.change_pct < -5.0  # a fixed 5% threshold would fail the build
    assert row.verdict == gate.UNCHANGED and not result.failed(5.0)


def _rounds_entry(rounds: list[np.ndarray], batch: int = 1) -> Entry:
    """An entry timed in rounds, as a run records it."""
    e = Entry(Identity("levit_128s", "torch", "cpu", "fp32", 2, batch, 224))
    e.record(np.concatenate(rounds), [{"round": i, "position": 0, "start_s": float(i), "calls": len(r)}
                                      for i, r in enumerate(rounds)], batch)
    return e


def test_entries_timed_in_rounds_are_tested_on_their_round_medians():
    """Calls of a round share the machine's state: a 20% slowdown shows in the round medians; a
    drift between rounds (each round 0-10% slower at random) with no slowdown does not fire."""
    rng = np.random.default_rng(12)

    def run(factor: float) -> Entry:
        return _rounds_entry([factor * 0.01 * rng.uniform(1.0, 1.1) * rng.lognormal(0, 0.01, 30) for _ in range(8)])

    base = run(1.0)
    slow = gate.compare_runs(make_record([base]), make_record([run(1.25)])).rows[0]
    assert slow.verdict == gate.SLOWER and slow.p_value < 0.01 and slow.change_pct == pytest.approx(-20, abs=5)
    same = [gate.compare_runs(make_record([base]), make_record([run(1.0)])).rows[0] for _ in range(10)]
    assert all(r.verdict == gate.UNCHANGED for r in same)


def test_the_gate_and_the_report_give_one_interval_for_one_unpaired_ratio():
    rng = np.random.default_rng(13)
    base = _rounds_entry([0.01 * rng.lognormal(0, 0.05, 10) for _ in range(6)])
    new = _rounds_entry([0.011 * rng.lognormal(0, 0.05, 10) for _ in range(6)])
    row = gate.compare_runs(make_record([base]), make_record([new])).rows[0]
    report = speed_ratio(new, base, same_run=False)  # what the report shows for new over base
    assert row.ratio_ci95 == report.ci95 and row.change_pct == pytest.approx((report.value - 1) * 100)
    # files of one block: the same function, on the calls
    b, n = ok_entry("levit_128s", "torch", 1, 0.01 * rng.lognormal(0, 0.05, 40)), \
        ok_entry("levit_128s", "torch", 1, 0.011 * rng.lognormal(0, 0.05, 40))
    assert gate.compare_runs(make_record([b]), make_record([n])).rows[0].ratio_ci95 == \
        speed_ratio(n, b, same_run=False).ci95


def test_normalized_verdicts_survive_a_constant_machine_factor(files):
    """A 1.7× slower machine: without normalization everything is slower; with it, the verdicts are
    those of the same-machine comparison."""
    ref = "levit_128s/torch"
    for same, other in (("copy", "copy_machine"), ("slow", "slow_machine")):
        plain = gate.compare_files(files["base"], files[same])
        raw = gate.compare_files(files["base"], files[other])
        assert set(verdicts(raw).values()) == {gate.SLOWER}
        assert raw.failed(5.0)
        normalized = gate.compare_files(files["base"], files[other], normalize_by=ref)
        got = verdicts(normalized)
        for key, verdict in verdicts(plain).items():
            assert got[key] == (gate.REFERENCE if key[:2] == ("levit_128s", "torch") else verdict), key
        assert normalized.failed(5.0) == plain.failed(5.0) == (same == "slow")
    assert main(["compare", files["base"], files["copy_machine"], "--fail-above", "5", "--normalize-by", ref]) == 0


def test_reference_entry_is_shown_but_not_gated():
    base = base_record()
    new = rescaled(base, {"levit_128s": 1.5}, seed=3)  # only the reference model got slower
    result = gate.compare_runs(base, new, normalize_by="levit_128s")  # backend defaults to torch
    refs = [r for r in result.rows if (r.base.model, r.base.backend) == ("levit_128s", "torch")]
    assert refs and all(not r.gated and r.verdict == gate.REFERENCE for r in refs)
    assert all(r.base_relative == pytest.approx(1.0) and r.new_relative == pytest.approx(1.0) for r in refs)
    assert not any(r in result.regressions(5.0) for r in refs)
    # relative to a slower reference, everything else now looks faster, except levit_128s itself on onnxruntime
    assert {r.verdict for r in result.rows if r.base.model == "efficientnet_b0"} == {gate.FASTER}
    assert {r.verdict for r in result.rows if r.base.key[:2] == ("levit_128s", "onnxruntime")} == {gate.UNCHANGED}


def test_normalization_uses_the_reference_median_of_the_same_setting():
    rng = np.random.default_rng(4)
    samples = 0.01 * rng.lognormal(0, 0.02, 20)
    run = make_record([ok_entry("levit_128s", "torch", 1, samples), ok_entry("deit_tiny", "torch", 1, samples * 2),
                       ok_entry("levit_128s", "torch", 4, samples * 2), ok_entry("deit_tiny", "torch", 4, samples * 2)])
    ref = gate.reference_entry(run, ("levit_128s", "torch"), Conditions("cpu", "fp32", 4, 2))
    assert (ref.model, ref.batch_size) == ("levit_128s", 4)  # measured at the setting asked, not batch 1
    result = gate.compare_runs(run, run, normalize_by="levit_128s/torch")
    rel = {r.key.conditions.batch_size: r.base_relative for r in result.rows if r.base.model == "deit_tiny"}
    assert rel[1] == pytest.approx(0.5, rel=1e-6)  # twice the reference's time per call at batch 1
    assert rel[4] == pytest.approx(1.0, rel=1e-6)  # the same time as the reference at batch 4


# ---------------------------------------------------------------------------------------------
# what cannot be compared


def test_failed_and_unmatched_entries_are_listed_not_dropped(files, tmp_path, capsys):
    base = base_record()
    base.results.append(not_ok_entry("levit_128s", "openvino", 1, "skipped", "openvino is not installed"))
    new = rescaled(base_record(), 1.0, seed=1)
    new.results.append(not_ok_entry("levit_128s", "openvino", 1, "failed", "parity failed: cosine 0.5"))
    new.results.append(ok_entry("deit_tiny", "torch", 1, np.full(5, 0.01)))
    new.results.append(not_ok_entry("deit_small", "torch", 1, "failed", "out of memory"))
    result = gate.compare_runs(base, new)
    assert len(result.rows) == len(SPEEDS) * len(BATCHES)
    text = "\n".join(result.not_compared)
    assert "base skipped" in text and "openvino is not installed" in text
    assert "new failed" in text and "parity failed: cosine 0.5" in text
    assert "only in new" in text and "deit_tiny" in text
    assert "deit_small" in text and "(failed: out of memory)" in text  # one-sided, still says why
    code = main(["compare", save(base, tmp_path / "b.json"), save(new, tmp_path / "n.json"), "--markdown"])
    out = capsys.readouterr().out
    assert code == 0 and "Not compared" in out and "parity failed" in out


def test_markdown_output_has_a_table_and_the_gate_decision(files, capsys):
    assert main(["compare", files["base"], files["slow"], "--markdown", "--fail-above", "5"]) == 1
    out = capsys.readouterr().out
    assert "| model | backend |" in out and "|---|" in out
    assert out.count("| slower |") == 4 and "FAIL" in out


@pytest.mark.parametrize("case", ["not_json", "wrong_schema", "no_overlap", "missing", "not_results"])
def test_bad_files_exit_2_with_a_message(files, tmp_path, capsys, case):
    bad = tmp_path / "bad.json"
    if case == "not_json":
        bad.write_text("{ this is not json")
        expect = "cannot read"
    elif case == "wrong_schema":
        data = json.loads(Path(files["base"]).read_text())
        data["schema_version"] = 99
        bad.write_text(json.dumps(data))
        expect = "schema version 99"
    elif case == "no_overlap":
        data = json.loads(Path(files["base"]).read_text())
        for e in data["results"]:
            e["threads"] = 16
        bad.write_text(json.dumps(data))
        expect = "no entry was measured successfully in both"
    elif case == "not_results":
        bad.write_text(json.dumps({"hello": 1}))
        expect = "not a levit-bench results file"
    else:
        bad = tmp_path / "nowhere.json"
        expect = "not found"
    assert main(["compare", files["base"], str(bad), "--fail-above", "5"]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err


def test_missing_reference_is_a_user_error(files, capsys):
    with pytest.raises(UserError, match="deit_tiny/torch"):
        gate.compare_files(files["base"], files["copy"], normalize_by="deit_tiny")
    assert main(["compare", files["base"], files["copy"], "--normalize-by", "levit_128s/openvino"]) == 2
    assert "no successful levit_128s/openvino entry" in capsys.readouterr().err


def test_reference_missing_at_one_batch_size_is_a_user_error():
    rng = np.random.default_rng(6)
    run = make_record([ok_entry("levit_128s", "torch", 1, 0.004 * rng.lognormal(0, 0.02, 10)),
                       ok_entry("efficientnet_b0", "torch", 1, 0.01 * rng.lognormal(0, 0.02, 10)),
                       ok_entry("efficientnet_b0", "torch", 4, 0.04 * rng.lognormal(0, 0.02, 10))])
    with pytest.raises(UserError, match="batch 4"):
        gate.compare_runs(run, run, normalize_by="levit_128s/torch")


@pytest.mark.parametrize("args", [["--fail-above", "-3"], ["--fail-above", "lots"], ["--alpha", "2"],
                                  ["--normalize-by", "a/b/c"]])
def test_bad_options_exit_2(files, args, capsys):
    assert main(["compare", files["base"], files["copy"], *args]) == 2
    assert "error" in capsys.readouterr().err


def test_different_runtime_options_are_different_measurements(capsys, tmp_path):
    """channels_last (or CUDA graphs, ...) changes what is measured: such entries never match."""
    rng = np.random.default_rng(8)
    base = ok_entry("levit_256", "torch", 16, 16 * 0.01 * rng.lognormal(0, 0.02, 10))
    plain = ok_entry("levit_256", "torch", 16, 16 * 0.01 * rng.lognormal(0, 0.02, 10))
    new = ok_entry("levit_256", "torch", 16, 16 * 0.01 * rng.lognormal(0, 0.02, 10))
    new.identity = dataclasses.replace(new.identity, options=RuntimeOptions(channels_last=True))
    assert base.key != new.key
    result = gate.compare_runs(make_record([base]), make_record([plain, new]))
    assert [r.new for r in result.rows] == [plain]
    assert result.not_compared == ["only in new: levit_256 / torch [channels last] / cpu fp32 / batch 16 / 2 threads"]
    with pytest.raises(UserError, match="no entry was measured successfully in both"):
        gate.compare_runs(make_record([base]), make_record([new]))


def test_variant_names_only_options_that_apply():
    e = ok_entry("levit_256", "onnxruntime", 1, np.full(3, 0.01))
    e.identity = dataclasses.replace(e.identity, options=RuntimeOptions(half_mode="autocast", channels_last=True, openvino_mode="async"))
    assert e.variant == "onnxruntime"  # none of these change ONNX Runtime
    e.identity = dataclasses.replace(e.identity, backend="torch")
    assert e.variant == "torch [channels last]"  # autocast means nothing in fp32
    e.identity = dataclasses.replace(e.identity, precision="fp16")
    assert e.variant == "torch [autocast, channels last]"
    assert variant("torch-compile", "fp32", RuntimeOptions(cuda_graphs=True, compile_mode="max-autotune")) == \
        "torch-compile [mode max-autotune, CUDA graphs]"


def test_parse_reference():
    assert gate.parse_reference("levit_128s") == ("levit_128s", "torch")
    assert gate.parse_reference("levit_256/onnxruntime") == ("levit_256", "onnxruntime")
    with pytest.raises(UserError):
        gate.parse_reference("/torch")


def test_relative_rounds_divide_by_images_per_call():
    e = ok_entry("levit_128s", "openvino", 4, np.array([0.08, 0.08, 0.08]))
    e.images_per_call = 16  # e.g. OpenVINO async: 4 requests of batch 4 per call
    assert np.concatenate(gate.relative_rounds(e, None)) == pytest.approx([0.005] * 3)
