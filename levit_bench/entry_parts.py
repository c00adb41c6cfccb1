"""The parts of a results entry (``results.Entry``) besides its identity: what preparing found
(:class:`ExportFacts`), how it was timed (:class:`Timing`) and what the model computes
(:class:`Explain`).  A results file of schema 7 nests each under its name (``export``, ``timing``,
``explain``); earlier files kept every field flat, and the names inside a part are those flat keys.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import psutil

from . import oncpu
from .canary import Reference
from .stats import (NOISE_THRESHOLD, RERUN_RESIDUAL_ADJUSTED, RERUN_RESIDUAL_RAW, adjusted_rounds,
                    between_round_spread, labelled_intervals, median_time_interval, split_rounds, summarize_calls)


@dataclass
class ExportFacts:
    """What preparing a runner found: the export (its seconds, whether the cache had it, the file and
    its size), the backend's notes and the parity figures (``prepare.py`` makes them).  An entry's
    ``export`` part keeps all but the notes, which are the entry's own (``Entry.of`` takes them)."""

    export_s: float | None = None
    export_reused: bool | None = None  # None: nothing is exported
    artifact: str | None = None
    artifact_bytes: int | None = None
    parity: dict[str, float | bool | str] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``export`` part of a results file (no notes)."""
        return _fields_of(self, exclude={"notes"})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportFacts:
        return cls(**_known(cls, data, exclude={"notes"}))


#: what a timing's rounds are adjusted by, in the order applied (``Timing.adjustments``): the on-CPU
#: share where every round has it (what the process lost while it did not run), then the canary where
#: every round has it (the machine's speed while it ran).  Measured side by side on the three rerun
#: studies of 2026-12-04 (docs/measurement.md): within ±10% between runs 80/57/89% with both (ci-like,
#: ci-like, quiet), 81/65/35% on-CPU alone, 63/56/87% canary alone, 44/28/31% raw
ADJUSTMENTS = ("on_cpu", "canary")
#: how the labelled intervals name each
ADJUSTED_WORDS = {("on_cpu",): "on-CPU-adjusted", ("canary",): "canary-adjusted",
                  ("on_cpu", "canary"): "on-CPU- and canary-adjusted"}


def rerun_residual(by: Sequence[str]) -> float:
    """The rerun interval's residual for figures adjusted by ``by`` (``stats.rerun_interval``)."""
    residuals = {"on_cpu": oncpu.RERUN_RESIDUAL, "canary": RERUN_RESIDUAL_ADJUSTED, "raw": RERUN_RESIDUAL_RAW}
    return residuals[oncpu.leading(by)]


def chosen(available: Sequence[str]) -> tuple[str, ...]:
    """The adjustments used of those ``available``, in the order of :data:`ADJUSTMENTS` (none: raw)."""
    return tuple(a for a in ADJUSTMENTS if a in available)


def common_adjustments(*timings: Timing, without: Sequence[str] = ()) -> tuple[str, ...]:
    """The adjustments used for figures compared across files (two runs, or a series of files): those
    not ``without`` that every timing given can make (:meth:`Timing.adjustments`), so that all are
    adjusted alike: a file from before the on-CPU share keeps a comparison on the canary, and a
    canary in wall seconds is not compared with one in seconds while running (``oncpu.canary_while_running``)."""
    present = [t.adjustments() for t in timings]
    if len({oncpu.canary_while_running(t.rounds) for t in timings}) > 1:
        without = (*without, "canary")
    return chosen([a for a in ADJUSTMENTS if a not in without and all(a in p for p in present)])


