"""Results for CI dashboards and job summaries: the benchmark-action and Bencher formats, the step summary.

Two dashboards read a JSON file of their own format, so levit-bench results plug into them:

- github-action-benchmark, ``tool: customBiggerIsBetter``: a JSON list of ``{name, unit, value}``
  with optional ``range`` and ``extra`` strings (its ``BenchmarkResult``).  Each entry gives one
  bench of raw images/s and, where the entry has an adjusted figure, one of adjusted images/s (its
  name ends in what adjusted it: ``(on-CPU- and canary-adjusted)``, or ``(canary-adjusted)`` in
  files from before the on-CPU share), so a dashboard's series never switches figure.
  ``range`` is ``± half`` the 95% confidence interval; ``extra`` says which figure, the interval,
  the rounds and the commit.
- Bencher Metric Format (BMF): ``{benchmark: {measure: {value, lower_value, upper_value}}}``: one
  benchmark per entry, the measure ``throughput`` (Bencher's built-in, operations per second: here
  images per second) with the 95% confidence interval as its bounds, and
  ``throughput-adjusted-oncpu`` where the on-CPU share and the canary adjust it
  (``throughput-adjusted``: the canary alone, in files from before the on-CPU share).

``$GITHUB_STEP_SUMMARY``, when set, names the file GitHub shows as a job's summary: the Markdown of
``compare`` and ``history`` is appended to it (GitHub's rule: each step appends).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from .atomic import atomic_write_text
from .errors import UserError
from .results import Entry

EXPORT_FORMATS = ("benchmark-action", "bencher")
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
#: each adjusted figure's series: the suffix of its benchmark-action name and its Bencher measure
#: (``Timing.adjusted_by``; a figure adjusted otherwise is another series)
ADJUSTED_SERIES = {("on_cpu", "canary"): (" (on-CPU- and canary-adjusted)", "throughput-adjusted-oncpu"),
                   ("on_cpu",): (" (on-CPU-adjusted)", "throughput-oncpu"),
                   ("canary",): (" (canary-adjusted)", "throughput-adjusted")}
RAW_SERIES = ("", "throughput")


def figures(entry: Entry) -> list[tuple[tuple[str, str], float, float, float]]:
    """(series, value, low, high) images/s: the raw figure with its 95% interval (``ci95``), and the
    adjusted one with its confidence interval where the entry has one (``series``: its name suffix
    and Bencher measure)."""
    out, t = [], entry.timing
    lo, hi = t.ci95 or t.interval()
    out.append((RAW_SERIES, float(t.images_per_second), float(lo), float(hi)))
    conf = (t.intervals or {}).get("confidence") or {}
    if t.adjusted_images_per_second and conf.get("of") == "adjusted_images_per_second" and t.adjusted_by():
        alo, ahi = conf["images_per_second"]
        out.append((ADJUSTED_SERIES[t.adjusted_by()], float(t.adjusted_images_per_second), float(alo), float(ahi)))
    return out


def _extra(entry: Entry, series: tuple[str, str], lo: float, hi: float, commit: str | None) -> str:
    rounds = len(entry.timing.rounds or []) or 1
    what = f"{series[0].strip(' ()')} images/s" if series != RAW_SERIES else "raw images/s"
    return (f"{what}; 95% CI {lo:.4g}–{hi:.4g}; {rounds} round{'s' * (rounds != 1)}, {len(entry.timing.samples_s)} calls"
            + (f"; commit {commit}" if commit else ""))


def benchmark_action(named: Sequence[tuple[str, Entry]], commit: str | None = None) -> list[dict[str, Any]]:
    """github-action-benchmark's ``customBiggerIsBetter`` list for the entries, each under its name."""
    out = []
    for name, e in named:
        for series, value, lo, hi in figures(e):
            out.append({"name": name + series[0], "unit": "images/s", "value": value,
                        "range": f"± {(hi - lo) / 2:.4g}", "extra": _extra(e, series, lo, hi, commit)})
    return out


def bencher(named: Sequence[tuple[str, Entry]]) -> dict[str, dict[str, dict[str, float]]]:
    """The Bencher Metric Format for the entries: one benchmark each, ``throughput`` (raw images/s)
    and the adjusted one (``ADJUSTED_SERIES``, where there is one), each with its 95% bounds."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, e in named:
        out[name] = {series[1]: {"value": value, "lower_value": lo, "upper_value": hi}
                     for series, value, lo, hi in figures(e)}
    return out


def export_text(fmt: str, named: Sequence[tuple[str, Entry]], commit: str | None = None) -> str:
    """The export of ``named`` in ``fmt`` (one of :data:`EXPORT_FORMATS`) as JSON text."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--export {fmt!r}: the formats are {', '.join(EXPORT_FORMATS)}")
    if not named:
        raise UserError(f"--export {fmt}: no successful entry to export")
    data = benchmark_action(named, commit) if fmt == "benchmark-action" else bencher(named)
    return json.dumps(data, indent=1) + "\n"


def check_target(path: str | os.PathLike, what: str) -> None:
    """Refuse to write a summary or an export over a results file (``--markdown a.json b.json``
    would otherwise take the first results file for its FILE) or a folder."""
    if os.path.isdir(path):
        raise UserError(f"cannot write the {what} to {path}: it is a folder")
    if what.startswith("Markdown") and str(path).lower().endswith(".json"):
        raise UserError(f"--markdown {path}: a Markdown summary is not written to a .json file (results files are "
                        "JSON; give --markdown after them, or a .md name)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and data.get("tool") == "levit-bench":
        raise UserError(f"cannot write the {what} to {path}: it is a levit-bench results file")


def write_text(path: str | os.PathLike, text: str, what: str) -> None:
    """Write ``text`` atomically; a file that cannot be written is a one-line UserError."""
    check_target(path, what)
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise UserError(f"cannot write the {what} to {path}: {exc.strerror or exc}") from None


def append_step_summary(markdown: str) -> str | None:
    """Append ``markdown`` to ``$GITHUB_STEP_SUMMARY`` when it is set; the path written, else None."""
    path = os.environ.get(STEP_SUMMARY)
    if not path:
        return None
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as exc:
        raise UserError(f"cannot append to ${STEP_SUMMARY} ({path}): {exc.strerror or exc}") from None
    return path
