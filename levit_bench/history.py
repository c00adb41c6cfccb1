"""A history of results files: per entry, its speed file by file, and the change points in it.

``compare`` asks whether one run is slower than another; a history asks *when* an entry's speed
moved, and by how much.  Files are ordered by ``created`` and kept apart per machine (the machine
facts of ``sysinfo.machine_differences``; library versions may change along a history, that is what
it tracks, and each file names them).  Each entry (matched on its ``EntryKey``, as ``compare``
matches) is a series of one figure per file: the canary-adjusted images/s where every point has it
(each scaled to the first point's canary reference, so a re-measured reference is not a step), else
the raw images/s; the series says which.

Change points come from ``ruptures`` (PELT, least-squares cost, at least two files per segment: one
file is an outlier, two make a level) on log images/s divided by the series' noise σ.  σ is the
larger of what the files state and what the series shows.  Stated: a file's 95% rerun interval
(``stats.rerun_interval``: where another run on this machine lands) bounds the difference of two
runs, so one run's SD on log images/s is its half-width / (1.96·√2); the stated σ is the root mean
square of those.  Shown: the von Neumann estimate, √(mean squared successive difference / 2) (a
step inflates it a little).  With σ-scaled data a split lowers the least-squares cost by z² (z: the
two segments' mean difference over its standard error), so the penalty is z*², z* = Φ⁻¹(1 − α /
(2(n − 1))): a two-sided test at family level α over the n − 1 places a change could sit
(Bonferroni); when σ is the series' own estimate, Student's t on n − 2 degrees of freedom replaces
Φ (the estimate is itself uncertain).  On simulated series this holds false alarms below α with
the noise as stated and with three times more (tests/test_history.py).  A step smaller than
``min_step`` (default: what separates two reruns beyond their own errors,
``entry_parts.rerun_residual``: 3.7% canary-adjusted, 16% raw and on-CPU-adjusted: a shared runner
drifts that much from job to job) is not reported; its segments are merged.

"Newest" (``--fail-on-change``): a series' last change point is new when it is a slowdown, its
after-segment holds the machine's newest file, and it begins within that machine's last
``newest`` files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .entry_parts import common_adjustments, rerun_residual
from .errors import UserError
from .results import Entry, RunRecord, load
from .spec import EntryKey
from .stats import RERUN_RESIDUAL_ADJUSTED, RERUN_RESIDUAL_RAW, rerun_interval
from .sysinfo import COMPARED_LIBRARIES, machine_differences

#: family-level false-alarm rate per series (``--alpha``)
DEFAULT_ALPHA = 0.05
#: a change beginning within a machine's last this many files is "newest" (``--newest``)
DEFAULT_NEWEST = 3
#: the fewest files in a segment: one file is an outlier, two make a level
MIN_SEGMENT = 2


@dataclass
class HistoryFile:
    """One results file in a history: when it was made, from which commit, with which libraries."""

    record: RunRecord
    created: datetime
    position: int = 0  # 0-based, in its machine's order

    @property
    def source(self) -> str:
        return self.record.source or "(unsaved results)"

    @property
    def commit(self) -> str:
        return short_commit((self.record.system or {}).get("git_commit"))

    @property
    def versions(self) -> dict[str, str | None]:
        return dict((self.record.system or {}).get("versions") or {})


@dataclass
class Point:
    file: HistoryFile
    entry: Entry
    ips: float  # the series' figure: adjusted images/s (on the first point's reference) or raw
    sd: float  # one run's SD of log images/s, from the file's rerun interval


@dataclass
class ChangePoint:
    """A level shift between two files: the last one before it and the first one after it."""

    before: HistoryFile
    after: HistoryFile
    before_ips: float  # the segments' geometric mean figures
    after_ips: float
    z: float  # the step over its standard error

    @property
    def step_pct(self) -> float:
        """After over before, minus one, in percent: negative is a slowdown."""
        return (self.after_ips / self.before_ips - 1.0) * 100.0

    @property
    def slowdown(self) -> bool:
        return self.after_ips < self.before_ips

    def version_changes(self) -> list[str]:
        """The compared libraries whose version differs between the files either side of the change."""
        a, b = self.before.versions, self.after.versions
        return [f"{lib} {a.get(lib) or 'absent'} → {b.get(lib) or 'absent'}" for lib in COMPARED_LIBRARIES
                if a.get(lib) != b.get(lib) and (lib in a or lib in b)]

    def words(self) -> str:
        changed = self.version_changes()
        return (f"{'slower' if self.slowdown else 'faster'} {abs(self.step_pct):.1f}% between "
                f"{self.before.commit} and {self.after.commit}" + (f" ({', '.join(changed)})" if changed else ""))


@dataclass
class Series:
    key: EntryKey
    points: list[Point]
    #: what adjusted every point's figure (the on-CPU share and the canary, as all points have them:
    #: ``entry_parts.common_adjustments``); () raw
    by: tuple[str, ...] = ()
    change_points: list[ChangePoint] = field(default_factory=list)
    sigma: float | None = None  # the noise the detection used (SD of log images/s)
    detectable_pct: float | None = None  # about the smallest step it can report (a split in halves)
    note: str = ""  # why nothing could be detected (too few files)

    @property
    def label(self) -> str:
        return self.key.label()

    @property
    def adjusted(self) -> bool:
        return bool(self.by)

    @property
    def figure(self) -> str:
        return "adjusted" if self.adjusted else "raw"


@dataclass
class MachineHistory:
    machine: str
    files: list[HistoryFile]
    series: list[Series]

    def is_newest(self, series: Series, cp: ChangePoint, newest: int) -> bool:
        """The rule of ``--fail-on-change``: ``cp`` is the series' last change, a slowdown, its
        after-segment holds this machine's newest file, and it begins in the last ``newest`` files."""
        return (bool(series.change_points) and cp is series.change_points[-1] and cp.slowdown
                and series.points[-1].file is self.files[-1] and cp.after.position >= len(self.files) - newest)


