"""levit-bench history (issue 23): change points on series built from real results files, samples
scaled with seeded per-file and per-entry noise like a rerun's; the detector's false-alarm rate and
power on simulated series of known truth; machines kept apart; --fail-on-change's "newest" rule;
the PNG, the HTML page rendered in headless Chromium, the Markdown, and bad input (exit 2)."""
from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import subprocess
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from levit_bench import history as hist
from levit_bench.cli import main
from levit_bench.cli.history import history_markdown
from levit_bench.spec import Identity

ROOT = Path(__file__).resolve().parent.parent
#: a real run with the canary (18 entries, 6 rounds each): the adjusted figure
ADJUSTED_SOURCE = ROOT / "docs/perf/rerun-study-2026-12-02-quiet/run1.json"
#: real runs without it: the raw figure (schema 2, 6 rounds, 24 entries; and a small one of 3 rounds)
RAW_SOURCE = ROOT / "results/epyc-2core-cpu-int8-2026-11-27.json"
SMALL_RAW_SOURCE = ROOT / "tests/fixtures/results-v2-2026-12-01.json"
FILE_SD, ENTRY_SD = 0.02, 0.02  # a rerun's noise: a per-file factor and a per-entry one, log SD


def commit_of(i: int) -> str:
    return hashlib.sha1(f"commit {i}".encode()).hexdigest()


def scaled(data: dict, factors: list[float]) -> dict:
    """A copy of a results file with entry k's call times multiplied by ``factors[k]`` (and every
    figure derived from them divided by it): a slower or faster code, the same machine and canary."""
    d = copy.deepcopy(data)
    for e, f in zip(d["results"], factors):
        e["samples_s"] = [x * f for x in e["samples_s"]]
        for k in ("images_per_second", "adjusted_images_per_second"):
            if e.get(k):
                e[k] /= f
        if e.get("ci95"):
            e["ci95"] = [x / f for x in e["ci95"]]
        for iv in (e.get("intervals") or {}).values():
            iv["images_per_second"] = [x / f for x in iv["images_per_second"]]
    return d


def write_series(folder: Path, seed: int, *, source: Path = ADJUSTED_SOURCE, n: int = 12,
                 step_at: int | None = None, step: float = -0.15, file_sd: float = FILE_SD,
                 entry_sd: float = ENTRY_SD) -> list[Path]:
    """``n`` results files made from ``source``'s real entries, one a day, each with its own commit;
    from file ``step_at`` (1-based) on, every entry's images/s is ``step`` off (-0.15: 15% slower)."""
    data = json.loads(source.read_text())
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, n + 1):
        file_factor = rng.lognormal(0.0, file_sd)
        speed = (1.0 + step) if step_at is not None and i >= step_at else 1.0
        factors = [file_factor * rng.lognormal(0.0, entry_sd) / speed for _ in data["results"]]
        d = scaled(data, factors)
        d["created"] = datetime(2026, 12, i, 3, 0, tzinfo=timezone.utc).isoformat()
        d["system"]["git_commit"] = commit_of(i)
        paths.append(folder / f"run-{i:02d}.json")
        paths[-1].write_text(json.dumps(d))
    return paths


# ---------------------------------------------------------------------------------------------
# the done-when series: a 15% step at file 8 of 12, found exactly, with its commit range


@pytest.mark.parametrize("seed", range(4))
def test_a_15_percent_step_at_file_8_is_found_exactly_with_its_commit_range(tmp_path, seed):
    write_series(tmp_path, seed, step_at=8)
    h = hist.history([str(tmp_path)])
    (m,) = h.machines
    assert [f.commit for f in m.files] == [commit_of(i)[:7] for i in range(1, 13)]
    found = 0
    for s in m.series:
        assert s.adjusted and s.figure == "adjusted"
        if not s.change_points:  # only an entry whose own files say 15% is near what it can see
            assert s.detectable_pct > 10.0, s.label
            continue
        (cp,) = s.change_points  # exactly one change, where it was made
        assert (cp.before.commit, cp.after.commit) == (commit_of(7)[:7], commit_of(8)[:7])
        assert cp.slowdown and -21.0 < cp.step_pct < -9.0
        found += 1
    assert found >= 14  # of 18: the two openvino entries of this run state a ±14% rerun SD
    md = history_markdown(h)
    assert "slower" in md and f"between {commit_of(7)[:7]} and {commit_of(8)[:7]}" in md