@dataclass
class Timing:
    """How an entry was timed (:meth:`measure` makes it from the calls): the raw per-call seconds and
    the rounds they were timed in, the speed with its spread and interval, the warm-up, memory, and
    the machine-speed canary's adjusted speed with the two labelled intervals (issue 21)."""

    samples_s: list[float] = field(default_factory=list)
    #: one per round the entry was timed in, in time order: round, position in that round's order,
    #: start (seconds after its group's timing began), calls; ``samples_s`` is their concatenation.
    #: None in files of schema 1: all samples are then one round.
    rounds: list[dict[str, Any]] | None = None
    images_per_call: int | None = None  # set in every part a file holds (``results`` fills old ones in)
    warmup_calls: int | None = None
    first_call_s: float | None = None
    images_per_second: float | None = None
    ci95: list[float] | None = None  # images/s
    iqr: float | None = None  # images/s
    noisy: bool | None = None
    between_rounds: float | None = None  # IQR of the round medians over their median
    latency_ms: dict[str, float] | None = None
    time_s: dict[str, float] | None = None  # median, iqr, min of one call
    peak_rss_bytes: int | None = None
    cuda_max_memory_bytes: int | None = None
    #: the speed adjusted by the canary timed next to each block (raw kept above); ``intervals``:
    #: "confidence" and "rerun", each labelled; ``canary``: its name, the reference it scales to and
    #: where that came from, its cost, the adjusted GMAC/s and efficiency (``Explain.of`` adds those)
    adjusted_images_per_second: float | None = None
    intervals: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None

    @classmethod
    def measure(cls, samples_s: Sequence[float], rounds: Sequence[dict[str, Any]], images_per_call: int, *,
                warmup_calls: int | None = None, first_call_s: float | None = None,
                rss_bytes: int | None = None, cuda_max_memory_bytes: int | None = None,
                canary: Reference | None = None, canary_cost_s: float | None = None, canary_beta: float = 1.0,
                canary_run_s: float | None = None) -> Timing:
        """The timing of per-call seconds timed in ``rounds`` (one dict per round, as the file stores
        them: ``calls`` is how many of ``samples_s`` it holds); ``rss_bytes``: the memory held (by
        default this process's RSS now).

        The interval is over rounds (``stats.median_time_interval``: order statistics of the round
        medians), so the machine's drift during the run widens it; the noise flag looks at the
        spread of calls and of round medians."""
        t = cls([float(x) for x in samples_s], [dict(r) for r in rounds], images_per_call, warmup_calls, first_call_s)
        s = summarize_calls(t.samples_s, images_per_call)
        spread = between_round_spread(t.round_samples())
        t.images_per_second, t.iqr, t.between_rounds = s.images_per_second, s.iqr_ips, spread
        t.noisy = s.noisy or spread > NOISE_THRESHOLD
        t.latency_ms = s.latency_ms
        t.time_s = {"median": s.median_s, "iqr": s.iqr_s, "min": s.min_s}
        t.ci95 = list(t.interval())
        t.peak_rss_bytes = psutil.Process().memory_info().rss if rss_bytes is None else rss_bytes
        t.cuda_max_memory_bytes = cuda_max_memory_bytes
        t.adjust(canary, canary_cost_s, canary_beta, canary_run_s)
        return t

    def noise_notes(self) -> list[str]:
        """What an entry's notes say of this timing's noise (calls, and round medians)."""
        notes = []
        rel_iqr = self.time_s["iqr"] / self.time_s["median"] if self.time_s and self.time_s["median"] else 0.0
        if rel_iqr > NOISE_THRESHOLD:  # as ``stats.summarize_calls`` flags it
            notes.append(f"noisy: IQR is {rel_iqr:.0%} of the median")
        if (self.between_rounds or 0.0) > NOISE_THRESHOLD:
            notes.append(f"noisy: round medians spread {self.between_rounds:.0%} (IQR over median)")
        return notes

    def adjust(self, canary: Reference | None, cost_s: float | None, beta: float, run_s: float | None) -> None:
        """The adjusted speed (rounds scaled by their on-CPU share where every round has one, then by
        the canary where every round has a canary figure: :meth:`adjusted_by`) and the two labelled
        intervals, of the adjusted speed where there is one, else of the raw one.  ``run_s``: the
        median canary of every block of the entry's group (the run's machine factor), and ``beta``,
        its tracking slope on the raw rounds (``stats.group_canary``)."""
        self.canary = self.adjusted_images_per_second = None
        images = self.images_per_call
        if canary is not None:
            timed = sum(self.samples_s)
            self.canary = {"name": canary.name, "reference_s": canary.reference_s, "reference": canary.source,
                           "beta": beta, "run_s": run_s, "cost_s": cost_s,
                           "cost_share": cost_s / timed if cost_s is not None and timed else None}
        adjusted = self.adjusted_round_samples()
        if adjusted is not None:
            self.adjusted_images_per_second = images / float(np.median(np.concatenate(adjusted)))
        self.intervals = labelled_intervals(*((adjusted, images, "adjusted_images_per_second",
                                               ADJUSTED_WORDS[self.adjusted_by()], rerun_residual(self.adjusted_by()))
                                              if adjusted is not None else (self.round_samples(), images, "images_per_second")))

    def round_samples(self) -> list[np.ndarray]:
        """Per-call seconds grouped by round (a file of schema 1: one round)."""
        return split_rounds(self.samples_s, [r["calls"] for r in self.rounds] if self.rounds else None)

    def canary_seconds(self) -> list[float | None]:
        """Each round's canary seconds per call, while the process ran where the rounds say so
        (``oncpu.canary_seconds``; None where a round, or the file, has none)."""
        return oncpu.canary_seconds(self.rounds)

    def adjustments(self) -> tuple[str, ...]:
        """What this timing's rounds can be adjusted by: ``on_cpu`` where every round has its on-CPU
        share, ``canary`` where every round has a canary figure."""
        has_canary = all(isinstance(c, (int, float)) and 0 < c < float("inf") for c in self.canary_seconds())
        return tuple(name for name, present in (("on_cpu", oncpu.shares(self.rounds) is not None),
                                                ("canary", has_canary)) if present)

    def adjusted_by(self) -> tuple[str, ...]:
        """What ``adjusted_images_per_second`` is adjusted by (:func:`chosen`; empty where there is
        none): the canary only with its reference."""
        return chosen([a for a in self.adjustments() if a != "canary" or (self.canary or {}).get("reference_s")])

    def adjusted_round_samples(self, reference_s: float | None = None,
                               by: Sequence[str] | None = None) -> list[np.ndarray] | None:
        """Per-call seconds by round, adjusted by ``by`` (default :meth:`adjusted_by`; of those the
        rounds have): each round's on-CPU share (``oncpu.on_cpu_rounds``), then the canary scaled to
        ``reference_s`` (default: the entry's own reference; two runs compared should pass one
        reference for both, or 1); None when nothing applies."""
        if reference_s is None:
            reference_s = (self.canary or {}).get("reference_s")
        by = self.adjusted_by() if by is None else by
        have = [a for a in self.adjustments() if a in by and (a != "canary" or reference_s is not None)]
        if not have:
            return None
        rounds = oncpu.scaled(self.round_samples(), self.rounds) if "on_cpu" in have else self.round_samples()
        if "canary" not in have:
            return rounds
        return adjusted_rounds(rounds, self.canary_seconds(), reference_s, self.canary_beta,
                               (self.canary or {}).get("run_s"))

    @property
    def canary_beta(self) -> float:
        """How far the round-to-round canary is applied (``stats.canary_tracking``; 1 in files before it)."""
        return float((self.canary or {}).get("beta", 1.0))

    def interval(self) -> tuple[float, float]:
        """The 95% interval of images/s from the raw samples, as this version computes it (files
        keep theirs in ``ci95``; this recomputes it, e.g. to compare runs of older versions)."""
        lo, hi = median_time_interval(self.round_samples())
        return self.images_per_call / hi, self.images_per_call / lo

    def per_image_rounds(self) -> list[np.ndarray]:
        """Per-image seconds grouped by round: comparable across batch sizes and request counts."""
        return [r / self.images_per_call for r in self.round_samples()]

    def to_dict(self) -> dict[str, Any]:
        return _fields_of(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timing:
        return cls(**_known(cls, data))


@dataclass
class Explain:
    """What the model computes (issue 13): per-image multiply-accumulates and parameters of the model
    as timed, the GMAC/s reached, the machine's measured GEMM peak and the fraction of it reached."""

    macs: int | None = None
    params: int | None = None
    gmacs_per_s: float | None = None
    peak_gmacs_per_s: float | None = None
    efficiency: float | None = None

    @classmethod
    def of(cls, macs: int | None, params: int | None, peak_gmacs_per_s: float | None,
           timing: Timing | None) -> Explain:
        """What the model computes and, for a measured ``timing``, the GMAC/s reached and the share
        of the machine's peak that is: none where the speed is above the peak (``above_peak`` says
        so).  The adjusted GMAC/s and share go into ``timing.canary``, beside the adjusted speed."""
        part = cls(macs, params)
        if not macs or timing is None or not timing.images_per_second:
            return part
        part.gmacs_per_s = macs * timing.images_per_second / 1e9
        if peak_gmacs_per_s and part.gmacs_per_s <= peak_gmacs_per_s:
            part.peak_gmacs_per_s, part.efficiency = peak_gmacs_per_s, part.gmacs_per_s / peak_gmacs_per_s
        if timing.canary is not None and timing.adjusted_images_per_second:
            adjusted = macs * timing.adjusted_images_per_second / 1e9
            timing.canary["adjusted_gmacs_per_s"] = adjusted
            # the peak in the same units: canary-adjusted speeds are this run's scaled by run_s /
            # reference_s (to the fastest canary the machine was seen to run), so the peak, measured on
            # this machine as it ran, is scaled alike (against the raw peak a run at 97% read "adj
            # 103%"); on-CPU-adjusted speeds and the peak (``peak.py``) are both per second on a CPU
            c = timing.canary
            scale = (c["run_s"] / c["reference_s"] if c.get("run_s") and c.get("reference_s")
                     and timing.adjusted_by() != ("on_cpu",) else 1.0)
            timing.canary["adjusted_efficiency"] = (adjusted / (part.peak_gmacs_per_s * scale)
                                                    if part.peak_gmacs_per_s else None)
        return part

    def above_peak(self, peak_gmacs_per_s: float | None) -> str | None:
        """The note for a speed above ``peak_gmacs_per_s`` (None where it is not)."""
        if not (self.gmacs_per_s and peak_gmacs_per_s and self.gmacs_per_s > peak_gmacs_per_s):
            return None
        # a model cannot outrun the machine's dense GEMM: the cached peak is not the machine's
        # (measured while it was loaded, say), and no share of it is shown
        return (f"reached {self.gmacs_per_s:.1f} GMAC/s, above the cached GEMM peak {peak_gmacs_per_s:.1f}: "
                "that peak is not this machine's (measured under load?), so no share of it is given; "
                "`levit-bench sysinfo --peak --remeasure` measures it again")

    def to_dict(self) -> dict[str, Any]:
        return _fields_of(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explain:
        return cls(**_known(cls, data))


def _fields_of(part: Any, exclude: set[str] = frozenset()) -> dict[str, Any]:
    """A part's fields as a file keeps them (not copied: ``dataclasses.asdict`` would copy every sample)."""
    return {f.name: getattr(part, f.name) for f in fields(part) if f.name not in exclude}


def _known(cls: type, data: dict[str, Any], exclude: set[str] = frozenset()) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``cls`` (keys this version does not know are ignored)."""
    names = {f.name for f in fields(cls)} - exclude
    return {k: v for k, v in data.items() if k in names}


#: each part's name in an entry of schema 7, and its class: the flat keys of earlier files are its fields
PARTS: dict[str, type] = {"export": ExportFacts, "timing": Timing, "explain": Explain}
