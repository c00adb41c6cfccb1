"""Compare two results files entry by entry, and gate CI on slowdowns that matter and are real.

A fixed threshold on one number (pytest-benchmark's ``--benchmark-compare-fail``) fires on shared
runners whose speed drifts 10-30% from job to job.  Here each entry gets one of three outcomes from
``verdict.slowdown_verdict`` on its log round medians (the round is the unit that repeats): **fail**
(significantly slower, by more than the threshold), **pass** (a slowdown beyond the threshold is
ruled out) or **inconclusive** (the noise cannot tell; about how many more rounds would).  The
figures tested are adjusted as every round of both entries allows (``common_adjustments``): by the
on-CPU share (``on_cpu``: what a stopped or throttled process lost, ``oncpu.py``) and by the
machine-speed canary (``oncpu.canary_seconds``: the machine's speed while the process ran; alone in
files from before the on-CPU share), so most of what slowed each run's process cancels, and what they leave
of a run's machine-wide factor is in the floor below; raw where neither, and the row says which.
An entry whose on-CPU share fell beyond the other entries' (its code waits more,
``waiting_entries``) is tested without the share, with a warning.  ``normalize_by`` divides
every figure by a reference entry's measured in the same run (round by round), so a baseline
recorded on another machine still gates; ``plan``
divides each entry by the median of the other entries in common (``pair_noise``).  The unpaired
test's floor is what the matched entries show of the spread between the two runs beyond their
rounds (``pair_noise.pair_noise``, never below ``verdict.GATE_FLOOR``) with ``plan``; with nothing
dividing the run's factor out (no ``normalize_by``), ``verdict.GATE_FLOOR`` and what two runs'
machine-wide factors leave after the adjustments (``pair_noise.run_factor_floor``): a shift all
entries share within it is inconclusive, not a regression.  At a 5% threshold that floor keeps an
unchanged entry from passing (its bound cannot clear 5%) and a fail needs about 12% on on-CPU-adjusted
figures, 26% on the canary alone: two runs alone cannot tell less.  The summary says what the
entries showed.

Everything here is a plain function returning dataclasses; ``cli/compare.py`` parses and prints.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import oncpu
from .entry_parts import common_adjustments
from .errors import UserError
from .load_compare import LoadComparison, compare_load, unmatched_load
from .pair_noise import (MIN_ENTRIES as MIN_PLAN_ENTRIES, PLAN, PairNoise, common_without, pair_noise,
                         run_factor_floor)
from .results import Entry, RunRecord, load
from .spec import BASELINE_BACKEND, EntryKey, Conditions, Status
from .stats import PROCESS_FLOOR, can_pair
from .verdict import FAIL, GATE_FLOOR, INCONCLUSIVE, PASS, Verdict, log_ratio, process_verdict, slowdown_verdict
from .allocator import heaps_differ
from .sysinfo import machine_differences

REFERENCE = "reference (not gated)"
#: the threshold the outcomes are shown at when no gate is asked for (no ``--fail-above``: exit 0)
DEFAULT_THRESHOLD_PCT = 5.0
#: the one-sided significance level of the gate's test per entry (``--alpha``): issue 21 asks for
#: false flags on clean reruns on at most 2% of entries; the size threshold lowers the rate further
#: once the noise is small against it.  (``verdict.slowdown_verdict`` itself defaults to 0.05.)
DEFAULT_ALPHA = 0.02
INCONCLUSIVE_POLICIES = (PASS, FAIL)


@dataclass
class EntryComparison:
    """One entry measured in both files: speeds, the verdict and which figures it was computed on."""

    base: Entry
    new: Entry
    verdict: Verdict
    by: tuple[str, ...] = ()  # what the tested figures were adjusted by (``Timing.adjustments``); () raw
    gated: bool = True  # False for the normalization reference itself
    base_relative: float | None = None  # base speed over the reference's median speed (normalized runs)
    new_relative: float | None = None

    @property
    def adjusted(self) -> bool:
        """Whether the tested figures were adjusted (by anything in ``by``)."""
        return bool(self.by)

    @property
    def key(self) -> EntryKey:
        return self.base.key

    @property
    def base_ips(self) -> float:
        return float(self.base.timing.images_per_second or 0.0)

    @property
    def new_ips(self) -> float:
        return float(self.new.timing.images_per_second or 0.0)

    @property
    def change_pct(self) -> float:
        """New speed over base speed, minus one, in percent (adjusted and normalized as tested)."""
        return (self.verdict.ratio - 1.0) * 100.0

    @property
    def outcome(self) -> str:
        """pass, fail, inconclusive, or :data:`REFERENCE` for the normalization reference."""
        return self.verdict.outcome if self.gated else REFERENCE


@dataclass
class CompareResult:
    """Every matched entry's comparison, plus what could not be compared and why."""

    base_source: str
    new_source: str
    rows: list[EntryComparison]
    threshold_pct: float
    gate_asked: bool  # --fail-above was given: the outcome sets the exit code
    not_compared: list[str] = field(default_factory=list)  # one line each, with the reason
    normalize_by: tuple[str, str] | None = None
    alpha: float = DEFAULT_ALPHA
    #: how base and new machines or libraries differ (only with --normalize-by; else refused)
    differences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a file of an interrupted run (complete: false)
    #: issue 22: p99 and peak rate of the load records in both files (``load_compare.LoadComparison``)
    load_rows: list[LoadComparison] = field(default_factory=list)
    #: what the matched entries say of the noise between the two runs (their common ratio, the spread
    #: beyond their rounds: the test's floor with ``plan``); ``plan``: each entry was tested against the others
    noise: PairNoise | None = None
    plan: bool = False

    def with_outcome(self, outcome: str) -> list[EntryComparison]:
        return [r for r in self.rows if r.gated and r.outcome == outcome]

    @property
    def outcome(self) -> str:
        """The run's outcome: fail if an entry or a load figure fails, else inconclusive if one is, else pass."""
        for o in (FAIL, INCONCLUSIVE):
            if self.with_outcome(o) or any(r.outcome == o for r in self.load_rows):
                return o
        return PASS

    def failed(self, inconclusive: str = PASS) -> bool:
        """Whether the gate (asked for with --fail-above) fails: an entry fails, or one is inconclusive
        and ``inconclusive`` is "fail"."""
        return self.gate_asked and (self.outcome == FAIL or (self.outcome == INCONCLUSIVE and inconclusive == FAIL))

    def counts(self) -> dict[str, int]:
        return {o: len(self.with_outcome(o)) + sum(r.outcome == o for r in self.load_rows)
                for o in (FAIL, INCONCLUSIVE, PASS)}

    def more_rounds(self) -> int | None:
        """About how many more rounds per side would decide every inconclusive entry that rounds can."""
        return max((r.verdict.more_rounds for r in self.with_outcome(INCONCLUSIVE) if r.verdict.more_rounds),
                   default=None)


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


