"""Issue 20: one identity of what was measured — embedded in every record type, keyed once;
entries timed with other attention kernels or input sizes never match; compare refuses runs from
different machines or libraries unless normalized; files of earlier layouts still load, report and
compare."""
from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from levit_bench import gate, report
from levit_bench.accuracy_record import AccuracyRecord
from levit_bench.cli import main
from levit_bench.errors import UserError
from levit_bench.profiling import Profile
from levit_bench.report.document import build_report
from levit_bench.entry_parts import Timing
from levit_bench.results import SCHEMA_VERSION, Entry, load
from levit_bench.spec import Identity, RuntimeOptions
from levit_bench.sysinfo import machine_differences

from .test_gate import SYSTEM, base_record, flat_file, make_record, ok_entry, rescaled

FIXTURES = Path(__file__).parent / "fixtures"


def _write(record, path: Path) -> Path:
    path.write_text(json.dumps(record.to_dict()))
    return path


def test_every_record_type_carries_the_same_identity():
    ident = Identity("levit_128s", "onnxruntime", "cpu", "fp32", 1, 16, 224, RuntimeOptions(), "abc123")
    entry = Entry(ident)
    acc = AccuracyRecord(ident, "ok", top1=1.0)
    prof = Profile(ident)
    for record in (entry, acc, prof):
        assert record.identity is ident and record.model == "levit_128s" and record.variant == "onnxruntime"
    assert entry.label() == acc.label() == ident.label()
    # the flat file form round-trips, identity included (weights hash, image size, options)
    assert Entry.from_dict(json.loads(json.dumps(entry.to_dict()))).identity == ident
    assert AccuracyRecord.from_dict(json.loads(json.dumps(acc.to_dict()))).identity == ident
    assert Profile.from_dict(json.loads(json.dumps(prof.to_dict()))).identity == ident


def test_sdpa_attention_is_part_of_the_identity():
    sdpa = Identity("levit_256", "torch", "cuda", "fp16", 8, 256, 224, RuntimeOptions(attention="sdpa"))
    matmul = dataclasses.replace(sdpa, options=RuntimeOptions(attention="matmul"))
    assert sdpa.key != matmul.key and "sdpa attention" in sdpa.variant
    # a CUDA run asks for SDPA unless told otherwise; a CPU run for matmul
    assert RuntimeOptions.for_device("cuda", {}).attention == "sdpa"
    assert RuntimeOptions.for_device("cpu", {}).attention == "matmul"
    assert RuntimeOptions.for_device("cuda", {"attention": "matmul"}).attention == "matmul"


def test_entries_with_and_without_sdpa_never_match_in_compare_or_report(tmp_path):
    rng = np.random.default_rng(3)
    base = ok_entry("levit_256", "torch", 16, 16 * 0.01 * rng.lognormal(0, 0.02, 10), device="cuda", precision="fp16")
    new = ok_entry("levit_256", "torch", 16, 16 * 0.01 * rng.lognormal(0, 0.02, 10), device="cuda", precision="fp16")
    new.identity = dataclasses.replace(new.identity, options=RuntimeOptions(attention="sdpa"))
    with pytest.raises(UserError, match="no entry was measured successfully in both"):
        gate.compare_runs(make_record([base]), make_record([new]))
    [machine] = report.group_by_machine([make_record([base, new])])
    assert len({s.entry.key for s in machine.entries}) == 2


def test_entries_of_other_input_sizes_never_match():
    rng = np.random.default_rng(4)
    a = ok_entry("levit_256", "torch", 16, 16 * 0.01 * rng.lognormal(0, 0.02, 10))
    b = ok_entry("levit_256", "torch", 16, 16 * 0.01 * rng.lognormal(0, 0.02, 10))
    b.identity = dataclasses.replace(b.identity, img_size=384)
    assert a.key != b.key and "@384px" in b.label() and "px" not in a.label()