@dataclass
class History:
    machines: list[MachineHistory]
    alpha: float
    newest: int
    min_step_pct: float | None  # None: the rerun residual of each series' figure
    skipped: list[str] = field(default_factory=list)

    def new_slowdowns(self) -> list[tuple[MachineHistory, Series, ChangePoint]]:
        return [(m, s, s.change_points[-1]) for m in self.machines for s in m.series
                if s.change_points and m.is_newest(s, s.change_points[-1], self.newest)]

    def changed_versions(self) -> list[str]:
        """The libraries whose version differs between files of one machine."""
        return [lib for lib in COMPARED_LIBRARIES
                if any(len({f.versions.get(lib) for f in m.files}) > 1 for m in self.machines)]

    def shown_versions(self) -> list[str]:
        """The libraries the tables name per file: torch, and every one whose version changes."""
        return ["torch"] + [lib for lib in self.changed_versions() if lib != "torch"]


def short_commit(commit: str | None) -> str:
    """``1639dbc`` (``-dirty`` kept: the checkout had changes), or ``unknown``."""
    if not commit:
        return "unknown"
    head, dirty = (commit[:-6], True) if commit.endswith("-dirty") else (commit, False)
    return head[:7] + ("-dirty" if dirty else "")


def machine_words(system: dict) -> str:
    gpu = (system.get("gpu") or {}).get("name")
    cores = system.get("logical_cores")
    return f"{system.get('cpu') or 'unknown cpu'}" + (f", {cores} cores" if cores else "") + (f", {gpu}" if gpu else "")


# ---------------------------------------------------------------------------------------------
# reading the files