def figures(entry: Entry, by: Sequence[str] = ()) -> list[np.ndarray]:
    """The entry's per-image seconds by round, adjusted by what ``by`` names (``Timing.adjustments``:
    each round's on-CPU share, the canary unit-free); raw with ``by`` empty."""
    t = entry.timing
    adjusted = t.adjusted_round_samples(1.0, by) if by else None
    return t.per_image_rounds() if adjusted is None else [r / t.images_per_call for r in adjusted]


def relative_rounds(entry: Entry, reference: Entry | None, by: Sequence[str] = ()) -> list[np.ndarray]:
    """Per-image seconds by round (adjusted by ``by``), divided by the reference's: round by round
    when both were timed in the same rounds (the machine's drift cancels), else by the reference's
    median."""
    rounds = figures(entry, by)
    if reference is None:
        return rounds
    ref = figures(reference, by)
    if entry.group == reference.group and can_pair(rounds, ref):
        return [r / float(np.median(q)) for r, q in zip(rounds, ref)]
    return [r / float(np.median(np.concatenate(ref))) for r in rounds]


def waiting_entries(b_ok: dict[EntryKey, Entry], n_ok: dict[EntryKey, Entry], keys: Sequence[EntryKey]) -> list[EntryKey]:
    """Entries whose on-CPU share fell in the new run beyond the change all entries share
    (``oncpu.waits_more``): their code waits more, which the on-CPU adjustment would hide."""
    pairs = {k: (oncpu.shares(b_ok[k].timing.rounds), oncpu.shares(n_ok[k].timing.rounds)) for k in keys}
    pairs = {k: (b, n) for k, (b, n) in pairs.items() if b is not None and n is not None}
    if not pairs:
        return []
    common = float(np.median([math.log(oncpu.typical(n) / oncpu.typical(b)) for b, n in pairs.values()]))
    return [k for k, (b, n) in pairs.items() if oncpu.waits_more(b, n, common)]


