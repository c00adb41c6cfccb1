"""Compare two results files entry by entry, and gate CI on significant slowdowns only.

A fixed threshold on one number (pytest-benchmark's ``--benchmark-compare-fail``) fires on shared
runners whose speed drifts 10-30%.  Here an entry counts as slower only when its raw samples say
so, with the round as the unit that repeats (``stats.speed_change``: Mann-Whitney U on round medians,
on the calls for files without enough rounds, *and* an interval of the ratio that excludes 1: the
report's, ``stats.unpaired_ratio``), and the gate fails only when such a slowdown is also larger than
the threshold.  ``normalize_by`` divides every speed by a reference entry's measured in
the same run (round by round), so a baseline recorded on another machine still gates.

Everything here is a plain function returning dataclasses; ``cli/compare.py`` parses and prints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError
from .results import Entry, RunRecord, load
from .spec import BASELINE_BACKEND, EntryKey, Conditions, Status
from .stats import can_pair, speed_change
from .sysinfo import machine_differences

FASTER, SLOWER, UNCHANGED, REFERENCE = "faster", "slower", "no significant change", "reference (not gated)"


@dataclass
class EntryComparison:
    """One entry measured in both files: speeds, change, significance and verdict."""

    base: Entry
    new: Entry
    change_pct: float  # new speed over base speed, minus one, in percent (normalized when asked)
    ratio_ci95: tuple[float, float]  # of new speed over base speed
    p_value: float
    significant: bool
    verdict: str
    gated: bool = True  # False for the normalization reference itself
    base_relative: float | None = None  # base speed over the reference's median speed (normalized runs)
    new_relative: float | None = None

    @property
    def key(self) -> EntryKey:
        return self.base.key

    @property
    def base_ips(self) -> float:
        return float(self.base.images_per_second or 0.0)

    @property
    def new_ips(self) -> float:
        return float(self.new.images_per_second or 0.0)

    def regressed(self, fail_above_pct: float) -> bool:
        """Slower by more than ``fail_above_pct`` percent *and* significantly so."""
        return self.gated and self.verdict == SLOWER and -self.change_pct > fail_above_pct


@dataclass
class CompareResult:
    """Every matched entry's comparison, plus what could not be compared and why."""

    base_source: str
    new_source: str
    rows: list[EntryComparison]
    not_compared: list[str] = field(default_factory=list)  # one line each, with the reason
    normalize_by: tuple[str, str] | None = None
    alpha: float = 0.01
    #: how base and new machines or libraries differ (only with --normalize-by; else refused)
    differences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a file of an interrupted run (complete: false)

    def regressions(self, fail_above_pct: float) -> list[EntryComparison]:
        return [r for r in self.rows if r.regressed(fail_above_pct)]

    def failed(self, fail_above_pct: float | None) -> bool:
        """Whether the gate fails: a gated entry significantly slower by more than the threshold."""
        return fail_above_pct is not None and bool(self.regressions(fail_above_pct))

    def counts(self) -> dict[str, int]:
        out = {FASTER: 0, SLOWER: 0, UNCHANGED: 0}
        for r in self.rows:
            if r.gated:
                out[r.verdict] += 1
        return out


# ---------------------------------------------------------------------------------------------
# samples, runtime options and the normalization reference

def parse_reference(text: str) -> tuple[str, str]:
    """``MODEL[/BACKEND]`` -> (model, backend); the backend defaults to ``torch``."""
    model, _, backend = text.strip().partition("/")
    model, backend = model.strip(), (backend.strip() or BASELINE_BACKEND)
    if not model or "/" in backend:
        raise UserError(f"--normalize-by {text!r}: expected MODEL or MODEL/BACKEND, e.g. levit_128s/torch")
    return model, backend


def reference_entry(record: RunRecord, reference: tuple[str, str], setting: Conditions) -> Entry:
    """The reference entry measured in ``record`` at ``setting`` (the setting a reference shares
    with the entries it normalizes)."""
    model, backend = reference
    found = [e for e in _ok_entries(record).values() if (e.model, e.backend) == reference and e.conditions == setting]
    if found:  # the plain backend first (no runtime options), as "× torch" chooses its baseline
        return min(found, key=lambda e: e.variant != backend)
    raise UserError(
        f"--normalize-by {model}/{backend}: {_source(record)} has no successful {model}/{backend} entry at "
        f"{Conditions(*setting).words()} to normalize by (measure it in the same run)"
    )


def relative_rounds(entry: Entry, reference: Entry | None) -> list[np.ndarray]:
    """Per-image seconds by round, divided by the reference's: round by round when both were timed
    in the same rounds (the machine's drift cancels), else by the reference's median."""
    rounds = entry.per_image_rounds()
    if reference is None:
        return rounds
    ref = reference.per_image_rounds()
    if entry.group == reference.group and can_pair(rounds, ref):
        return [r / float(np.median(q)) for r, q in zip(rounds, ref)]
    return [r / float(np.median(np.concatenate(ref))) for r in rounds]


# ---------------------------------------------------------------------------------------------
# matching and comparing


def _source(record: RunRecord) -> str:
    return record.source or "(unsaved results)"


def _ok_entries(record: RunRecord) -> dict[EntryKey, Entry]:
    """Successful entries by key; a later duplicate replaces an earlier one."""
    return {e.key: e for e in record.results if e.status is Status.OK and e.samples_s}


