"""Issue 13 in the results: GMAC/s and efficiency arithmetic, energy counters and records."""
from __future__ import annotations

import itertools

import pytest

from levit_bench import energy
from levit_bench.harness import TimingOptions
from levit_bench.present import fmt_efficiency, most_efficient
from levit_bench.spec import Identity
from levit_bench.entry_parts import Timing
from levit_bench.results import Entry
from levit_bench.schedule import Schedule, Timed, run_rounds, warm
from levit_bench.spec import Status


def _ok_entry(ips: float, batch: int = 16) -> Entry:
    e = Entry(Identity("levit_256", "onnxruntime", "cpu", "fp32", 1, batch, 224))
    e.status, e.timing = Status.OK, Timing(images_per_second=ips, images_per_call=batch)
    return e


def test_efficiency_arithmetic_on_a_synthetic_entry():
    # 1,120 M MACs per image at 50 images/s is 56 GMAC/s; against a 224 GMAC/s peak that is 25%
    e = _ok_entry(50.0)
    e.add_explain(1_120_000_000, 18_900_000, 224.0)
    assert e.explain.gmacs_per_s == pytest.approx(56.0)
    assert e.explain.efficiency == pytest.approx(0.25)
    assert (e.explain.macs, e.explain.params, e.explain.peak_gmacs_per_s) == (1_120_000_000, 18_900_000, 224.0)
    assert fmt_efficiency(e) == "56.0 (25%)"


def test_the_adjusted_efficiency_compares_the_adjusted_speed_with_the_peak_scaled_alike():
    """A run whose median canary was 1.2 ms against a 1.0 ms machine reference: its adjusted speed is
    its raw one x1.2 (the within-run deviation aside), so the peak it is a share of is scaled x1.2 too
    (against the raw peak, 90% raw would read 108% adjusted)."""
    e = _ok_entry(50.0)
    e.timing.adjusted_images_per_second = 60.0
    e.timing.canary = {"name": "blend", "reference_s": 0.0010, "run_s": 0.0012}
    e.add_explain(1_120_000_000, 18_900_000, 62.0)  # raw: 56 of 62 GMAC/s
    assert e.explain.efficiency == pytest.approx(56.0 / 62.0)
    assert e.timing.canary["adjusted_gmacs_per_s"] == pytest.approx(67.2)
    assert e.timing.canary["adjusted_efficiency"] == pytest.approx(67.2 / (62.0 * 1.2))
    assert e.timing.canary["adjusted_efficiency"] < 1.0
    older = _ok_entry(50.0)  # a canary record without the run's factor: the raw peak, as before
    older.timing.adjusted_images_per_second, older.timing.canary = 60.0, {"name": "blend", "reference_s": 0.001}
    older.add_explain(1_120_000_000, 18_900_000, 224.0)
    assert older.timing.canary["adjusted_efficiency"] == pytest.approx(67.2 / 224.0)


def test_no_peak_no_efficiency_and_unmeasured_entries_get_no_speed():
    e = _ok_entry(50.0)
    e.add_explain(1_000_000_000, 10, None)
    assert e.explain.gmacs_per_s == pytest.approx(50.0) and e.explain.efficiency is None
    assert fmt_efficiency(e) == "50.0"
    failed = Entry(Identity("levit_256", "openvino", "cpu", "fp32", 1, 16, 224))
    failed.status = Status.FAILED
    failed.add_explain(1_000_000_000, 10, 224.0)
    x = failed.explain
    assert x.macs == 1_000_000_000 and x.gmacs_per_s is None and x.efficiency is None
    assert fmt_efficiency(failed) == "—"


def test_most_efficient_picks_the_highest_gmacs():
    slow, fast = _ok_entry(10.0, 1), _ok_entry(40.0, 16)
    for e in (slow, fast):
        e.add_explain(10**9, 1, 100.0)
    assert most_efficient([slow, fast]) is fast
    assert most_efficient([Entry(Identity("m", "torch", "cpu", "fp32", 1, 1))]) is None


