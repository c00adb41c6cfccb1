"""compare and the CI gate on synthetic results files with seeded samples timed in rounds beside a
simulated canary: real slowdowns beyond the threshold fail, a slower machine does not, too few or
too noisy rounds are inconclusive (exit by --inconclusive), normalization survives a machine
factor, bad files exit 2."""
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
from levit_bench.entry_parts import ExportFacts, Timing
from levit_bench.results import Entry, RunRecord
from levit_bench.spec import Conditions, Identity, RuntimeOptions, variant
from levit_bench.stats import median_time_interval, summarize_calls
from levit_bench.verdict import FAIL, INCONCLUSIVE, PASS

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
    timing = Timing(samples_s=[float(x) for x in samples], images_per_call=batch, warmup_calls=3,
                    first_call_s=float(samples[0]), images_per_second=s.images_per_second, ci95=[batch / hi, batch / lo],
                    iqr=s.iqr_ips, noisy=s.noisy, latency_ms=s.latency_ms,
                    time_s={"median": s.median_s, "iqr": s.iqr_s, "min": s.min_s}, peak_rss_bytes=1)
    return Entry(Identity(model, backend, device, precision, threads, batch, 224), "ok",
                 export=ExportFacts(export_s=0.0, parity={"ok": True}), timing=timing)


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
        samples = np.asarray(e.timing.samples_s) * f * (1.0 + rng.normal(0.0, noise, len(e.timing.samples_s)))
        out.append(ok_entry(e.model, e.backend, e.batch_size, samples, threads=e.threads))
    return make_record(out)


def flat_file(data: dict, version: int = 6) -> dict:
    """A file of this version (``RunRecord.to_dict``) in the layout of an earlier ``version``: every
    entry's parts flat beside its identity, as files before schema 7 kept them."""
    out = {**data, "schema_version": version, "results": []}
    for e in data["results"]:
        flat = {k: v for k, v in e.items() if k not in ("export", "timing", "explain")}
        for part in ("export", "timing", "explain"):
            flat.update(e.get(part) or {})
        for key in ("images_per_second", "ci95", "iqr", "latency_ms", "first_call_s", "peak_rss_bytes"):
            flat.setdefault(key, None)  # an untimed entry had them, empty
        flat.setdefault("samples_s", [])
        out["results"].append(flat)
    return out


def save(record: RunRecord, path: Path) -> str:
    record.save(path)
    return str(path)


def timed_entry(model: str, backend: str, batch: int, rounds: list[np.ndarray], canary: list[float] | None,
                threads: int = 2, group: int = 0) -> Entry:
    """An entry timed in rounds, as a run records it (with the canary's seconds next to each block)."""
    e = Entry(Identity(model, backend, "cpu", "fp32", threads, batch, 224))
    dicts = [{"round": i, "position": 0, "start_s": float(i), "calls": len(r)} for i, r in enumerate(rounds)]
    if canary is not None:
        for d, c in zip(dicts, canary):
            d["canary_s"] = float(c)
    e.add_timing(Timing.measure(np.concatenate(rounds), dicts, batch))
    e.group = group
    return e


def simulated_run(seed: int, slower: dict[str, float] | None = None, machine: float = 1.0, rounds: int = 8,
                  canary: bool = True, block_sd: float = 0.08, own_sd: float = 0.01, call_sd: float = 0.02) -> RunRecord:
    """Every SPEEDS x BATCHES entry timed in ``rounds`` rounds on a machine ``machine`` times slower,
    each round's block drifting ``block_sd`` (the canary next to it sees the same drift), the entry's
    own round noise ``own_sd``; ``slower`` multiplies a model's times."""
    rng = np.random.default_rng(seed)
    entries = []
    for (m, b), t in SPEEDS.items():
        for bs in BATCHES:
            drift = machine * rng.lognormal(0, block_sd, rounds)
            times = [bs * t * (slower or {}).get(m, 1.0) * d * rng.lognormal(0, own_sd) * rng.lognormal(0, call_sd, 6)
                     for d in drift]
            entries.append(timed_entry(m, b, bs, times, list(5e-4 * drift) if canary else None))
    return make_record(entries)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """base; a rerun on a 15% slower machine; the same with efficientnet_b0 60% slower (a 37.5% speed
    loss: between two runs on the canary alone a 20% one is within what the runs' machine factors
    differ by, ``pair_noise.RUN_FACTOR_SD``), raw with it 25% slower; both without the canary; and
    clean one-block files (no rounds)."""
    d = tmp_path_factory.mktemp("gate")
    out = {"dir": d}
    for name, record in (("base", simulated_run(0)), ("copy", simulated_run(1, machine=1.15)),
                         ("slow", simulated_run(2, {"efficientnet_b0": 1.6}, machine=1.15)),
                         ("base_raw", simulated_run(0, canary=False)),
                         ("copy_raw", simulated_run(1, machine=1.15, canary=False)),
                         ("slow_raw", simulated_run(2, {"efficientnet_b0": 1.25}, machine=1.15, canary=False)),
                         ("block", base_record()), ("block_copy", rescaled(base_record(), 1.0, seed=1))):
        out[name] = save(record, d / f"{name}.json")
    return out


