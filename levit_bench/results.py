"""The versioned results file: entries, run records, atomic writes, loading with clear errors.

Merging several files into one view is the report's job (``report/merge.py``).

Schema (documented in docs/results-schema.md, machine-checkable in results.schema.json):
``schema_version``, ``tool``, ``tool_version``, ``created``, ``complete``, ``system``, ``config``,
``results`` (one entry per model x backend x batch size).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from . import __version__
from .accuracy_record import AccuracyRecord
from .load_record import LoadRecord
from .canary import Reference
from .atomic import atomic_write_text
from .errors import UserError
from .spec import TORCH_BACKENDS, Identified, Identity, Status
from .stats import (NOISE_THRESHOLD, adjusted_rounds, between_round_spread, labelled_intervals,
                    median_time_interval, split_rounds, summarize_calls)

#: what each version added, and how earlier files are read: the top of docs/results-schema.md
SCHEMA_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
#: the call times a results file may hold: below a nanosecond no clock measures, above a day no
#: call of a benchmark runs (outside these, ratios overflow to inf or 0 and decide nothing)
MIN_CALL_S, MAX_CALL_S = 1e-9, 86400.0


@dataclass
class ExportFacts:
    """What preparing a runner found: the export (its seconds, whether the cache had it, the file and
    its size), the backend's notes and the parity figures (``prepare.py`` makes them)."""

    export_s: float | None = None
    export_reused: bool | None = None  # None: nothing is exported
    artifact: str | None = None
    artifact_bytes: int | None = None
    parity: dict[str, float | bool | str] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Entry(Identified):
    """One measured (or not measured) step, as saved in a results file: its :class:`Identity`
    (what was measured), how it ended, what preparing it found, its timing, what the model computes
    and the energy.  The file keeps every field flat (``to_dict``/``from_dict``)."""

    identity: Identity
    status: Status = Status.SKIPPED
    reason: str = ""
    images_per_second: float | None = None
    ci95: list[float] | None = None  # images/s
    iqr: float | None = None  # images/s
    noisy: bool | None = None
    latency_ms: dict[str, float] | None = None
    time_s: dict[str, float] | None = None  # median, iqr, min of one call
    samples_s: list[float] = field(default_factory=list)
    images_per_call: int | None = None
    warmup_calls: int | None = None
    parity: dict[str, float | bool | str] | None = None
    export_s: float | None = None
    export_reused: bool | None = None
    artifact: str | None = None
    artifact_bytes: int | None = None
    first_call_s: float | None = None
    peak_rss_bytes: int | None = None
    cuda_max_memory_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    #: one per round this entry was timed in, in time order: round, position in that round's
    #: order, start (seconds after its group's timing began), calls; ``samples_s`` is their
    #: concatenation.  None in files of schema 1: all samples are then one round.
    rounds: list[dict[str, Any]] | None = None
    group: int | None = None  # entries of one group were timed together (interleaved)
    between_rounds: float | None = None  # IQR of the round medians over their median
    #: what the model computes (issue 13): per-image multiply-accumulates and parameters of the model
    #: as timed, achieved GMAC/s, the machine's measured GEMM peak and the fraction of it reached
    macs: int | None = None
    params: int | None = None
    gmacs_per_s: float | None = None
    peak_gmacs_per_s: float | None = None
    efficiency: float | None = None
    energy: dict[str, Any] | None = None  # joules per image and its source, or {"unavailable": why}
    #: issue 21: the speed adjusted by the machine-speed canary timed next to each block (raw kept
    #: above); ``intervals``: "confidence" and "rerun", each labelled; ``canary``: its name, the
    #: reference it scales to and where that came from, its cost, the adjusted GMAC/s and efficiency
    adjusted_images_per_second: float | None = None
    intervals: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    side: str | None = None  # ``levit-bench ab``: "base" or "new" (absent from other files)
    end_to_end: dict[str, Any] | None = None  # ``run --input jpeg`` (schema 6, ``e2e_record.py``; else absent)

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @classmethod
    def of(cls, identity: Identity, status: Status = Status.SKIPPED, reason: str = "",
           facts: ExportFacts | None = None) -> Entry:
        """An entry for ``identity`` ending as ``status``, with what its preparation found."""
        entry = cls(identity, status, reason)
        if facts is not None:
            entry.export_s, entry.export_reused = facts.export_s, facts.export_reused
            entry.artifact, entry.artifact_bytes, entry.parity = facts.artifact, facts.artifact_bytes, facts.parity
            entry.notes = list(facts.notes)
        return entry

    key = property(lambda self: self.identity.key)  # what compare and the report match entries by

    def to_dict(self) -> dict[str, Any]:
        """The flat form a results file keeps."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "identity"}
        d["status"] = str(self.status)
        d = {k: v for k, v in d.items() if v is not None or k not in ("side", "end_to_end")}  # absent unless set
        return {**self.identity.to_dict(), **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """From a results file's flat entry (keys this version does not know are ignored)."""
        own = {f.name for f in fields(cls)} - {"identity"}
        return cls(Identity.from_dict(data), **{k: v for k, v in data.items() if k in own})

    def record(self, samples_s: Sequence[float], rounds: Sequence[dict[str, Any]], images_per_call: int, *,
               warmup_calls: int | None = None, first_call_s: float | None = None,
               cuda_max_memory_bytes: int | None = None, canary: Reference | None = None,
               canary_cost_s: float | None = None, canary_beta: float = 1.0,
               canary_run_s: float | None = None) -> None:
        """Fill the timing fields from per-call seconds timed in ``rounds`` (one dict per round, as
        the file stores them: ``calls`` is how many of ``samples_s`` it holds); the entry becomes ``ok``.

        The interval is over rounds (``stats.median_time_interval``: order statistics of the round
        medians), so the machine's drift during the run widens it; the noise flag looks at the
        spread of calls and of round medians."""
        self.samples_s = [float(x) for x in samples_s]
        self.rounds = [dict(r) for r in rounds]
        self.images_per_call = images_per_call
        s = summarize_calls(self.samples_s, images_per_call)
        spread = between_round_spread(self.round_samples())
        self.status, self.reason = Status.OK, ""
        self.images_per_second = s.images_per_second
        self.iqr = s.iqr_ips
        self.noisy = s.noisy or spread > NOISE_THRESHOLD
        self.between_rounds = spread
        self.latency_ms = s.latency_ms
        self.time_s = {"median": s.median_s, "iqr": s.iqr_s, "min": s.min_s}
        self.ci95 = list(self.interval())
        self.warmup_calls, self.first_call_s = warmup_calls, first_call_s
        self.peak_rss_bytes = psutil.Process().memory_info().rss
        self.cuda_max_memory_bytes = cuda_max_memory_bytes
        if s.noisy:
            self.notes.append(f"noisy: IQR is {s.rel_iqr:.0%} of the median")
        if spread > NOISE_THRESHOLD:
            self.notes.append(f"noisy: round medians spread {spread:.0%} (IQR over median)")
        self.adjust(canary, canary_cost_s, canary_beta, canary_run_s)

    def adjust(self, canary: Reference | None, cost_s: float | None, beta: float, run_s: float | None) -> None:
        """The canary-adjusted speed (where every round has a canary figure) and the two labelled
        intervals, of the adjusted speed where there is one, else of the raw one.  ``run_s``: the
        median canary of every block of the entry's group (the run's machine factor)."""
        self.canary = self.adjusted_images_per_second = None
        images = self.images_per_call or self.batch_size
        if canary is not None:
            timed = sum(self.samples_s)
            self.canary = {"name": canary.name, "reference_s": canary.reference_s, "reference": canary.source,
                           "beta": beta, "run_s": run_s, "cost_s": cost_s,
                           "cost_share": cost_s / timed if cost_s is not None and timed else None}
        adjusted = self.adjusted_round_samples() if canary is not None else None
        if adjusted is not None:
            self.adjusted_images_per_second = images / float(np.median(np.concatenate(adjusted)))
        self.intervals = labelled_intervals(*((adjusted, images, "adjusted_images_per_second") if adjusted is not None
                                              else (self.round_samples(), images, "images_per_second")))

    def explain(self, macs: int | None, params: int | None, peak_gmacs_per_s: float | None) -> None:
        """Record what the model computes and, for a measured entry, the GMAC/s reached and the
        fraction of the machine's peak that is."""
        self.macs, self.params = macs, params
        if macs and self.ok:
            self.gmacs_per_s = macs * self.images_per_second / 1e9
            if peak_gmacs_per_s and self.gmacs_per_s > peak_gmacs_per_s:
                # a model cannot outrun the machine's dense GEMM: the cached peak is not the machine's
                # (measured while it was loaded, say), and no share of it is shown
                self.notes.append(f"reached {self.gmacs_per_s:.1f} GMAC/s, above the cached GEMM peak "
                                  f"{peak_gmacs_per_s:.1f}: that peak is not this machine's (measured under load?), "
                                  "so no share of it is given; `levit-bench sysinfo --peak --remeasure` measures it again")
            elif peak_gmacs_per_s:
                self.peak_gmacs_per_s = peak_gmacs_per_s
                self.efficiency = self.gmacs_per_s / peak_gmacs_per_s
            if self.canary is not None and self.adjusted_images_per_second:
                adjusted = macs * self.adjusted_images_per_second / 1e9
                self.canary["adjusted_gmacs_per_s"] = adjusted
                self.canary["adjusted_efficiency"] = adjusted / self.peak_gmacs_per_s if self.peak_gmacs_per_s else None

    def round_samples(self) -> list[np.ndarray]:
        """Per-call seconds grouped by round (a file of schema 1: one round)."""
        return split_rounds(self.samples_s, [r["calls"] for r in self.rounds] if self.rounds else None)

    def canary_seconds(self) -> list[float | None]:
        """Each round's canary seconds per call (None where a round, or the file, has none)."""
        return [r.get("canary_s") for r in self.rounds] if self.rounds else [None]

    def adjusted_round_samples(self, reference_s: float | None = None) -> list[np.ndarray] | None:
        """Per-call seconds by round scaled to the canary ``reference_s`` (default: the entry's own
        reference; two runs compared should pass one reference for both); None without a canary."""
        if reference_s is None:
            reference_s = (self.canary or {}).get("reference_s")
        if reference_s is None:
            return None
        return adjusted_rounds(self.round_samples(), self.canary_seconds(), reference_s, self.canary_beta,
                               (self.canary or {}).get("run_s"))

    @property
    def canary_beta(self) -> float:
        """How far the round-to-round canary is applied (``stats.canary_tracking``; 1 in files before it)."""
        return float((self.canary or {}).get("beta", 1.0))

    def interval(self) -> tuple[float, float]:
        """The 95% interval of images/s from the raw samples, as this version computes it (files
        keep theirs in ``ci95``; this recomputes it, e.g. to compare runs of older versions)."""
        lo, hi = median_time_interval(self.round_samples())
        images = self.images_per_call or self.batch_size
        return images / hi, images / lo

    def per_image_rounds(self) -> list[np.ndarray]:
        """Per-image seconds grouped by round: comparable across batch sizes and request counts."""
        images = self.images_per_call or self.batch_size
        return [r / images for r in self.round_samples()]

    @property
    def ok(self) -> bool:
        """Measured, with a speed."""
        return self.status is Status.OK and bool(self.images_per_second)