@pytest.mark.parametrize("seed", range(4))
def test_the_same_noise_without_a_step_finds_no_change(tmp_path, seed):
    write_series(tmp_path, seed, step_at=None)
    h = hist.history([str(tmp_path)])
    assert not [cp for m in h.machines for s in m.series for cp in s.change_points]
    assert not h.new_slowdowns() and "no change point" in history_markdown(h)


def test_raw_figures_when_a_file_lacks_the_canary_and_their_floor(tmp_path):
    """Files without the canary: raw images/s, said so; a step below the raw rerun residual (16%) is
    not reported, a 30% one is, at its place."""
    write_series(tmp_path / "small", 0, source=RAW_SOURCE, step_at=8, step=-0.10)
    write_series(tmp_path / "big", 0, source=RAW_SOURCE, step_at=8, step=-0.30)
    small = hist.history([str(tmp_path / "small")])
    big = hist.history([str(tmp_path / "big")])
    assert all(not s.adjusted for s in small.machines[0].series)
    assert not [cp for s in small.machines[0].series for cp in s.change_points]
    for s in big.machines[0].series:
        (cp,) = s.change_points
        assert cp.after.commit == commit_of(8)[:7] and cp.step_pct < -20


def test_a_change_names_the_library_versions_that_changed_with_it(tmp_path):
    paths = write_series(tmp_path, 0, step_at=8)
    for i, p in enumerate(paths, 1):
        d = json.loads(p.read_text())
        d["system"]["versions"]["openvino"] = "2026.4.1" if i < 8 else "2026.5.0"
        p.write_text(json.dumps(d))
    h = hist.history([str(tmp_path)])
    cps = [cp for s in h.machines[0].series for cp in s.change_points]
    assert cps and all(cp.version_changes() == ["openvino 2026.4.1 → 2026.5.0"] for cp in cps)
    assert "(openvino 2026.4.1 → 2026.5.0)" in cps[0].words()


# ---------------------------------------------------------------------------------------------
# the detector on simulated series of known truth (no files: fast, many seeds)

KEY = Identity("levit_128s", "torch", "cpu", "fp32", 1, 16).key
FILES = [hist.HistoryFile(None, datetime(2026, 12, i + 1, tzinfo=timezone.utc), i) for i in range(12)]


def simulated(seed: int, noise: float, stated: float, step: float = 0.0, at: int = 7) -> hist.Series:
    y = np.random.default_rng(seed).normal(0.0, noise, len(FILES))
    y[at:] += math.log1p(step)
    s = hist.Series(KEY, [hist.Point(f, None, 100.0 * math.exp(v), stated) for f, v in zip(FILES, y)],
                    by=("canary",))  # canary-adjusted: the smallest step reported is 3.7%
    hist.detect(s, hist.DEFAULT_ALPHA, None)
    return s


@pytest.mark.parametrize("noise,stated", [(0.05, 0.05), (0.02, 0.02), (0.15, 0.05)])
def test_false_alarms_stay_below_alpha_with_the_noise_as_stated_and_three_times_more(noise, stated):
    alarms = sum(bool(simulated(seed, noise, stated).change_points) for seed in range(300))
    assert alarms / 300 <= hist.DEFAULT_ALPHA  # about 1-3% measured


