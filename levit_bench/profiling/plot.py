"""A stacked-bar PNG of where each profiled entry spends its op time, one bar per model × backend."""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from ..atomic import atomic_write_bytes
from .categories import CATEGORIES
from .record import Profile

#: one colour per category, the same in every figure ("other" grey)
COLOURS = {"matmul": "tab:blue", "conv": "tab:orange", "depthwise_conv": "tab:brown",
           "attention_softmax": "tab:red", "elementwise": "tab:green", "norm": "tab:purple",
           "layout": "tab:olive", "other": "lightgrey"}


def plot_profiles(profiles: Sequence[Profile], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write :func:`profiles_png` to ``path`` (atomically, folders made) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, profiles_png(profiles, title))
    return path


def profiles_png(profiles: Sequence[Profile], title: str | None = None) -> bytes:
    """The stacked bars as PNG bytes, one bar per profiled entry in the order given (failed ones
    are left out; with none profiled there is nothing to draw: ValueError).  Agg canvas: no
    display, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [p for p in profiles if p.ok]
    if not shown:
        raise ValueError("no profiled entry to plot")
    fig = Figure(figsize=(9.0, 1.8 + 0.4 * len(shown)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = list(range(len(shown)))[::-1]  # the first entry on top
    left = [0.0] * len(shown)
    for key, label in CATEGORIES.items():
        widths = [100 * p.categories[key] for p in shown]
        ax.barh(rows, widths, left=left, color=COLOURS[key], label=label, edgecolor="white", linewidth=0.5)
        for row, start, width in zip(rows, left, widths):
            if width >= 6:
                ax.text(start + width / 2, row, f"{width:.0f}", ha="center", va="center", fontsize=7)
        left = [a + b for a, b in zip(left, widths)]
    for row, p in zip(rows, shown):  # shares hide speed: each bar's op time per call beside it
        ax.text(101, row, f"{p.op_s * 1e3:,.0f} ms", va="center", ha="left", fontsize=7, clip_on=False)
    ax.set_yticks(rows, [f"{p.model} · {p.variant}" for p in shown], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of profiled op time (%); op time per call at the right")
    first = shown[0]
    ax.set_title(title or f"where the op time goes: {first.device} {first.precision}, batch {first.batch_size}, "
                 f"{first.threads} thread{'s' if first.threads != 1 else ''}", fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