@dataclass
class RunRecord:
    system: dict[str, Any]
    config: dict[str, Any]
    results: list[Entry] = field(default_factory=list)
    complete: bool = False
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION
    tool: str = "levit-bench"
    tool_version: str = __version__
    accuracy: list[AccuracyRecord] = field(default_factory=list)  # ``levit-bench accuracy`` (optional in files)
    #: ``levit-bench profile --out``: one ``Profile.to_dict()`` per model x backend (optional in files)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    #: ``levit-bench ab``: each side's environment (interpreter, path, versions) and the verdict per
    #: entry (absent from other files)
    ab: dict[str, Any] | None = None
    load: list[LoadRecord] = field(default_factory=list)  # ``levit-bench load`` (optional in files)
    source: str | None = None  # the file it was loaded from (not saved)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source" and
             (f.name != "ab" or self.ab is not None)}
        d["results"] = [_with_unknown(e.to_dict(), e) for e in self.results]
        d["accuracy"] = [_with_unknown(a.to_dict(), a) for a in self.accuracy]
        d["load"] = [_with_unknown(x.to_dict(), x) for x in self.load]
        return _finite(_with_unknown(d, self))

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file + rename): a reader never sees half a file."""
        p = Path(path)
        atomic_write_text(p, json.dumps(self.to_dict(), indent=1) + "\n")
        return p


def _finite(obj: Any) -> Any:
    """JSON has no inf/NaN: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _upgrade_entry(e: dict[str, Any], version: int) -> dict[str, Any]:
    """An entry of an earlier schema as this version names it.  Before 3, the torch backends ran
    LeViT with SDPA attention on CUDA without recording it: such entries get ``attention: sdpa``."""
    if version < 3 and e.get("device") == "cuda" and e.get("backend") in TORCH_BACKENDS \
            and "attention" not in (e.get("options") or {}):
        e = {**e, "options": {**(e.get("options") or {}), "attention": "sdpa"}}
    return e