def _zone(root, name, domain, uj, span):
    z = root / name
    z.mkdir()
    (z / "name").write_text(domain + "\n")
    (z / "energy_uj").write_text(f"{uj}\n")
    (z / "max_energy_range_uj").write_text(f"{span}\n")
    return z


def test_rapl_sums_package_domains_and_handles_wraparound(tmp_path, monkeypatch):
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 990_000, 1_000_000)
    p1 = _zone(tmp_path, "intel-rapl:1", "package-1", 5_000, 1_000_000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 123, 1_000_000)  # a sub-domain: already in its package
    _zone(tmp_path, "intel-rapl:2", "psys", 0, 1_000_000)  # not a package
    monkeypatch.setenv(energy.POWERCAP_ENV, str(tmp_path))
    counter = energy.open_counter("cpu")
    assert not isinstance(counter, str), counter
    assert counter.source == "RAPL package-0+package-1"
    assert counter.read_j() == 0.0
    (p0 / "energy_uj").write_text("20000\n")  # wrapped: 990,000 -> 1,000,000 -> 20,000 is 30,000 uJ
    (p1 / "energy_uj").write_text("15000\n")  # 10,000 uJ
    assert counter.read_j() == pytest.approx(0.04)


def test_no_counter_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv(energy.POWERCAP_ENV, str(tmp_path / "absent"))
    reason = energy.open_counter("cpu")
    assert isinstance(reason, str) and "does not exist" in reason
    monkeypatch.setenv(energy.POWERCAP_ENV, str(tmp_path))
    assert "no RAPL package domain" in energy.open_counter("cpu")
    assert energy.energy_record([1.0], 1.0, 10, reason) == {"unavailable": reason}


class _FakeCounter:
    """A counter that advances 1 J per read: 1 J between the two reads around each block."""

    source, scope = "fake", "test"

    def __init__(self):
        self._reads = itertools.count()

    def read_j(self) -> float:
        return float(next(self._reads))  # +1 J between the reads around each block


def test_rounds_meter_every_block_and_the_record_divides_by_images():
    timing = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=6, rewarm_s=0.0)
    item = Timed("x", lambda: sum(range(100)), lambda: None, False)
    warm(item, timing)
    done = run_rounds([item], timing, Schedule(3, 0), energy=_FakeCounter())
    assert done == 3 and item.energy_j == [1.0, 1.0, 1.0] and item.metered_s > 0
    calls = sum(r.calls for r in item.rounds)
    assert item.metered_calls == calls
    rec = energy.energy_record(item.energy_j, item.metered_s, calls * 16, _FakeCounter())
    assert rec["joules_per_image"] == pytest.approx(3.0 / (calls * 16))
    assert rec["watts"] == pytest.approx(3.0 / item.metered_s)
    assert rec["source"] == "fake"


def test_a_counter_that_does_not_advance_is_not_a_figure():
    rec = energy.energy_record([0.0, 0.0], 1.0, 32, _FakeCounter())
    assert "did not advance" in rec["unavailable"]


def test_report_and_terminal_show_counted_macs_and_efficiency():
    from rich.console import Console

    from levit_bench import report
    from levit_bench.cli import render

    from .test_gate import make_record, ok_entry

    entries = [ok_entry("levit_192", b, 16, [16 / ips] * 8, threads=1) for b, ips in (("torch", 40.0), ("openvino", 80.0))]
    for e in entries:
        e.add_explain(656_600_000, 10_528_280, 105.0)  # openvino: 52.5 GMAC/s, half of the peak
    md = report.build_report([make_record(entries)], plot_name=None).markdown
    assert "GMAC/s (% of peak)" in md and "52.5 (50%) openvino, b16" in md  # the model's most efficient entry
    assert "| levit_192 | cpu |" in md and "657M" in md  # counted MACs beside the published 658M
    con = Console(width=250, record=True)
    con.print(render.results_table(entries))
    text = con.export_text()
    assert "52.5 (50%)" in text and "26.3 (25%)" in text


