"""One measured accuracy as saved in a results file (the ``accuracy`` list; ``levit-bench accuracy``).

Kept apart from ``results.Entry`` (a timing): an accuracy record has no samples, and a results file
may hold either or both.  Top-1/top-5 are percentages, as published figures are.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from .spec import Identified, Identity, Status


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class AccuracyRecord(Identified):
    """Top-1/top-5 of one model × backend variant × precision on a folder of labelled images."""

    identity: Identity
    status: Status
    reason: str = ""
    #: ``file`` (the checkpoint given, or null: the zoo's seeded random weights) and ``hash`` (of the
    #: fused model's weights: the identity's ``weights_hash``)
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
    def key(self) -> tuple:
        """What a later record of the same export replaces: the identity without the batch size
        (which does not change what is computed), with the weights (which do)."""
        i = self.identity
        return i.model, i.variant, i.device, i.precision, i.threads, i.img_size, i.weights_hash

    @property
    def random_weights(self) -> bool:
        """Evaluated with the zoo's seeded random weights: not the model's accuracy."""
        return not (self.weights or {}).get("file")

    def to_dict(self) -> dict[str, Any]:
        """The flat form a results file keeps."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "identity"}
        d["status"] = str(self.status)
        return {**self.identity.to_dict(), **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccuracyRecord:
        """From a results file (keys this version does not know are ignored); the weights hash of
        files before schema 3 is read from ``weights.hash``."""
        data = dict(data)
        if data.get("weights_hash") is None and isinstance(data.get("weights"), dict):
            data["weights_hash"] = data["weights"].get("hash")
        own = {f.name for f in fields(cls)} - {"identity"}
        return cls(Identity.from_dict(data), **{k: v for k, v in data.items() if k in own})