def _all_entries(record: RunRecord) -> dict[EntryKey, Entry]:
    out: dict[EntryKey, Entry] = {}
    for e in record.results:
        if e.key not in out or e.status is Status.OK:
            out[e.key] = e
    return out


def _verdict(ratio: float, significant: bool) -> str:
    if not significant:
        return UNCHANGED
    return FASTER if ratio > 1.0 else SLOWER


def compare_entries(base: Entry, new: Entry, alpha: float = 0.01, base_reference: Entry | None = None,
                    new_reference: Entry | None = None) -> EntryComparison:
    """Test ``new`` against ``base`` (each relative to its run's reference entry, when given).

    Entries timed in enough rounds are tested on their round medians: calls within a round share
    the machine's state of that moment, so the round is the unit that repeats; older files (one
    block) fall back to the calls (``stats.speed_change``, whose interval is the report's).
    """
    b, n = relative_rounds(base, base_reference), relative_rounds(new, new_reference)
    c = speed_change(b, n, alpha=alpha)
    return EntryComparison(
        base=base, new=new, change_pct=(c.speed_ratio - 1.0) * 100.0, ratio_ci95=tuple(c.ratio_ci95),
        p_value=c.p_value, significant=c.significant, verdict=_verdict(c.speed_ratio, c.significant),
    )


def _unmatched(base: RunRecord, new: RunRecord) -> list[str]:
    """Entries that are not ok in both files, each with why (never dropped silently)."""
    b_all, n_all = _all_entries(base), _all_entries(new)
    lines = []
    for key in list(b_all) + [k for k in n_all if k not in b_all]:
        b, n = b_all.get(key), n_all.get(key)
        if b is None or n is None:
            e = b or n
            why = "" if e.status is Status.OK else f" ({e.status}: {e.reason})"
            lines.append(f"only in {'new' if b is None else 'base'}: {e.label()}{why}")
            continue
        lines += [f"{side} {e.status}: {e.label()}: {e.reason}" for side, e in (("base", b), ("new", n))
                  if e.status is not Status.OK]
    return lines


def _describe(record: RunRecord) -> str:
    entries = list(_ok_entries(record).values())
    if not entries:
        return "no successful entries"
    pick = lambda attr: ",".join(sorted({str(getattr(e, attr)) for e in entries}))  # noqa: E731
    return (f"models {pick('model')}; backends {pick('variant')}; {pick('device')} {pick('precision')}; "
            f"batch {pick('batch_size')}; threads {pick('threads')}")


def compare_runs(base: RunRecord, new: RunRecord, normalize_by: str | None = None,
                 alpha: float = 0.01) -> CompareResult:
    """Compare every entry measured successfully in both runs (matched on their EntryKey: model,
    backend variant with its runtime options, device, precision, batch size and threads).  Entries
    measured with other runtime options are different measurements: listed as not compared, never
    matched.  No entry in common is a UserError."""
    for record in (base, new):
        if (record.system or {}).get("emulated"):
            raise UserError(f"{_source(record)} was measured under emulation ({record.system['emulated']}): its "
                            "timings are an emulator's, not speed, and are not compared")
    differences = machine_differences(base.system or {}, new.system or {})
    if differences and not normalize_by:
        raise UserError(f"{_source(base)} and {_source(new)} were measured on different machines or libraries "
                        f"({'; '.join(differences)}): their speeds are not comparable; --normalize-by MODEL/BACKEND "
                        "compares each against a reference measured in the same run")
    b_ok, n_ok = _ok_entries(base), _ok_entries(new)
    keys = [k for k in b_ok if k in n_ok]
    if not keys:
        raise UserError(
            f"no entry was measured successfully in both {_source(base)} and {_source(new)}; "
            f"base: {_describe(base)}; new: {_describe(new)}"
        )
    reference = parse_reference(normalize_by) if normalize_by else None
    rows = [_compare_key(base, new, b_ok[k], n_ok[k], reference, alpha) for k in keys]
    warnings = [incomplete_warning(side, r) for side, r in (("base", base), ("new", new)) if not r.complete]
    return CompareResult(_source(base), _source(new), rows, _unmatched(base, new), reference, alpha, differences,
                         warnings)


def incomplete_warning(side: str, record: RunRecord) -> str:
    """What a file of an interrupted or still running run (``complete: false``) means for a comparison."""
    return (f"the {side} file {_source(record)} is incomplete (complete: false: the run was interrupted, or "
            "is still running): entries it lacks are not compared, and interrupted entries have fewer rounds")


def _compare_key(base: RunRecord, new: RunRecord, b: Entry, n: Entry,
                 reference: tuple[str, str] | None, alpha: float) -> EntryComparison:
    if reference is None:
        return compare_entries(b, n, alpha)
    b_ref = reference_entry(base, reference, b.conditions)
    n_ref = reference_entry(new, reference, n.conditions)
    row = compare_entries(b, n, alpha, b_ref, n_ref)
    row.base_relative = 1.0 / float(np.median(np.concatenate(relative_rounds(b, b_ref))))
    row.new_relative = 1.0 / float(np.median(np.concatenate(relative_rounds(n, n_ref))))
    if b is b_ref:
        row.gated, row.verdict = False, REFERENCE
    return row


def compare_files(base_path: str | os.PathLike, new_path: str | os.PathLike, normalize_by: str | None = None,
                  alpha: float = 0.01) -> CompareResult:
    """Load both files (UserError when unreadable or of another schema) and compare them."""
    return compare_runs(load(base_path), load(new_path), normalize_by, alpha)


