"""One measured accuracy as saved in a results file (the ``accuracy`` list; ``levit-bench accuracy``).

Kept apart from ``results.Entry`` (a timing): an accuracy record has no samples, and a results file
may hold either or both.  Top-1/top-5 are percentages, as published figures are.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from .spec import RuntimeOptions, Status, threads_text, variant


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class AccuracyRecord:
    """Top-1/top-5 of one model × backend variant × precision on a folder of labelled images."""

    model: str
    backend: str
    device: str
    precision: str
    threads: int
    batch_size: int
    status: Status
    reason: str = ""
    img_size: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: ``file`` (the checkpoint given, or null: the zoo's seeded random weights) and ``hash`` (of the
    #: fused model's weights, as the export cache names them)
    weights: dict[str, Any] | None = None
    #: ``root``, ``fingerprint`` (sha256 of the evaluated files' names and bytes), ``images``
    #: (evaluated), ``found`` (labelled images in the folder), ``limit``, ``skipped`` (unreadable, with
    #: ``skipped_files``), ``transform`` (timm data-config keys of the eval preprocessing)
    data: dict[str, Any] | None = None
    top1: float | None = None  # percent
    top5: float | None = None  # percent
    correct1: int | None = None
    correct5: int | None = None
    agreement: float | None = None  # share of images whose top-1 is the eager fp32 reference's
    parity: dict[str, Any] | None = None  # parity.compare_logits on the seeded batch, before evaluating
    eval_s: float | None = None  # wall seconds of the evaluation (not a speed figure)
    measured_at: str = field(default_factory=utc_now)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK and self.top1 is not None

    @property
    def variant(self) -> str:
        return variant(self.backend, self.precision, RuntimeOptions.from_dict(self.options))

    @property
    def random_weights(self) -> bool:
        """Evaluated with the zoo's seeded random weights: not the model's accuracy."""
        return not (self.weights or {}).get("file")

    def label(self) -> str:
        return f"{self.model} / {self.variant} / {self.device} {self.precision} / {threads_text(self.threads)}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = str(self.status)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccuracyRecord:
        """From a results file (keys this version does not know are ignored)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
