"""What a profile of one model × backend holds, and its JSON form.

Op times are per profiled call (a call runs one batch, or one batch per request of OpenVINO's async
queue).  The category shares are of the profiled *op* time: what the runtime's profiler attributes
to operations.  The rest of a call's wall time (framework dispatch, Python, the runtime's own
bookkeeping) is ``wall_s - op_s``, reported beside it, never spread over the categories.

The raw call times of both kinds of block are kept by round: a round timed one unprofiled and one
profiled block back to back, so the profiler's overhead is a paired ratio over rounds
(``stats.paired_ratio``), with its interval.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, fields
from typing import Any

from ..spec import Identified, Identity
from ..stats import Ratio, paired_ratio
from .categories import CATEGORIES, NAMED


@dataclass
class OpTime:
    """One runtime op name within one category: seconds and occurrences per profiled call."""

    name: str
    category: str
    seconds: float
    count: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "seconds": self.seconds, "count": self.count}


@dataclass
class Profile(Identified):
    """The op-time breakdown of one model × backend variant at one setting."""

    identity: Identity
    status: str = "ok"  # ok, or failed (export, parity or the runtime broke: ``reason`` says how)
    reason: str = ""
    profiler: str = ""  # which profiler, in words
    ops: list[OpTime] = field(default_factory=list)  # largest first
    #: per-call seconds by round: the run's own call, and the call under the profiler
    unprofiled_rounds: list[list[float]] = field(default_factory=list)
    profiled_rounds: list[list[float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def calls(self) -> int:
        """Profiled calls (the op times are averaged over them)."""
        return sum(len(r) for r in self.profiled_rounds)

    @property
    def op_s(self) -> float:
        """Op time per call (the sum every share is a fraction of)."""
        return sum(o.seconds for o in self.ops)

    @property
    def wall_s(self) -> float:
        """Mean wall time of a profiled call (the op times are means too)."""
        calls = [s for r in self.profiled_rounds for s in r]
        return statistics.fmean(calls) if calls else math.nan

    @property
    def profiled_s(self) -> float:
        """Median wall time of a profiled call."""
        return _median(self.profiled_rounds)

    @property
    def unprofiled_s(self) -> float:
        """Median wall time of an unprofiled call, timed in the same rounds."""
        return _median(self.unprofiled_rounds)

    @property
    def categories(self) -> dict[str, float]:
        """Category -> fraction of the profiled op time; every category present, summing to 1."""
        total = self.op_s
        shares = dict.fromkeys(CATEGORIES, 0.0)
        for o in self.ops:
            shares[o.category] += o.seconds / total if total > 0 else 0.0
        return shares

    @property
    def coverage(self) -> float:
        """Share of the op time in the seven named categories (not ``other``)."""
        shares = self.categories
        return sum(shares[k] for k in NAMED)

    def overhead_ratio(self) -> Ratio | None:
        """Profiled call time over unprofiled, paired by round, with its 95% interval."""
        pairs = [(u, p) for u, p in zip(self.unprofiled_rounds, self.profiled_rounds) if u and p]
        if not pairs:
            return None
        return paired_ratio([u for u, _ in pairs], [p for _, p in pairs])

    @property
    def overhead(self) -> float:
        """How much longer a profiled call takes than an unprofiled one (0.05: 5% longer)."""
        ratio = self.overhead_ratio()
        return ratio.value - 1 if ratio else math.nan

    @property
    def overhead_ci95(self) -> tuple[float, float]:
        ratio = self.overhead_ratio()
        return (ratio.ci95[0] - 1, ratio.ci95[1] - 1) if ratio else (math.nan, math.nan)

    @property
    def op_share_of_wall(self) -> float:
        """Op time over the wall time of the profiled calls (below 1: time outside any op)."""
        return self.op_s / self.wall_s if self.wall_s > 0 else math.nan

    def top(self, n: int, category: str | None = None) -> list[OpTime]:
        """The ``n`` largest ops (of one category, when given)."""
        ops = [o for o in self.ops if category is None or o.category == category]
        return sorted(ops, key=lambda o: -o.seconds)[:n]

    def label(self) -> str:
        return f"{self.model} · {self.variant}"

    def to_dict(self) -> dict[str, Any]:
        """The stored fields, then the figures derived from them (recomputed on load, never read)."""
        out: dict[str, Any] = {**self.identity.to_dict(), "variant": self.variant,
                               **{f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("ops", "identity")}}
        total = self.op_s
        lo, hi = self.overhead_ci95
        out.update(categories=self.categories if self.ok else {}, coverage=self.coverage if self.ok else None,
                   calls=self.calls, op_s=total, wall_s=_finite(self.wall_s),
                   op_share_of_wall=_finite(self.op_share_of_wall), profiled_s=_finite(self.profiled_s),
                   unprofiled_s=_finite(self.unprofiled_s), overhead=_finite(self.overhead),
                   overhead_ci95=[_finite(lo), _finite(hi)],
                   ops=[{**o.to_dict(), "fraction": o.seconds / total if total > 0 else 0.0} for o in self.ops])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """From :meth:`to_dict`'s form (derived figures are recomputed, not read)."""
        names = {f.name for f in fields(cls)} - {"ops", "identity"}
        ops = [OpTime(o["name"], o["category"], float(o["seconds"]), float(o["count"])) for o in data.get("ops", [])]
        unknown = {o.category for o in ops} - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown op categories {sorted(unknown)} (known: {', '.join(CATEGORIES)})")
        return cls(Identity.from_dict(data), **{k: v for k, v in data.items() if k in names}, ops=ops)


def _median(rounds: list[list[float]]) -> float:
    calls = [s for r in rounds for s in r]
    return statistics.median(calls) if calls else math.nan


def _finite(x: float) -> float | None:
    """JSON has no NaN: an undefined figure (nothing timed) is null."""
    return x if math.isfinite(x) else None