# ---------------------------------------------------------------------------------------------
# matching and comparing


def _source(record: RunRecord) -> str:
    return record.source or "(unsaved results)"


def _ok_entries(record: RunRecord) -> dict[EntryKey, Entry]:
    """Successful entries by key; a later duplicate replaces an earlier one."""
    return {e.key: e for e in record.results if e.status is Status.OK and e.timing and e.timing.samples_s}


def _all_entries(record: RunRecord) -> dict[EntryKey, Entry]:
    out: dict[EntryKey, Entry] = {}
    for e in record.results:
        if e.key not in out or e.status is Status.OK:
            out[e.key] = e
    return out


def compare_entries(base: Entry, new: Entry, *, threshold_pct: float = DEFAULT_THRESHOLD_PCT,
                    alpha: float = DEFAULT_ALPHA, base_reference: Entry | None = None,
                    new_reference: Entry | None = None, floor: float | None = None,
                    common: float = 0.0, waits: bool = False) -> EntryComparison:
    """The verdict on ``new`` against ``base`` (each relative to its run's reference entry, when
    given), on the figures adjusted by what all four entries have (``common_adjustments``; raw
    where nothing), without the on-CPU share when the entry ``waits`` more in the new run
    (:func:`waiting_entries`: the canary alone then); ``floor``: the unpaired test's (default
    ``verdict.GATE_FLOOR``); ``common``: a log speed ratio divided out of ``new`` first
    (``--normalize-by plan``: the other entries' median)."""
    by = _by(waits, base, new, base_reference, new_reference)
    b = relative_rounds(base, base_reference, by)
    n = [r * math.exp(common) for r in relative_rounds(new, new_reference, by)]
    verdict = slowdown_verdict(b, n, threshold=threshold_pct / 100.0, alpha=alpha, floor=floor)
    return EntryComparison(base=base, new=new, verdict=verdict, by=by)


def _by(waits: bool, *entries: Entry | None) -> tuple[str, ...]:
    return common_adjustments(*(e.timing for e in entries if e is not None), without=("on_cpu",) if waits else ())


def _log_ratio(base: Entry, new: Entry, waits: bool = False) -> tuple[float, float]:
    """``verdict.log_ratio`` of two entries on the figures their comparison tests."""
    by = _by(waits, base, new)
    return log_ratio(figures(base, by), figures(new, by))


#: the paired test's floor for ``ab``: each side runs in a process of its own, so the per-process
#: effect (``stats.PROCESS_FLOOR``, a 95% half-width per process) stays in the per-round ratios;
#: two processes' standard deviations in quadrature
AB_FLOOR = math.sqrt(2) * PROCESS_FLOOR / 1.96


