"""One latency-under-load measurement as saved in a results file (the ``load`` list; ``levit-bench
load``, issue 22).

Kept apart from ``results.Entry`` (a timing of back-to-back calls): a load record holds levels, each
with its offered and achieved rate, latency percentiles with bounds, the queue over time and the
raw per-request latencies; and, with an SLO, the bracket the search proved.  Every level is a plain
dict (``load.summarize_level`` makes it; docs/results-schema.md lists its keys).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .accuracy_record import utc_now
from .spec import EntryKey, Identified, Identity, Status

SCENARIOS = ("single-stream", "server", "offline")
SWEEPS = ("rate", "concurrency")


@dataclass
class LoadRecord(Identified):
    """One model × backend variant × batch size under one scenario: its levels, and what they show."""

    identity: Identity
    status: Status
    scenario: str
    reason: str = ""
    sweep: str | None = None  # "rate", "concurrency" or None (one level, or offline's grid)
    levels: list[dict[str, Any]] = field(default_factory=list)  # in the order they were measured
    #: the SLO searched for (``--slo-p99-ms``) and what the search proved: ``met`` and ``failed`` (the
    #: highest rate whose p99 met it and the lowest above that did not, each with its p99 interval),
    #: ``proven`` (each side's interval lies on its side of the SLO) and the statement in words
    slo_p99_ms: float | None = None
    search: dict[str, Any] | None = None
    peak_rate: float | None = None  # requests/s: the highest rate meeting the SLO (with one), else sustained
    #: single-stream: LoadGen's early-stopping verdict per percentile (``stats.EarlyStop.to_dict``)
    early_stopping: list[dict[str, Any]] | None = None
    #: offline: the level of the best throughput (its index in ``levels``)
    best_level: int | None = None
    service_ms: float | None = None  # the warm-up's mean call: what the automatic rates are fractions of
    #: how concurrency was had: worker threads, threads per worker, and the runtime's own facts
    #: (OpenVINO's streams and infer requests, ONNX Runtime's one session run from several threads)
    concurrency: dict[str, Any] | None = None
    measured_at: str = field(default_factory=utc_now)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK and bool(self.levels)

    @property
    def key(self) -> tuple[EntryKey, str]:
        """What compare and the report match load records by: the entry's key and the scenario."""
        return self.identity.key, self.scenario

    def sustained(self) -> list[dict[str, Any]]:
        """The levels that were not ended as unsustainable."""
        return [lv for lv in self.levels if not lv.get("unsustainable")]

    def p99_ms(self, level: dict[str, Any]) -> float | None:
        return ((level.get("latency") or {}).get("p99") or {}).get("ms")

    def to_dict(self) -> dict[str, Any]:
        """The flat form a results file keeps."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "identity"}
        d["status"] = str(self.status)
        return {**self.identity.to_dict(), **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadRecord:
        """From a results file (keys this version does not know are ignored)."""
        own = {f.name for f in fields(cls)} - {"identity"}
        return cls(Identity.from_dict(data), **{k: v for k, v in data.items() if k in own})
