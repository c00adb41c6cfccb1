"""The versioned results file: entries, run records, atomic writes, loading with clear errors.

Merging several files into one view is the report's job (``report.py``).

Schema (documented in docs/results-schema.md, machine-checkable in results.schema.json):
``schema_version``, ``tool``, ``tool_version``, ``created``, ``complete``, ``system``, ``config``,
``results`` (one entry per model x backend x batch size).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import atomic_write_text
from .errors import UserError

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "skipped")


def threads_text(n: int) -> str:
    """``1 thread``, ``2 threads``: how every label and table names a thread count."""
    return f"{n} thread{'s' if n != 1 else ''}"


@dataclass
class Entry:
    """One measured (or not measured) model x backend x batch size."""

    model: str
    backend: str
    device: str
    precision: str
    batch_size: int
    threads: int
    status: str
    reason: str = ""
    img_size: int | None = None
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
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return (self.model, self.backend, self.device, self.precision, self.batch_size, self.threads)

    def label(self) -> str:
        return f"{self.model} / {self.backend} / {self.device} {self.precision} / batch {self.batch_size} / {threads_text(self.threads)}"


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
    source: str | None = None  # the file it was loaded from (not saved)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        return _finite(d)

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
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UserError(
            f"{p} has schema version {data.get('schema_version')}; this levit-bench reads version {SCHEMA_VERSION}"
        )
    try:
        import jsonschema

        jsonschema.validate(data, schema())
    except ImportError:
        pass
    except jsonschema.ValidationError as exc:
        where = "/".join(str(x) for x in exc.absolute_path)
        raise UserError(f"{p} does not follow the results schema at {where or 'top level'}: {exc.message}") from None
    entries = [Entry(**{k: v for k, v in e.items() if k in Entry.__dataclass_fields__}) for e in data["results"]]
    fields = {k: data[k] for k in ("system", "config", "complete", "created", "schema_version", "tool", "tool_version")}
    return RunRecord(results=entries, source=str(p), **fields)
