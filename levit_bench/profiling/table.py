"""Profiles as rich tables: the category shares per entry, then each entry's largest runtime ops."""
from __future__ import annotations

import math
from collections.abc import Sequence

from rich.table import Table

from .categories import CATEGORIES
from .record import Profile


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.1%}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f}"


#: column headers of the category shares (the table's caption gives the full names)
SHORT = {"matmul": "matmul", "conv": "conv", "depthwise_conv": "dw conv", "attention_softmax": "softmax",
         "elementwise": "eltwise", "norm": "norm", "layout": "layout", "other": "other"}


def overhead_text(p: Profile) -> str:
    """``+3.4% [-1.0, +8.1]``: the overhead and its 95% interval (paired over rounds)."""
    lo, hi = p.overhead_ci95
    if not math.isfinite(p.overhead):
        return ""
    return f"{p.overhead:+.1%} [{lo * 100:+.1f}, {hi * 100:+.1f}]" if math.isfinite(lo) else f"{p.overhead:+.1%}"


def categories_table(profiles: Sequence[Profile]) -> Table:
    """One row per entry: each category's share of the op time, coverage (the named categories'
    share), op time and wall time per profiled call, and the profiler's overhead (profiled against
    unprofiled calls, medians)."""
    caption = "; ".join(f"{SHORT[k]}: {v}" for k, v in CATEGORIES.items() if SHORT[k] != v)
    table = Table(title="share of profiled op time per category", title_justify="left", caption=caption,
                  caption_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("backend", no_wrap=True)
    for key in CATEGORIES:
        table.add_column(SHORT[key], justify="right")
    for col in ("coverage", "op ms", "wall ms", "overhead [95%]"):
        table.add_column(col, justify="right")
    for p in profiles:
        if not p.ok:
            table.add_row(p.model, p.variant, f"[red]failed[/]: {p.reason}", *[""] * (len(CATEGORIES) + 3))
            continue
        shares = p.categories
        cover = f"{p.coverage:.1%}"
        table.add_row(p.model, p.variant, *[_pct(shares[k]) if shares[k] > 0 else "·" for k in CATEGORIES],
                      cover if p.coverage >= 0.9 else f"[yellow]{cover}[/]", _ms(p.op_s), _ms(p.wall_s),
                      overhead_text(p))
    return table


def ops_table(profile: Profile, top: int) -> Table:
    """The ``top`` largest runtime ops of one entry, then the largest unclassified ones (``other``)."""
    title = f"{profile.label()} · batch {profile.batch_size} · {profile.calls} profiled calls"
    table = Table(title=title, title_justify="left", caption=profile.profiler, caption_justify="left")
    for col, justify in (("runtime op", "left"), ("category", "left"), ("share", "right"), ("ms / call", "right"),
                         ("runs / call", "right")):
        table.add_column(col, justify=justify, no_wrap=col == "runtime op")
    total = profile.op_s
    shown = profile.top(top)
    others = [o for o in profile.top(top, "other") if o not in shown]
    for o in shown + others:
        table.add_row(o.name, CATEGORIES[o.category], _pct(o.seconds / total if total else 0.0), _ms(o.seconds),
                      f"{o.count:g}")
    return table


def summary_lines(profile: Profile) -> list[str]:
    """The entry's notes, and what its profiled calls cost against unprofiled ones."""
    lo, hi = profile.overhead_ci95
    rounds = len(profile.profiled_rounds)
    lines = [f"{profile.label()}: unprofiled {_ms(profile.unprofiled_s)} ms per call, profiled "
             f"{_ms(profile.profiled_s)} ms (medians); profiler overhead {profile.overhead:+.1%} "
             f"(95% interval {lo:+.1%} to {hi:+.1%}, paired over {rounds} rounds); op time is "
             f"{profile.op_share_of_wall:.0%} of the profiled calls' wall time"]
    return lines + [f"{profile.label()}: {n}" for n in profile.notes]
