"""The versioned results file: entries, run records, atomic writes, loading with clear errors.

Merging several files into one view is the report's job (``report/merge.py``).

Schema (documented in docs/results-schema.md, machine-checkable in results.schema.json):
``schema_version``, ``tool``, ``tool_version``, ``created``, ``complete``, ``system``, ``config``,
``results`` (one entry per model x backend x batch size: its identity and how it ended, and its
parts, ``entry_parts.py``).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from . import __version__
from .accuracy_record import AccuracyRecord
from .atomic import atomic_write_text
from .entry_parts import PARTS, ExportFacts, Explain, Timing
from .errors import UserError
from .load_record import LoadRecord
from .spec import TORCH_BACKENDS, Identified, Identity, Status

#: what each version added, and how earlier files are read: the top of docs/results-schema.md
SCHEMA_VERSION = 7
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7)
#: the call times a results file may hold: below a nanosecond no clock measures, above a day no
#: call of a benchmark runs (outside these, ratios overflow to inf or 0 and decide nothing)
MIN_CALL_S, MAX_CALL_S = 1e-9, 86400.0


@dataclass
class Entry(Identified):
    """One measured (or not measured) step, as saved in a results file: its :class:`Identity`
    (what was measured), how it ended, its notes, and its parts: what preparing it found
    (``export``), its ``timing`` (None unless it was timed), what the model computes (``explain``,
    None where the model was not counted), the ``energy`` and the ``end_to_end`` path.  A file of
    schema 7 keeps the identity and how it ended flat and nests each part (``to_dict``/``from_dict``)."""

    identity: Identity
    status: Status = Status.SKIPPED
    reason: str = ""
    #: exporter used, precision the runtime reports, noise warnings (``Timing.noise_notes``), …
    notes: list[str] = field(default_factory=list)
    group: int | None = None  # entries of one group were timed together (interleaved)
    side: str | None = None  # ``levit-bench ab``: "base" or "new" (absent from other files)
    export: ExportFacts = field(default_factory=ExportFacts)  # its notes are the entry's
    timing: Timing | None = None
    explain: Explain | None = None
    energy: dict[str, Any] | None = None  # joules per image and its source, or {"unavailable": why}
    end_to_end: dict[str, Any] | None = None  # ``run --input jpeg`` (schema 6, ``e2e_record.py``; else absent)

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @classmethod
    def of(cls, identity: Identity, status: Status = Status.SKIPPED, reason: str = "",
           facts: ExportFacts | None = None) -> Entry:
        """An entry for ``identity`` ending as ``status``, with what its preparation found (the
        backend's notes become the entry's)."""
        entry = cls(identity, status, reason)
        if facts is not None:
            entry.export, entry.notes = replace(facts, notes=[]), list(facts.notes)
        return entry

    key = property(lambda self: self.identity.key)  # what compare and the report match entries by

    def add_timing(self, timing: Timing) -> None:
        """Timed: the entry keeps ``timing`` (``Timing.measure``), becomes ``ok`` and notes its noise."""
        self.timing, self.status, self.reason = timing, Status.OK, ""
        self.notes.extend(timing.noise_notes())

    def add_explain(self, macs: int | None, params: int | None, peak_gmacs_per_s: float | None) -> None:
        """What the model computes (``Explain.of``): for a measured entry the GMAC/s reached and the
        fraction of the machine's peak that is; a note where the speed is above that peak."""
        self.explain = Explain.of(macs, params, peak_gmacs_per_s, self.timing if self.ok else None)
        if (note := self.explain.above_peak(peak_gmacs_per_s)) is not None:
            self.notes.append(note)

    @property
    def ok(self) -> bool:
        """Measured, with a speed."""
        return self.status is Status.OK and self.timing is not None and bool(self.timing.images_per_second)

    def to_dict(self) -> dict[str, Any]:
        """The form a results file of schema 7 keeps: the identity and how it ended flat, each part nested."""
        d: dict[str, Any] = {**self.identity.to_dict(), "status": str(self.status), "reason": self.reason,
                             "notes": self.notes, "group": self.group}
        if self.side is not None:  # absent unless set
            d["side"] = self.side
        d.update({name: None if getattr(self, name) is None else getattr(self, name).to_dict() for name in PARTS})
        d["energy"] = self.energy
        if self.end_to_end is not None:
            d["end_to_end"] = self.end_to_end
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """From an entry of a schema-7 file (keys this version does not know are ignored)."""
        flat = {k: data[k] for k in ("status", "reason", "notes", "group", "side", "energy", "end_to_end") if k in data}
        parts = {name: part.from_dict(data[name]) for name, part in PARTS.items() if isinstance(data.get(name), dict)}
        return cls(Identity.from_dict(data), **flat, **parts)


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
    LeViT with SDPA attention on CUDA without recording it: such entries get ``attention: sdpa``.
    Before 7 every field was flat: each part's keys (``entry_parts.PARTS``) move into it; a timing
    or explain part whose keys are all empty is None, and a timing without ``images_per_call``
    (none is known) gets the batch size.  Keys no part knows stay flat."""
    if version < 3 and e.get("device") == "cuda" and e.get("backend") in TORCH_BACKENDS \
            and "attention" not in (e.get("options") or {}):
        e = {**e, "options": {**(e.get("options") or {}), "attention": "sdpa"}}
    if version < 7:
        names = {name: [f.name for f in fields(part) if f.name != "notes"] for name, part in PARTS.items()}
        nested = {name: {k: e[k] for k in keys if k in e} for name, keys in names.items()}
        e = {k: v for k, v in e.items() if not any(k in keys for keys in names.values())}
        for name in ("timing", "explain"):
            if not any(v not in (None, []) for v in nested[name].values()):
                nested[name] = None
        if nested["timing"] is not None and nested["timing"].get("images_per_call") is None:
            nested["timing"]["images_per_call"] = e.get("batch_size")
        e.update(nested)
    return e


def schema() -> dict[str, Any]:
    return json.loads(resources.files("levit_bench").joinpath("results.schema.json").read_text())


def _fast_schemas(full: dict[str, Any], version: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of the top level without the entries, and of one entry of ``version`` (flat before
    7), with ``samples_s`` checked as a list only: :func:`load` checks the numbers with numpy."""
    defs = {**full["$defs"], "timing": dict(full["$defs"]["timing"])}
    defs["timing"]["properties"] = {**defs["timing"]["properties"], "samples_s": {"type": "array"}}
    top = {k: v for k, v in full.items() if k != "allOf"}
    top["properties"] = {**full["properties"], "results": {"type": "array"}}
    entry = {"$schema": full["$schema"], "$defs": defs, "$ref": "#/$defs/" + ("entry" if version >= 7 else "flat_entry")}
    return top, entry


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
    # the top level and each entry (as the file has it: flat before schema 7) go through compiled
    # validators, and the samples, the bulk of the file, are checked here with numpy instead of one
    # jsonschema call per number.
    full = schema()
    top_schema, entry_schema = _fast_schemas(full, version)
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        cls = jsonschema.validators.validator_for(full)
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

    raw = data["results"] if isinstance(data["results"], list) else []
    for i, e in enumerate(raw):
        if not isinstance(e, dict):
            raise UserError(f"{p} does not follow the results schema at results/{i}: {e!r} is not an object")
    upgraded = [_upgrade_entry(e, version) for e in raw]  # saved again, a file of this schema version
    at = "timing/" if version >= 7 else ""  # where the timing keys are in the file
    for i, e in enumerate(upgraded):
        what = (f"{p}: entry {i} ({e.get('model')} / {e.get('backend')} / batch {e.get('batch_size')}, "
                f"status {e.get('status')})")
        timing = e.get("timing") if isinstance(e.get("timing"), dict) else {}
        samples = timing.get("samples_s", [])
        if not isinstance(samples, list):
            raise UserError(f"{p} does not follow the results schema at results/{i}/{at}samples_s: "
                            f"{samples!r} is not of type 'array'")
        if not set(map(type, samples)) <= {int, float}:
            j, bad = next((j, v) for j, v in enumerate(samples) if type(v) not in (int, float))
            raise UserError(f"{p} does not follow the results schema at results/{i}/{at}samples_s/{j}: "
                            f"{bad!r} is not of type 'number'")
        values = np.asarray(samples, dtype=float)
        bad_mask = ~(np.isfinite(values) & (values >= MIN_CALL_S) & (values <= MAX_CALL_S))
        if bad_mask.any():  # denormals and 1e308 made ratios inf or 0 and let the gate pass
            j = int(np.argmax(bad_mask))
            raise UserError(f"{what}: {at.replace('/', '.')}samples_s[{j}] is {samples[j]!r}; call times must be "
                            f"finite, at least {MIN_CALL_S:g} s and at most {MAX_CALL_S:g} s")
        ips = timing.get("images_per_second")
        if ips is not None and (type(ips) not in (int, float) or not (math.isfinite(ips) and ips > 0)):
            raise UserError(f"{what}: {at.replace('/', '.')}images_per_second is {ips!r}; it must be finite and positive")
        rounds = timing.get("rounds")
        if rounds and sum(r.get("calls", 0) for r in rounds) != len(samples):
            raise UserError(f"{what}: its rounds hold {sum(r.get('calls', 0) for r in rounds)} calls but samples_s "
                            f"has {len(samples)}")
    entries = [_keep_unknown(Entry.from_dict(e), e) for e in upgraded]
    top = {k: data[k] for k in ("system", "config", "complete", "created", "tool", "tool_version")}
    accuracy = [_keep_unknown(AccuracyRecord.from_dict(a), a) for a in data.get("accuracy") or []]
    profiles = data.get("profiles") or []
    if not isinstance(profiles, list) or not all(isinstance(x, dict) and "categories" in x for x in profiles):
        raise UserError(f"{p}: 'profiles' must be a list of profiles as `levit-bench profile --out` writes them")
    loads = [_keep_unknown(LoadRecord.from_dict(x), x) for x in data.get("load") or []]
    record = RunRecord(results=entries, accuracy=accuracy, profiles=profiles, source=str(p), ab=data.get("ab"),
                       load=loads, **top)
    return _keep_unknown(record, data)