def paired_verdict(base: Entry, new: Entry, *, threshold_pct: float = DEFAULT_THRESHOLD_PCT,
                   alpha: float = DEFAULT_ALPHA) -> Verdict | None:
    """``ab``'s verdict on one entry: both sides timed in the same rounds, blocks adjacent, so the
    per-round log ratios are paired (a machine-wide drift cancels without a canary); None when the
    two have fewer than two rounds in common.  Sides timed in two or more processes each (``ab
    --processes K``) are judged with the process as the unit (``verdict.process_verdict``): the
    spread between a side's own processes replaces the assumed :data:`AB_FLOOR`."""
    rb, rn = (base.timing.per_image_rounds(), new.timing.per_image_rounds()) if base.ok and new.ok else ([], [])
    if not can_pair(rb, rn):
        return None
    pb, pn = by_process(base, rb), by_process(new, rn)
    if min(len(pb), len(pn)) >= 2:
        return process_verdict(pb, pn, threshold=threshold_pct / 100.0, alpha=alpha)
    return slowdown_verdict(rb, rn, threshold=threshold_pct / 100.0, alpha=alpha, paired=True, floor=AB_FLOOR)


def by_process(entry: Entry, rounds: list[np.ndarray]) -> list[list[np.ndarray]]:
    """An entry's rounds grouped by the worker process that timed them (in process order); one group
    when its rounds name no process."""
    groups: dict[int, list[np.ndarray]] = {}
    for record, r in zip(entry.timing.rounds or [], rounds):
        groups.setdefault(record.get("process") if record.get("process") is not None else -1, []).append(r)
    return [groups[k] for k in sorted(groups)]


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


def compare_runs(base: RunRecord, new: RunRecord, normalize_by: str | None = None, *,
                 fail_above_pct: float | None = None, alpha: float = DEFAULT_ALPHA) -> CompareResult:
    """Compare every entry measured successfully in both runs (matched on their EntryKey: model,
    backend variant with its runtime options, device, precision, batch size and threads).  Entries
    measured with other runtime options are different measurements: listed as not compared, never
    matched.  ``fail_above_pct`` is the gate's threshold (None: no gate; the outcomes are shown at
    :data:`DEFAULT_THRESHOLD_PCT`).  No entry in common is a UserError."""
    for record in (base, new):
        if (record.system or {}).get("emulated"):
            raise UserError(f"{_source(record)} was measured under emulation ({record.system['emulated']}): its "
                            "timings are an emulator's, not speed, and are not compared")
    for record in (base, new):
        if any(e.side for e in record.results):
            raise UserError(f"{_source(record)} holds both sides of a `levit-bench ab` job (a base and a new entry "
                            "for each): its verdicts were made in that job and are in its `ab` section; compare "
                            "takes files of one run each")
    differences = machine_differences(base.system or {}, new.system or {})
    if differences and not normalize_by:
        raise UserError(f"{_source(base)} and {_source(new)} were measured on different machines or libraries "
                        f"({'; '.join(differences)}): their speeds are not comparable; --normalize-by MODEL/BACKEND "
                        "compares each against a reference measured in the same run")
    b_ok, n_ok = _ok_entries(base), _ok_entries(new)
    keys = [k for k in b_ok if k in n_ok]
    if fail_above_pct is not None and not 0 <= fail_above_pct < 100:
        raise UserError(f"--fail-above {fail_above_pct:g}: a slowdown threshold must be at least 0 and below 100 percent")
    threshold = DEFAULT_THRESHOLD_PCT if fail_above_pct is None else fail_above_pct
    load_rows = compare_load(base, new, threshold)
    if not keys and not load_rows:
        raise UserError(
            f"no entry was measured successfully in both {_source(base)} and {_source(new)}; "
            f"base: {_describe(base)}; new: {_describe(new)}"
        )
    plan = normalize_by is not None and normalize_by.strip() == PLAN
    reference = parse_reference(normalize_by) if normalize_by and not plan else None
    waiting = set(waiting_entries(b_ok, n_ok, keys))
    ratios = [_log_ratio(b_ok[k], n_ok[k], k in waiting) for k in keys]
    noise = pair_noise([d for d, _ in ratios], [v for _, v in ratios])
    if plan:
        if noise.excess_sd is None:
            raise UserError(f"--normalize-by {PLAN}: {len(keys)} entries in common; at least "
                            f"{MIN_PLAN_ENTRIES} are needed to take the others' median as each one's reference")
        floor = math.hypot(noise.floor(GATE_FLOOR), noise.common_se())
        rows = [compare_entries(b_ok[k], n_ok[k], threshold_pct=threshold, alpha=alpha, floor=floor,
                                common=common_without([d for d, _ in ratios], i), waits=k in waiting)
                for i, k in enumerate(keys)]
    else:
        rows = [_compare_key(base, new, b_ok[k], n_ok[k], reference, threshold, alpha, k in waiting) for k in keys]
    warnings = [incomplete_warning(side, r) for side, r in (("base", base), ("new", new)) if not r.complete]
    heap = heaps_differ({"base": (base.system or {}).get("allocator"), "new": (new.system or {}).get("allocator")})
    warnings += [heap] if heap else []
    if waiting:
        warnings.append(f"{', '.join(b_ok[k].label() for k in keys if k in waiting)}: a smaller share of the new run's "
                        f"wall time on a CPU than the other entries show (by over {oncpu.WAIT_TOLERANCE:.0%}, "
                        f"one-sided p < {oncpu.WAIT_ALPHA:g}): the code waits more, which the on-CPU adjustment "
                        "would hide, so these are tested without it (on the canary alone)")
    return CompareResult(_source(base), _source(new), rows, threshold, fail_above_pct is not None,
                         _unmatched(base, new) + unmatched_load(base, new), reference, alpha, differences, warnings,
                         load_rows, noise if keys else None, plan)