def test_a_step_well_above_the_noise_is_found_at_its_place():
    hits = 0
    for seed in range(200):
        s = simulated(seed, 0.03, 0.03, step=-0.15)
        hits += len(s.change_points) == 1 and s.change_points[0].after is FILES[7]
    assert hits >= 190


def test_too_few_files_say_so():
    s = hist.Series(KEY, [hist.Point(f, None, 100.0, 0.02) for f in FILES[:3]], by=("canary",))
    hist.detect(s, hist.DEFAULT_ALPHA, None)
    assert not s.change_points and "2 files on each side" in s.note


def test_the_penalty_is_the_bonferroni_quantile_squared():
    from scipy.stats import norm

    assert hist.penalty(12, 0.05) == pytest.approx(norm.ppf(1 - 0.05 / 22) ** 2)
    assert hist.penalty(12, 0.05, estimated=True) > hist.penalty(12, 0.05)


# ---------------------------------------------------------------------------------------------
# --fail-on-change: the newest change only


@pytest.mark.slow
def test_fail_on_change_fails_on_a_slowdown_in_the_newest_files_only(tmp_path, capsys):
    write_series(tmp_path / "new", 1, step_at=11)  # the last two files slower
    write_series(tmp_path / "old", 1, step_at=8)  # slower since file 8: not new
    write_series(tmp_path / "faster", 1, step_at=11, step=+0.15)
    h = hist.history([str(tmp_path / "new")])
    assert h.new_slowdowns() and all(cp.after.commit == commit_of(11)[:7] for _m, _s, cp in h.new_slowdowns())
    assert main(["history", str(tmp_path / "new"), "--fail-on-change"]) == 1
    assert main(["history", str(tmp_path / "new")]) == 0  # without the flag: shown, exit 0
    assert main(["history", str(tmp_path / "old"), "--fail-on-change"]) == 0
    assert main(["history", str(tmp_path / "old"), "--fail-on-change", "--newest", "5"]) == 1
    assert main(["history", str(tmp_path / "faster"), "--fail-on-change"]) == 0
    assert "NEW SLOWDOWN" in main_output(capsys, ["history", str(tmp_path / "new"), "--markdown"])


# ---------------------------------------------------------------------------------------------
# machines kept apart, versions named


@pytest.mark.slow
def test_machines_are_kept_apart_and_changed_versions_named(tmp_path, capsys):
    paths = write_series(tmp_path, 2, step_at=None)
    for i, p in enumerate(paths):  # the last six on another machine, 20% faster: not a change point
        d = json.loads(p.read_text())
        d["system"]["versions"]["onnxruntime"] = "1.32.0" if i < 3 else "1.33.0"
        if i >= 6:
            d = scaled(d, [1 / 1.2] * len(d["results"]))
            d["system"]["cpu"] = "Another CPU"
        p.write_text(json.dumps(d))
    h = hist.history([str(p) for p in paths])
    assert [len(m.files) for m in h.machines] == [6, 6]
    assert "Another CPU" in h.machines[1].machine
    assert not [cp for m in h.machines for s in m.series for cp in s.change_points]
    assert h.changed_versions() == ["onnxruntime"] and h.shown_versions() == ["torch", "onnxruntime"]
    md = main_output(capsys, ["history", *map(str, paths), "--markdown"])
    assert "| # | created | commit | torch | onnxruntime | file |" in md and "| 1.33.0 |" in md


# ---------------------------------------------------------------------------------------------
# plots and the HTML page