def schema() -> dict[str, Any]:
    return json.loads(resources.files("levit_bench").joinpath("results.schema.json").read_text())


def load(path: str | os.PathLike) -> RunRecord:
    """Read a results file; anything unreadable or of another schema version is a UserError."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"results file not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read results file {p}: {exc}") from None
    if not isinstance(data, dict) or data.get("tool") != "levit-bench" or "results" not in data:
        raise UserError(f"{p} is not a levit-bench results file")
    version = data.get("schema_version")
    if type(version) is not int or version not in READABLE_VERSIONS:  # "2" and 2.0 are not version 2
        kind = "" if type(version) is int else f" ({'missing' if version is None else 'a ' + type(version).__name__})"
        raise UserError(f"{p} has schema version {version!r}{kind}; this levit-bench reads the integer versions "
                        f"{', '.join(map(str, READABLE_VERSIONS))}")
    # Validation, fast on big files (2,500 entries of 2,000 samples: 28 s with jsonschema.validate):
    # the top level and each entry go through compiled validators, and the samples, the bulk of the
    # file, are checked here with numpy instead of one jsonschema call per number.
    full = schema()
    entry_schema = dict(full["properties"]["results"]["items"])
    entry_schema["properties"] = {**entry_schema["properties"], "samples_s": {"type": "array"}}
    top_schema = {**full, "properties": {**full["properties"], "results": {"type": "array"}}}
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        cls = jsonschema.validators.validator_for(full)
        entry_schema = {k: full[k] for k in ("$schema", "$defs") if k in full} | entry_schema
        for prefix, validator, instances in (
            ("", cls(top_schema), [data]),
            ("results/{}", cls(entry_schema), data["results"] if isinstance(data["results"], list) else []),
        ):
            for i, instance in enumerate(instances):
                error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
                if error is not None:
                    where = "/".join([prefix.format(i)] * bool(prefix) + [str(x) for x in error.absolute_path])
                    raise UserError(
                        f"{p} does not follow the results schema at {where or 'top level'}: {error.message}"
                    ) from None
    import numpy as np

    for i, e in enumerate(data["results"]):
        if not isinstance(e, dict):
            raise UserError(f"{p} does not follow the results schema at results/{i}: {e!r} is not an object")
        what = (f"{p}: entry {i} ({e.get('model')} / {e.get('backend')} / batch {e.get('batch_size')}, "
                f"status {e.get('status')})")
        samples = e.get("samples_s", [])
        if not isinstance(samples, list):
            raise UserError(f"{p} does not follow the results schema at results/{i}/samples_s: "
                            f"{samples!r} is not of type 'array'")
        if not set(map(type, samples)) <= {int, float}:
            j, bad = next((j, v) for j, v in enumerate(samples) if type(v) not in (int, float))
            raise UserError(
                f"{p} does not follow the results schema at results/{i}/samples_s/{j}: {bad!r} is not of type 'number'"
            )
        values = np.asarray(samples, dtype=float)
        bad_mask = ~(np.isfinite(values) & (values >= MIN_CALL_S) & (values <= MAX_CALL_S))
        if bad_mask.any():  # denormals and 1e308 made ratios inf or 0 and let the gate pass
            j = int(np.argmax(bad_mask))
            raise UserError(f"{what}: samples_s[{j}] is {samples[j]!r}; call times must be finite, at least "
                            f"{MIN_CALL_S:g} s and at most {MAX_CALL_S:g} s")
        ips = e.get("images_per_second")
        if ips is not None and (type(ips) not in (int, float) or not (math.isfinite(ips) and ips > 0)):
            raise UserError(f"{what}: images_per_second is {ips!r}; it must be finite and positive")
        rounds = e.get("rounds")
        if rounds and sum(r.get("calls", 0) for r in rounds) != len(samples):
            raise UserError(f"{what}: its rounds hold {sum(r.get('calls', 0) for r in rounds)} calls but samples_s "
                            f"has {len(samples)}")
    entries = [_keep_unknown(Entry.from_dict(_upgrade_entry(e, data["schema_version"])), e) for e in data["results"]]
    # upgraded as it is read: saved again, it is a file of this schema version
    fields = {k: data[k] for k in ("system", "config", "complete", "created", "tool", "tool_version")}
    accuracy = [_keep_unknown(AccuracyRecord.from_dict(a), a) for a in data.get("accuracy") or []]
    profiles = data.get("profiles") or []
    if not isinstance(profiles, list) or not all(isinstance(x, dict) and "categories" in x for x in profiles):
        raise UserError(f"{p}: 'profiles' must be a list of profiles as `levit-bench profile --out` writes them")
    loads = [_keep_unknown(LoadRecord.from_dict(x), x) for x in data.get("load") or []]
    record = RunRecord(results=entries, accuracy=accuracy, profiles=profiles, source=str(p), ab=data.get("ab"),
                       load=loads, **fields)
    return _keep_unknown(record, data)


#: set on what :func:`load` made: the fields of the file this version does not know (a newer
#: version's, which the schema allows), written back by :meth:`RunRecord.to_dict`, so a rewrite
#: (``accuracy --out`` adding records) loses nothing.  Kept off the dataclasses' fields on purpose.
UNKNOWN_FIELDS = "_unknown_fields"


def _keep_unknown(obj: Any, data: dict[str, Any]) -> Any:
    known = set(obj.to_dict()) if hasattr(obj, "identity") else set(obj.__dataclass_fields__)
    object.__setattr__(obj, UNKNOWN_FIELDS, {k: v for k, v in data.items() if k not in known})
    return obj


def _with_unknown(d: dict[str, Any], obj: Any) -> dict[str, Any]:
    return {**d, **{k: v for k, v in getattr(obj, UNKNOWN_FIELDS, {}).items() if k not in d}}