@pytest.mark.slow
def test_run_records_macs_efficiency_and_why_there_is_no_energy(tmp_path, monkeypatch):
    from levit_bench.cli import main
    from levit_bench.results import load

    monkeypatch.setenv(energy.POWERCAP_ENV, str(tmp_path / "no-powercap"))
    out = tmp_path / "r.json"
    cache = ["--cache-dir", str(tmp_path / "cache")]
    run = ["--model", "levit_128s", "--backend", "torch", "--batch-size", "1", "--threads", "1", "--min-time", "0.05",
           "--warmup", "0", "--min-calls", "3", "--rounds", "2", *cache, "--quiet"]
    assert main(run + ["--out", str(tmp_path / "no-peak.json")]) == 0  # a short run measures no peak
    quick = load(tmp_path / "no-peak.json").results[0]
    assert quick.explain.gmacs_per_s > 0 and quick.explain.efficiency is None and quick.explain.peak_gmacs_per_s is None
    assert main(["sysinfo", "--peak", "--threads", "1", "--min-time", "0.05", "--size", "256", *cache]) == 0
    assert main(run + ["--out", str(out)]) == 0  # the same run, now with the peak cached
    e = load(out).results[0]
    x = e.explain
    assert e.ok and x.macs == pytest.approx(305e6, rel=0.02) and x.params > 7e6
    assert x.gmacs_per_s == pytest.approx(x.macs * e.timing.images_per_second / 1e9)
    assert x.peak_gmacs_per_s > 0 and x.efficiency == pytest.approx(x.gmacs_per_s / x.peak_gmacs_per_s)
    assert "does not exist" in e.energy["unavailable"]


@pytest.mark.slow
def test_profile_out_is_a_results_file_the_report_draws(tmp_path):
    """``profile --out`` keeps the profiles with the machine's facts; the report puts them in a
    figure and a table under that machine, and never replaces the file unasked."""
    from levit_bench.cli import main
    from levit_bench.results import load

    out = tmp_path / "prof.json"
    argv = ["profile", "--model", "levit_128s", "--backend", "torch", "--threads", "1", "--batch-size", "1",
            "--calls", "3", "--min-time", "0.05", "--warmup", "0.01", "--cache-dir", str(tmp_path / "c"),
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    record = load(out)
    assert record.results == [] and record.system["cpu"] and len(record.profiles) == 1
    assert record.profiles[0]["model"] == "levit_128s" and record.profiles[0]["coverage"] >= 0.9
    assert main(argv) == 2  # exists: never replaced without --force
    assert main(["report", str(out), "-o", str(tmp_path / "R.md")]) == 0
    md = (tmp_path / "R.md").read_text()
    assert "### Where the time goes" in md and "![share of op time per category](R-profile-1.png)" in md
    assert "| levit_128s | torch | fp32, batch 1, 1 thread |" in md and "(+ 1 profiles)" in md
    assert (tmp_path / "R-profile-1.png").read_bytes()[:4] == b"\x89PNG"


class _BrokenCounter:
    source, scope = "broken", "test"

    def read_j(self) -> float:
        raise OSError("counter gone")


def test_a_counter_that_fails_costs_the_energy_figure_not_the_entry():
    timing = TimingOptions(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, min_calls=4, rewarm_s=0.0)
    item = Timed("x", lambda: sum(range(100)), lambda: None, False)
    warm(item, timing)
    assert run_rounds([item], timing, Schedule(2, 0), energy=_BrokenCounter()) == 2
    assert item.error is None and len(item.rounds) == 2 and item.energy_j == [] and item.metered_calls == 0
    assert "no timed block was metered" in energy.energy_record(item.energy_j, item.metered_s, 0, _BrokenCounter())["unavailable"]