class Nodes(HTMLParser):
    """Counts elements by class; what sits inside <script> is text to this parser, not elements, so
    only nodes that exist in the DOM (here: made by the page's script) are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: dict[str, int] = {}
        self.external: list[str] = []  # src/href of elements that would load something

    def handle_starttag(self, tag: str, attrs) -> None:  # noqa: ANN001
        a = dict(attrs)
        self.external += [a[k] for k in ("src", "href") if a.get(k) and not a[k].startswith(("#", "data:"))]
        for c in (a.get("class") or "").split():
            self.classes[f"{tag}.{c}"] = self.classes.get(f"{tag}.{c}", 0) + 1


def parsed(text: str) -> Nodes:
    p = Nodes()
    p.feed(text)
    return p


def nodes(text: str) -> dict[str, int]:
    return parsed(text).classes


@pytest.mark.slow
def test_png_and_html_are_written(tmp_path):
    write_series(tmp_path / "s", 0, step_at=8)
    png, page = tmp_path / "h.png", tmp_path / "h.html"
    assert main(["history", str(tmp_path / "s"), "--png", str(png), "--html", str(page)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert parsed(text).external == []  # plotly.js is inlined: nothing to fetch, no network
    assert text.count("<script") >= 2  # plotly.js itself and the plot's call
    assert "svg.main-svg" not in nodes(text)  # the plot is not in the static HTML: the script makes it


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no headless Chromium (apt-get install -y chromium; .ci/run does)")
def test_the_html_page_renders_its_plot_in_headless_chromium(tmp_path):
    write_series(tmp_path / "s", 0, step_at=8)
    page = tmp_path / "h.html"
    assert main(["history", str(tmp_path / "s"), "--html", str(page)]) == 0
    h = hist.history([str(tmp_path / "s")])
    series = len(h.machines[0].series)
    changes = sum(bool(s.change_points) for s in h.machines[0].series)
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180).stdout
    found = nodes(dom)
    assert found.get("svg.main-svg", 0) >= 1  # plotly drew the plot
    assert found.get("g.trace", 0) == series + changes  # one trace per entry, one per entry's change points
    assert found.get("rect.legendtoggle", 0) == series  # each entry can be hidden or shown
    assert found.get("path.point", 0) >= 12 * series  # every file's point of every entry


# ---------------------------------------------------------------------------------------------
# bad input: one line, exit 2


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text("{not json")
    only_failed = json.loads(SMALL_RAW_SOURCE.read_text())
    for e in only_failed["results"]:
        e.update(status="failed", reason="synthetic", samples_s=[], rounds=None)
    (tmp_path / "failed.json").write_text(json.dumps(only_failed))
    cases = [[str(tmp_path / "empty")], [str(tmp_path / "bad.json")], [str(tmp_path / "missing.json")],
             [str(tmp_path / "failed.json")], [str(SMALL_RAW_SOURCE), "--export", "csv", str(tmp_path / "x")],
             [str(SMALL_RAW_SOURCE), "--alpha", "2"]]
    for args in cases:
        capsys.readouterr()
        assert main(["history", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith("levit-bench: error:") and "Traceback" not in "\n".join(err), args


def test_a_folder_skips_files_that_are_not_results(tmp_path):
    write_series(tmp_path, 0, n=4)
    (tmp_path / "bmf.json").write_text(json.dumps({"x": {"throughput": {"value": 1.0}}}))
    h = hist.history([str(tmp_path)])
    assert len(h.machines[0].files) == 4 and any("bmf.json" in s for s in h.skipped)


def main_output(capsys, argv: list[str]) -> str:
    """What ``main(argv)`` printed on stdout."""
    capsys.readouterr()
    main(argv)
    return capsys.readouterr().out


def test_files_of_every_earlier_schema_make_a_history():
    """Results files must stay loadable: schema 1 (one block, no rounds), 2, 3 and 6 join a history
    (raw figures before the canary of schema 4, canary-adjusted after it)."""
    fixtures = sorted((ROOT / "tests/fixtures").glob("results-v*.json"))
    h = hist.history([str(p) for p in fixtures])
    assert sum(len(m.files) for m in h.machines) == len(fixtures)
    series = [s for m in h.machines for s in m.series]
    assert series and all(s.points for s in series)
    assert all(s.adjusted == all("results-v6-" in p.file.source for p in s.points) for s in series)
