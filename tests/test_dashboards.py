"""CI outputs (issue 23, item 7): the github-action-benchmark (customBiggerIsBetter) and Bencher
Metric Format exports checked against each format's schema, the Markdown summary written to a file
and appended to $GITHUB_STEP_SUMMARY, for compare and history; bad formats and targets exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from levit_bench import dashboards
from levit_bench.cli import main
from levit_bench.results import load

ROOT = Path(__file__).resolve().parent.parent
QUIET = ROOT / "docs/perf/rerun-study-2026-12-02-quiet"
BASE, NEW = QUIET / "run1.json", QUIET / "run2.json"  # two real runs with the canary, one machine
RAW = ROOT / "tests/fixtures/results-v2-2026-12-01.json"  # a real run without it

#: github-action-benchmark's ``BenchmarkResult`` (src/extract.ts): what a customBiggerIsBetter file lists
BENCHMARK_ACTION_SCHEMA = {
    "type": "array", "minItems": 1,
    "items": {"type": "object", "required": ["name", "unit", "value"], "additionalProperties": False,
              "properties": {"name": {"type": "string", "minLength": 1}, "unit": {"type": "string"},
                             "value": {"type": "number"}, "range": {"type": "string"},
                             "extra": {"type": "string"}}},
}
#: the Bencher Metric Format's JSON schema (https://bencher.dev/bmf.json, draft-07)
BMF_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema", "type": "object",
    "patternProperties": {".+": {"type": "object", "patternProperties": {".+": {
        "type": "object", "required": ["value"],
        "properties": {"value": {"type": "number"}, "lower_value": {"type": "number"},
                       "upper_value": {"type": "number"}}}}}},
}


def named(path: Path) -> list:
    return [(e.label(), e) for e in load(path).results if e.ok]


def test_benchmark_action_export_follows_its_format_with_both_figures():
    entries = named(NEW)
    data = json.loads(dashboards.export_text("benchmark-action", entries, "abc1234"))
    jsonschema.validate(data, BENCHMARK_ACTION_SCHEMA)
    names = [b["name"] for b in data]
    assert len(names) == len(set(names)) == 2 * len(entries)  # raw and canary-adjusted, each its own series
    by_name = {b["name"]: b for b in data}
    for label, e in entries:
        raw, adj = by_name[label], by_name[label + " (canary-adjusted)"]  # a file from before the on-CPU share
        assert raw["value"] == pytest.approx(e.timing.images_per_second)
        assert adj["value"] == pytest.approx(e.timing.adjusted_images_per_second)
        assert raw["unit"] == "images/s" and raw["range"].startswith("± ")
        lo, hi = e.timing.ci95
        assert float(raw["range"][2:]) == pytest.approx((hi - lo) / 2, rel=1e-3)
        assert "raw images/s" in raw["extra"] and "canary-adjusted" in adj["extra"] and "abc1234" in raw["extra"]


def test_bencher_export_follows_the_bencher_metric_format():
    entries = named(NEW)
    data = json.loads(dashboards.export_text("bencher", entries))
    jsonschema.validate(data, BMF_SCHEMA)
    assert set(data) == {label for label, _ in entries}
    for label, e in entries:
        m = data[label]
        assert set(m) == {"throughput", "throughput-adjusted"}
        t = m["throughput"]
        assert t["lower_value"] <= t["value"] <= t["upper_value"]
        assert t["value"] == pytest.approx(e.timing.images_per_second)
        a = m["throughput-adjusted"]
        assert a["lower_value"] <= a["value"] <= a["upper_value"]
        assert a["value"] == pytest.approx(e.timing.adjusted_images_per_second)


def test_a_run_without_the_canary_exports_the_raw_figure_only():
    entries = named(RAW)
    bmf = json.loads(dashboards.export_text("bencher", entries))
    assert all(set(m) == {"throughput"} for m in bmf.values())
    ba = json.loads(dashboards.export_text("benchmark-action", entries))
    jsonschema.validate(ba, BENCHMARK_ACTION_SCHEMA)
    assert len(ba) == len(entries)


def test_compare_writes_markdown_exports_and_appends_the_step_summary(tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv(dashboards.STEP_SUMMARY, str(summary))
    md, bmf, ba = tmp_path / "c.md", tmp_path / "bmf.json", tmp_path / "ba.json"
    code = main(["compare", str(BASE), str(NEW), "--markdown", str(md), "--export", "bencher", str(bmf),
                 "--export", "benchmark-action", str(ba)])
    assert code == 0
    text = md.read_text()
    assert text.startswith("**") and "| model | backend |" in text
    assert summary.read_text() == "earlier step\n" + text  # appended, not replaced
    assert "new img/s" in capsys.readouterr().out  # the terminal table still printed
    jsonschema.validate(json.loads(bmf.read_text()), BMF_SCHEMA)
    jsonschema.validate(json.loads(ba.read_text()), BENCHMARK_ACTION_SCHEMA)
    assert set(json.loads(bmf.read_text())) == {label for label, _ in named(NEW)}  # the new run's figures
    assert main(["compare", str(BASE), str(NEW), "--markdown"]) == 0  # without FILE: Markdown on stdout
    assert capsys.readouterr().out == text
    assert summary.read_text() == "earlier step\n" + text + text


def test_history_exports_the_newest_file_and_appends_the_step_summary(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv(dashboards.STEP_SUMMARY, str(summary))
    bmf, md = tmp_path / "bmf.json", tmp_path / "h.md"
    assert main(["history", str(BASE), str(QUIET / "run3.json"), str(NEW), "--markdown", str(md),
                 "--export", "bencher", str(bmf)]) == 0
    assert summary.read_text() == md.read_text() and md.read_text().startswith("**History of 3 results files")
    newest = max((load(p) for p in (BASE, NEW, QUIET / "run3.json")), key=lambda r: r.created)
    data = json.loads(bmf.read_text())
    jsonschema.validate(data, BMF_SCHEMA)
    assert {k: v["throughput"]["value"] for k, v in data.items()} == \
        pytest.approx({e.label(): e.timing.images_per_second for e in newest.results if e.ok})


def test_bad_formats_and_targets_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    results = tmp_path / "results.json"
    results.write_bytes(NEW.read_bytes())
    for args in (["--export", "csv", str(tmp_path / "x.csv")], ["--markdown", str(tmp_path / "folder")],
                 ["--export", "bencher"], ["--export", "bencher", str(results)], ["--markdown", str(results)]):
        capsys.readouterr()
        assert main(["compare", str(BASE), str(NEW), *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("levit-bench: error:") and "Traceback" not in "\n".join(err), args
    assert results.read_bytes() == NEW.read_bytes()  # a results file is never written over
    capsys.readouterr()
    assert main(["history", "--markdown", str(BASE), str(NEW)]) == 2  # FILE taken from the results: refused
    assert "not written to a .json file" in capsys.readouterr().err