def outcomes(result: gate.CompareResult) -> dict[tuple, str]:
    return {r.key: r.outcome for r in result.rows}


# ---------------------------------------------------------------------------------------------
# outcomes and exit codes


def test_a_large_slowdown_fails_on_a_slower_machine_with_the_canary(files, capsys):
    result = gate.compare_files(files["base"], files["slow"], fail_above_pct=5.0)
    for r in result.rows:
        assert r.adjusted
        if r.base.model == "efficientnet_b0":
            assert r.outcome == FAIL and r.verdict.p < 0.02 and r.verdict.interval[1] < 0.95
            assert r.change_pct == pytest.approx(-37.5, abs=3.0)
        else:
            assert r.outcome != FAIL, r.base.label()  # the 15% slower machine cancels
    assert result.outcome == FAIL and result.failed() and len(result.with_outcome(FAIL)) == 4
    assert main(["compare", files["base"], files["slow"], "--fail-above", "5"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "efficientnet_b0" in out and "adjusted" in out
    assert not gate.compare_files(files["base"], files["slow"], fail_above_pct=45.0).with_outcome(FAIL)
    assert main(["compare", files["base"], files["slow"], "--fail-above", "45"]) == 0  # below the threshold
    assert main(["compare", files["base"], files["slow"]]) == 0  # no gate asked for
    assert "no gate asked" in capsys.readouterr().out


def test_a_rerun_on_a_slower_machine_fails_nothing_with_the_canary_and_raw_figures_do(files, capsys):
    adjusted = gate.compare_files(files["base"], files["copy"], fail_above_pct=5.0)
    assert adjusted.outcome != FAIL and all(r.adjusted for r in adjusted.rows)
    assert all(abs(r.change_pct) < 3.0 for r in adjusted.rows)
    assert main(["compare", files["base"], files["copy"], "--fail-above", "5"]) == 0
    raw = gate.compare_files(files["base_raw"], files["copy_raw"], fail_above_pct=5.0)
    # raw figures keep the machine's 15%: within what two runs' raw factors differ by, so it can be
    # neither passed nor failed
    assert not any(r.adjusted for r in raw.rows) and raw.outcome == INCONCLUSIVE
    assert all(r.change_pct < -5 for r in raw.rows) and all(r.outcome == INCONCLUSIVE for r in raw.rows)
    assert main(["compare", files["base_raw"], files["copy_raw"], "--fail-above", "5", "--markdown"]) == 0
    assert "raw for every entry" in capsys.readouterr().out
    assert main(["compare", files["base_raw"], files["copy_raw"], "--fail-above", "5", "--inconclusive", "fail"]) == 1
    mixed = gate.compare_files(files["base"], files["copy_raw"], fail_above_pct=5.0)  # canary on one side only
    assert not any(r.adjusted for r in mixed.rows)


def test_a_quiet_rerun_passes_against_the_other_entries(files, capsys):
    """Two runs alone cannot rule out a 5% slowdown that every entry shares (each run's machine
    factor, after the canary alone: 10.4% SD on the VMs studied): unnormalized the quiet rerun is
    inconclusive, never failed; each entry against the others' median passes."""
    quiet = dict(block_sd=0.003, own_sd=0.001, call_sd=0.002)
    base, new = simulated_run(3, **quiet), simulated_run(4, machine=1.3, **quiet)
    result = gate.compare_runs(base, new, fail_above_pct=5.0)
    assert set(outcomes(result).values()) == {INCONCLUSIVE} and all(abs(r.change_pct) < 1 for r in result.rows)
    assert all("separates the two sides" in r.verdict.reason for r in result.rows)
    plan = gate.compare_runs(base, new, "plan", fail_above_pct=5.0)
    assert set(outcomes(plan).values()) == {PASS} and plan.outcome == PASS
    b, n = save(base, files["dir"] / "q1.json"), save(new, files["dir"] / "q2.json")
    assert main(["compare", b, n, "--fail-above", "5", "--inconclusive", "fail"]) == 1
    assert "--normalize-by plan" in capsys.readouterr().out
    code = main(["compare", b, n, "--fail-above", "5", "--inconclusive", "fail", "--normalize-by", "plan"])
    assert code == 0 and "pass" in capsys.readouterr().out


def test_inconclusive_exits_by_the_policy_and_says_so_prominently(files, capsys):
    """Few noisy rounds: a 5% change cannot be told; exit 0 by default, 1 with --inconclusive fail."""
    base, new = simulated_run(5, rounds=4, block_sd=0.1, own_sd=0.08), simulated_run(6, rounds=4, block_sd=0.1,
                                                                                      own_sd=0.08)
    result = gate.compare_runs(base, new, "plan", fail_above_pct=5.0)
    assert result.outcome == INCONCLUSIVE and not result.failed() and result.failed(FAIL)
    assert result.more_rounds() and result.more_rounds() >= 1
    b, n = save(base, files["dir"] / "i1.json"), save(new, files["dir"] / "i2.json")
    assert main(["compare", b, n, "--fail-above", "5", "--markdown"]) == 0  # unnormalized: more rounds would not
    assert "more rounds would not decide" in capsys.readouterr().out
    assert main(["compare", b, n, "--fail-above", "5", "--markdown", "--normalize-by", "plan"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("**") and "INCONCLUSIVE" in first and "--inconclusive pass" in first
    assert "cannot be told at this noise" in first and "more rounds per side would decide" in first
    assert "Why:" in out and out.count("| inconclusive |") == len(result.with_outcome(INCONCLUSIVE))
    assert main(["compare", b, n, "--fail-above", "5", "--inconclusive", "fail", "--normalize-by", "plan"]) == 1
    assert "INCONCLUSIVE" in capsys.readouterr().out
    assert main(["compare", b, n, "--inconclusive", "fail"]) == 0  # no gate asked for


def test_the_headline_says_which_entries_more_rounds_would_not_decide():
    from levit_bench.cli.compare import headline

    result = gate.compare_runs(simulated_run(3), simulated_run(4), fail_above_pct=5.0)
    for i, r in enumerate(result.rows):
        r.verdict = dataclasses.replace(r.verdict, outcome=INCONCLUSIVE, more_rounds=7 if i == 0 else None)
    text = headline(result)
    stuck = len(result.rows) - 1
    assert f"about 7 more rounds per side would decide all but {stuck} (see each entry's reason" in text
    assert "--normalize-by plan tests each entry against the others" in text
    result.rows[0].verdict = dataclasses.replace(result.rows[0].verdict, more_rounds=None)
    assert "more rounds would not decide all of them" in headline(result)


def test_large_but_noisy_slowdown_on_few_rounds_is_not_flagged():
    """What a fixed threshold gets wrong: 10% slower medians from 3 rounds with 30% noise prove nothing."""
    one = lambda f: make_record([timed_entry("levit_128s", "torch", 1, [f * 0.004 * d * np.ones(5)
                                                                      for d in (0.7, 1.35, 1.0)], None)])
    base, new = one(1.0), one(1.1)
    (row,) = gate.compare_runs(base, new, fail_above_pct=5.0).rows
    assert row.change_pct < -5.0  # a fixed 5% threshold would fail the build
    assert row.outcome == INCONCLUSIVE and "cannot be told at this noise" in row.verdict.reason


def test_files_of_one_block_are_inconclusive_not_failed(files):
    result = gate.compare_files(files["block"], files["block_copy"], fail_above_pct=5.0)
    assert set(outcomes(result).values()) == {INCONCLUSIVE}
    assert all("one round" in r.verdict.reason for r in result.rows)
    assert main(["compare", files["block"], files["block_copy"], "--fail-above", "5"]) == 0


def test_speed_up_passes(files):
    result = gate.compare_files(files["slow"], files["base"], fail_above_pct=5.0)  # the other way round
    faster = [r for r in result.rows if r.base.model == "efficientnet_b0"]
    assert all(r.outcome == PASS and r.change_pct > 20 for r in faster) and not result.failed()


def test_normalized_verdicts_survive_a_constant_machine_factor(files):
    """Raw files on a 15% slower machine: without normalization clean entries fail; relative to a
    reference timed in the same rounds, only the slowed model does."""
    ref = "levit_128s/torch"
    copy_ = gate.compare_files(files["base_raw"], files["copy_raw"], ref, fail_above_pct=5.0)
    assert copy_.outcome != FAIL
    slow = gate.compare_files(files["base_raw"], files["slow_raw"], ref, fail_above_pct=5.0)
    assert {r.base.model for r in slow.with_outcome(FAIL)} == {"efficientnet_b0"}
    assert main(["compare", files["base_raw"], files["copy_raw"], "--fail-above", "5", "--normalize-by", ref]) == 0


def test_reference_entry_is_shown_but_not_gated():
    base = simulated_run(0, canary=False)
    new = simulated_run(9, {"levit_128s": 1.5}, canary=False)  # only the reference model got slower
    result = gate.compare_runs(base, new, normalize_by="levit_128s", fail_above_pct=5.0)  # backend: torch
    refs = [r for r in result.rows if (r.base.model, r.base.backend) == ("levit_128s", "torch")]
    assert refs and all(not r.gated and r.outcome == gate.REFERENCE for r in refs)
    assert all(r.base_relative == pytest.approx(1.0) and r.new_relative == pytest.approx(1.0) for r in refs)
    assert not any(r in result.with_outcome(FAIL) for r in refs) and result.outcome != FAIL
    # relative to a slower reference, everything else now looks faster (and passes)
    assert {r.outcome for r in result.rows if r.base.model == "efficientnet_b0"} == {PASS}
    assert all(r.change_pct > 30 for r in result.rows if r.base.model == "efficientnet_b0")


def test_normalization_uses_the_reference_median_of_the_same_setting():
    rng = np.random.default_rng(4)
    samples = 0.01 * rng.lognormal(0, 0.02, 20)
    run = make_record([ok_entry("levit_128s", "torch", 1, samples), ok_entry("deit_tiny", "torch", 1, samples * 2),
                       ok_entry("levit_128s", "torch", 4, samples * 2), ok_entry("deit_tiny", "torch", 4, samples * 2)])
    ref = gate.reference_entry(run, ("levit_128s", "torch"), Conditions("cpu", "fp32", 4, 2))
    assert (ref.model, ref.batch_size) == ("levit_128s", 4)  # measured at the setting asked, not batch 1
    result = gate.compare_runs(run, run, normalize_by="levit_128s/torch")
    assert result.outcome == INCONCLUSIVE  # one block each
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


def test_markdown_output_has_the_decision_a_table_and_the_reasons(files, capsys):
    assert main(["compare", files["base"], files["slow"], "--markdown", "--fail-above", "5"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("**gate --fail-above 5%: FAIL (efficientnet_b0/")
    assert "| model | backend |" in out and "|---|" in out and "| figures |" in out
    assert out.count("| FAIL |") == 4 and out.count("| canary |") == len(SPEEDS) * len(BATCHES)  # the figures tested
    assert "beyond the 5% that matters" in out


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


@pytest.mark.parametrize("args", [["--fail-above", "-3"], ["--fail-above", "lots"], ["--fail-above", "100"],
                                  ["--alpha", "2"], ["--normalize-by", "a/b/c"], ["--inconclusive", "maybe"]])
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
    e.timing.images_per_call = 16  # e.g. OpenVINO async: 4 requests of batch 4 per call
    assert np.concatenate(gate.relative_rounds(e, None)) == pytest.approx([0.005] * 3)


def test_compare_refuses_an_ab_file_whose_entries_have_two_sides():
    base, new = ok_entry("levit_128s", "torch", 16, [0.01] * 6), ok_entry("levit_128s", "torch", 16, [0.01] * 6)
    base.side, new.side = "base", "new"
    ab = make_record([base, new])
    one = make_record([ok_entry("levit_128s", "torch", 16, [0.01] * 6)])
    with pytest.raises(UserError, match="both sides of a `levit-bench ab` job"):
        gate.compare_runs(one, ab)
    assert gate.compare_runs(one, make_record([ok_entry("levit_128s", "torch", 16, [0.01] * 6)])).rows