def incomplete_warning(side: str, record: RunRecord) -> str:
    """What a file of an interrupted or still running run (``complete: false``) means for a comparison."""
    return (f"the {side} file {_source(record)} is incomplete (complete: false: the run was interrupted, or "
            "is still running): entries it lacks are not compared, and interrupted entries have fewer rounds")


def _compare_key(base: RunRecord, new: RunRecord, b: Entry, n: Entry, reference: tuple[str, str] | None,
                 threshold_pct: float, alpha: float, waits: bool = False) -> EntryComparison:
    """One entry's row without ``plan``: against the reference's figures of the same run, or, with no
    reference, with what two runs' machine factors leave in the floor (``run_factor_floor``)."""
    if reference is None:
        return compare_entries(b, n, threshold_pct=threshold_pct, alpha=alpha, waits=waits,
                               floor=run_factor_floor(_by(waits, b, n), GATE_FLOOR))
    b_ref = reference_entry(base, reference, b.conditions)
    n_ref = reference_entry(new, reference, n.conditions)
    row = compare_entries(b, n, threshold_pct=threshold_pct, alpha=alpha, base_reference=b_ref, new_reference=n_ref,
                          waits=waits)
    row.base_relative = 1.0 / float(np.median(np.concatenate(relative_rounds(b, b_ref))))
    row.new_relative = 1.0 / float(np.median(np.concatenate(relative_rounds(n, n_ref))))
    if b is b_ref:
        row.gated = False
    return row


def compare_files(base_path: str | os.PathLike, new_path: str | os.PathLike, normalize_by: str | None = None, *,
                  fail_above_pct: float | None = None, alpha: float = DEFAULT_ALPHA) -> CompareResult:
    """Load both files (UserError when unreadable or of another schema) and compare them."""
    return compare_runs(load(base_path), load(new_path), normalize_by, fail_above_pct=fail_above_pct, alpha=alpha)