def results_paths(args: list[str]) -> list[tuple[Path, bool]]:
    """Files as given, and whether each came from a folder (which stands for its ``*.json`` files).
    None at all is a UserError."""
    out: list[tuple[Path, bool]] = []
    for a in args:
        p = Path(a)
        if p.is_dir():
            out += [(x, True) for x in sorted(p.glob("*.json")) if x.is_file()]
        elif p.exists():
            out.append((p, False))
        else:
            raise UserError(f"results file not found: {p}")
    if not out:
        raise UserError(f"no results files in {', '.join(args) or '(nothing given)'}")
    return out


def _created(record: RunRecord) -> datetime:
    try:
        t = datetime.fromisoformat(str(record.created))
    except ValueError:
        raise UserError(f"{record.source}: created {record.created!r} is not an ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def read_history(args: list[str]) -> tuple[list[HistoryFile], list[str]]:
    """The files (each a UserError when unreadable), ordered by ``created``, and the lines of what was
    left out: emulated runs, files without a successful timing entry, files in a folder that are not
    results (a dashboard export kept next to them)."""
    files, skipped = [], []
    for p, in_folder in results_paths(args):
        try:
            record = load(p)
        except UserError as exc:
            if in_folder and "is not a levit-bench results file" in str(exc):
                skipped.append(f"{p}: not a results file")
                continue
            raise
        if (record.system or {}).get("emulated"):
            skipped.append(f"{p}: measured under emulation ({record.system['emulated']}): not speed")
        elif not any(e.ok and e.timing.samples_s for e in record.results):
            skipped.append(f"{p}: no successful timing entry")
        else:
            files.append(HistoryFile(record, _created(record)))
    files.sort(key=lambda f: (f.created, f.source))
    return files, skipped


def by_machine(files: list[HistoryFile]) -> list[tuple[str, list[HistoryFile]]]:
    """Files grouped by machine (library versions may differ within a group), each in time order."""
    groups: list[tuple[dict, list[HistoryFile]]] = []
    for f in files:
        system = {**(f.record.system or {}), "versions": {}}
        for first, members in groups:
            if not machine_differences(first, system):
                members.append(f)
                break
        else:
            groups.append((system, [f]))
    for _, members in groups:
        for i, f in enumerate(members):
            f.position = i
    return [(machine_words(s), members) for s, members in groups]


# ---------------------------------------------------------------------------------------------
# the series and their change points


def _point(f: HistoryFile, e: Entry, by: tuple[str, ...], ref0: float) -> Point:
    """A file's point of a series adjusted by ``by`` (raw with none): images/s, the canary part on
    the first point's reference ``ref0``, and one run's SD from its rerun interval."""
    t = e.timing
    rounds = t.adjusted_round_samples(None, by) if by else None
    if rounds is None:
        rounds, ips = t.round_samples(), float(t.images_per_second)
    else:
        scale = float(t.canary["reference_s"]) / ref0 if "canary" in by else 1.0
        ips = t.images_per_call / float(np.median(np.concatenate(rounds))) * scale
    lo, hi = rerun_interval(rounds, bool(by), residual=rerun_residual(by))
    return Point(f, e, ips, math.log(hi / lo) / 2.0 / (1.96 * math.sqrt(2.0)))


def build_series(files: list[HistoryFile]) -> list[Series]:
    """One series per entry key measured successfully in at least one file, in first-seen order;
    each adjusted as every one of its points can be (``common_adjustments``: a file from before the
    on-CPU share keeps a series on the canary)."""
    found: dict[EntryKey, list[tuple[HistoryFile, Entry]]] = {}
    for f in files:
        seen = {e.key: e for e in f.record.results if e.ok and e.timing.samples_s}
        for key, e in seen.items():
            found.setdefault(key, []).append((f, e))
    out = []
    for key, pairs in found.items():
        referenced = all((e.timing.canary or {}).get("reference_s") for _, e in pairs)
        by = common_adjustments(*(e.timing for _, e in pairs), without=() if referenced else ("canary",))
        ref0 = float(pairs[0][1].timing.canary["reference_s"]) if "canary" in by else 1.0
        out.append(Series(key, [_point(f, e, by, ref0) for f, e in pairs], by))
    return out


def penalty(n: int, alpha: float, estimated: bool = False) -> float:
    """z*² for n points: the cost decrease a split must beat (Bonferroni over n − 1 places); with σ
    ``estimated`` from the series itself, Student's t on its n − 2 degrees of freedom instead."""
    from scipy.stats import norm, t

    q = 1.0 - alpha / (2.0 * max(n - 1, 1))
    return float(t.ppf(q, max(n - 2, 1)) if estimated else norm.ppf(q)) ** 2


def detect(series: Series, alpha: float, min_step_pct: float | None) -> None:
    """Fill ``series.change_points`` (and ``sigma``, or ``note`` when the series is too short)."""
    import ruptures

    n = len(series.points)
    if n < 2 * MIN_SEGMENT:
        series.note = f"{n} file{'s' * (n != 1)}: a change needs {MIN_SEGMENT} files on each side"
        return
    y = np.log([p.ips for p in series.points])
    stated = math.sqrt(float(np.mean([p.sd ** 2 for p in series.points])))
    shown = math.sqrt(float(np.mean(np.diff(y) ** 2)) / 2.0)  # von Neumann: a step inflates it a little
    sigma = max(stated, shown, 1e-6)
    series.sigma = sigma
    pen = penalty(n, alpha, estimated=shown > stated)
    floor = min_step_pct / 100.0 if min_step_pct is not None else rerun_residual(series.by)
    half = n // 2
    series.detectable_pct = 100.0 * max(floor, math.expm1(math.sqrt(pen) * sigma
                                                         * math.sqrt(1.0 / half + 1.0 / (n - half))))
    algo = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit((y / sigma).reshape(-1, 1))
    bounds = [0] + list(algo.predict(pen=pen))  # segment ends, the last one n
    while True:  # merge the smallest step below the floor, then look again
        means = [float(np.mean(y[a:b])) for a, b in zip(bounds, bounds[1:])]
        steps = [abs(math.expm1(m1 - m0)) for m0, m1 in zip(means, means[1:])]
        small = [i for i, s in enumerate(steps) if s < floor]
        if not small:
            break
        del bounds[1 + min(small, key=lambda i: steps[i])]
    series.change_points = []
    for i, (m0, m1) in enumerate(zip(means, means[1:])):
        a, cut, b = bounds[i], bounds[i + 1], bounds[i + 2]
        se = sigma * math.sqrt(1.0 / (cut - a) + 1.0 / (b - cut))
        series.change_points.append(ChangePoint(series.points[cut - 1].file, series.points[cut].file,
                                                math.exp(m0), math.exp(m1), (m1 - m0) / se))


def history(args: list[str], *, alpha: float = DEFAULT_ALPHA, min_step_pct: float | None = None,
            newest: int = DEFAULT_NEWEST) -> History:
    """The history of the results files (or folders) ``args``: per machine, per entry, the series
    and its change points.  No files, an unreadable one, or no entry at all is a UserError."""
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha:g}: a false-alarm rate must be between 0 and 1")
    if newest < 1:
        raise UserError(f"--newest {newest}: at least the newest file")
    files, skipped = read_history(args)
    if not files:
        raise UserError("no results file with a successful timing entry to make a history of"
                        + (f" ({'; '.join(skipped)})" if skipped else ""))
    machines = []
    for words, members in by_machine(files):
        series = build_series(members)
        for s in series:
            detect(s, alpha, min_step_pct)
        machines.append(MachineHistory(words, members, series))
    return History(machines, alpha, newest, min_step_pct, skipped)


def newest_entries(h: History) -> list[tuple[str, Entry]]:
    """The newest measurement of every series (the head of the history, for dashboards), named by
    its label, with the machine in front when the history holds more than one."""
    many = len(h.machines) > 1
    return [((f"{m.machine} / " if many else "") + s.label, s.points[-1].entry)
            for m in h.machines for s in m.series if s.points[-1].file is m.files[-1]]