@pytest.mark.parametrize("fact, value, words", [
    ("cpu", "Other CPU", "cpu Synthetic CPU vs Other CPU"),
    ("cpu_flags", ["avx2", "avx512f"], "cpu flags"),
    ("physical_cores", 8, "physical cores 2 vs 8"),
    ("versions", {"torch": "2.5"}, "torch 2.4 vs 2.5"),
])
def test_compare_refuses_runs_of_different_machines_unless_normalized(tmp_path, capsys, fact, value, words):
    base = base_record(seed=1)
    new = rescaled(base)
    system = copy.deepcopy(SYSTEM)
    system[fact] = value
    if fact == "cpu_flags":
        base.system["cpu_flags"] = ["avx2"]
    new.system = system
    a, b = _write(base, tmp_path / "a.json"), _write(new, tmp_path / "b.json")
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different machines or libraries" in err[0] and words in err[0]
    assert main(["compare", str(a), str(b), "--normalize-by", "levit_128s/torch"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # (the terminal wraps lines)
    assert "the machines differ" in out and words in out


def test_the_hostname_and_levit_bench_itself_may_differ():
    other = copy.deepcopy(SYSTEM)
    other["hostname"] = "another-runner"
    other["versions"] = {**other["versions"], "levit-bench": "9.9"}
    other["git_commit"] = "deadbeef"
    assert machine_differences(SYSTEM, other) == []


@pytest.mark.parametrize("name", ["results-v1-2026-11-27.json", "results-v2-2026-12-01.json",
                                  "results-v3-2026-12-02.json", "results-v6-2026-12-02.json"])
def test_files_of_earlier_layouts_load_report_and_compare(tmp_path, capsys, monkeypatch, name):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    path = tmp_path / "old" / "results.json"
    shutil.copy(FIXTURES / name, path)
    record = load(path)
    assert record.results and all(isinstance(e.identity, Identity) for e in record.results)
    assert any(e.ok for e in record.results) and all(e.ok == (e.timing is not None) for e in record.results)
    # saved again, it is a file of this version (entries in parts) with the same identities and figures
    again = tmp_path / "new" / "results.json"
    record.save(again)
    data = json.loads(again.read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 7
    assert all({"export", "timing", "explain"} <= set(e) and "samples_s" not in e for e in data["results"])
    reread = load(again)
    assert [e.identity for e in reread.results] == [e.identity for e in record.results]
    assert [e.timing and e.timing.samples_s for e in reread.results] == [e.timing and e.timing.samples_s
                                                                       for e in record.results]
    reports = []
    for folder in ("old", "new"):  # the same report from either layout
        monkeypatch.chdir(tmp_path / folder)
        assert main(["report", "results.json", "-o", "report.md"]) == 0
        reports.append(Path("report.md").read_text())
    assert reports[0].strip() and reports[0] == reports[1]
    assert main(["compare", str(path), str(again)]) == 0
    compared = gate.compare_files(path, again)  # the old file against the new one: every measured entry matched
    assert sorted(str(r.key) for r in compared.rows) == sorted(str(e.key) for e in record.results if e.ok)
    assert all(r.verdict.ratio == pytest.approx(1.0) for r in compared.rows)


def test_a_file_of_this_version_round_trips(tmp_path):
    """Saved, loaded and turned back into dicts: the same file (parts, unknown keys and all)."""
    record = load(FIXTURES / "results-v6-2026-12-02.json")
    first = tmp_path / "v7.json"
    record.save(first)
    data = json.loads(first.read_text())
    data["results"][0]["future_field"] = 1
    data["results"][0]["timing"]["future_timing"] = [1, 2]
    data["results"][0]["export"]["notes"] = ["a key the export part does not write"]  # a field it leaves out
    first.write_text(json.dumps(data))
    loaded = load(first)
    assert loaded.to_dict() == data
    second = tmp_path / "again.json"
    loaded.save(second)
    assert json.loads(second.read_text()) == data
    assert [Entry.from_dict(e).to_dict() for e in data["results"]] == [e.to_dict() for e in loaded.results]


@pytest.mark.parametrize("change, says", [
    (lambda t: t["samples_s"].__setitem__(1, float("nan")), "timing.samples_s[1] is nan; call times must be finite"),
    (lambda t: t["samples_s"].__setitem__(1, "x"), "results/0/timing/samples_s/1: 'x' is not of type 'number'"),
    (lambda t: t.__setitem__("images_per_second", -1.0), "results/0/timing/images_per_second"),
    (lambda t: t["rounds"][0].update(calls=t["rounds"][0]["calls"] + 1), "its rounds hold"),
    (lambda t: t.__setitem__("images_per_call", None), "results/0/timing/images_per_call: None is not of type 'integer'"),
    (lambda t: t.__setitem__("images_per_call", 0), "results/0/timing/images_per_call: 0 is less than the minimum of 1"),
])
def test_a_file_of_this_version_names_bad_timings_at_their_key(tmp_path, change, says):
    data = base_record().to_dict()
    for e in data["results"]:
        e["timing"]["rounds"] = [{"round": 0, "position": 0, "start_s": 0.0, "calls": len(e["timing"]["samples_s"])}]
    change(data["results"][0]["timing"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=re.escape(says)):
        load(path)


def test_every_committed_results_file_loads_reports_and_round_trips(tmp_path):
    """Every levit-bench results file the repository holds (results/, the fixtures, docs/perf) passes
    this version's schema and loader, and what it loads saves and loads again unchanged."""
    root = Path(__file__).parent.parent
    found = 0
    for path in sorted([*root.glob("results/**/*.json"), *FIXTURES.glob("**/*.json"), *root.glob("docs/**/*.json")]):
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        if not (isinstance(data, dict) and data.get("tool") == "levit-bench" and "results" in data):
            continue
        found += 1
        record = load(path)
        again = tmp_path / f"{found}.json"
        record.save(again)
        assert load(again).to_dict() == record.to_dict(), path
        assert build_report([record], plot_name=None).markdown.strip(), path
    assert found >= 10  # results/, fixtures of every readable schema, the rerun studies


def test_cuda_torch_entries_of_earlier_files_are_read_as_sdpa(tmp_path):
    record = make_record([ok_entry("levit_256", "torch", 16, np.full(5, 0.16), device="cuda", precision="fp16")])
    data = flat_file(record.to_dict(), 2)
    del data["results"][0]["options"]["attention"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    assert load(path).results[0].runtime_options.attention == "sdpa"


def test_the_parity_call_is_the_runners_first_call(monkeypatch):
    """Issue 20 item 8: a run does not make a second 'first call': the parity check's is counted."""
    from levit_bench.harness import TimingOptions, warm_up

    calls = []
    warm = warm_up(lambda: calls.append(1), TimingOptions(warmup_s=0.0, warmup_calls=2), first_call_s=0.5)
    assert warm.first_call_s == 0.5 and len(calls) == warm.calls >= 1  # the warm-up calls only
    calls.clear()
    warm = warm_up(lambda: calls.append(1), TimingOptions(warmup_s=0.0, warmup_calls=2))
    assert len(calls) == warm.calls + 1  # without one: a first call of its own, then the warm-up



def test_an_entry_faster_than_the_cached_peak_gets_no_share_of_it():
    """A peak cached while the machine was loaded (seen this round: 5.0 GMAC/s) made a later run show
    '217%' of it: a model cannot outrun the dense GEMM, so such a peak is refused, with the reason."""
    entry = Entry(Identity("levit_256", "openvino", "cpu", "fp32", 2, 16, 224), "ok",
                  timing=Timing(images_per_second=20.0, images_per_call=16))
    entry.add_explain(1_126_000_000, 18_000_000, peak_gmacs_per_s=5.0)
    x = entry.explain
    assert x.gmacs_per_s > 5.0 and x.efficiency is None and x.peak_gmacs_per_s is None
    assert any("above the cached GEMM peak" in n for n in entry.notes)
    fine = Entry(Identity("levit_256", "openvino", "cpu", "fp32", 2, 16, 224), "ok",
                 timing=Timing(images_per_second=20.0, images_per_call=16))
    fine.add_explain(1_126_000_000, 18_000_000, peak_gmacs_per_s=48.0)
    assert fine.explain.efficiency == pytest.approx(fine.explain.gmacs_per_s / 48.0)