#: set on what :func:`load` made: the fields of the file this version does not know (a newer
#: version's, which the schema allows), written back by :meth:`RunRecord.to_dict`, so a rewrite
#: (``accuracy --out`` adding records) loses nothing.  Kept off the dataclasses' fields on purpose.
UNKNOWN_FIELDS = "_unknown_fields"


def _keep_unknown(obj: Any, data: dict[str, Any]) -> Any:
    # an entry and its parts: what to_dict writes (a part's field it leaves out, as the export's notes
    # that are the entry's own, is unknown to the file); a record: its fields
    writes = isinstance(obj, Entry) or type(obj) in PARTS.values()
    known = set(obj.to_dict()) if writes else set(obj.__dataclass_fields__)
    object.__setattr__(obj, UNKNOWN_FIELDS, {k: v for k, v in data.items() if k not in known})
    for name in PARTS if isinstance(obj, Entry) else ():  # and those of its parts
        if getattr(obj, name) is not None and isinstance(data.get(name), dict):
            _keep_unknown(getattr(obj, name), data[name])
    return obj


def _with_unknown(d: dict[str, Any], obj: Any) -> dict[str, Any]:
    d = {**d, **{k: v for k, v in getattr(obj, UNKNOWN_FIELDS, {}).items() if k not in d}}
    for name in PARTS if isinstance(obj, Entry) else ():
        if isinstance(d.get(name), dict):
            d[name] = _with_unknown(d[name], getattr(obj, name))
    return d
