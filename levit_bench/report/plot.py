"""The speed-accuracy plot (the paper's Figure 1 form) and its section."""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..accuracy_record import AccuracyRecord
from ..spec import BASELINE_BACKEND, Conditions
from .choice import best_entry, choose_setting, setting_words
from .merge import Machine, Sourced, base_model, family_of, sources_text, spec_of

FAMILY_LABELS = {"levit": "LeViT", "deit": "DeiT", "efficientnet": "EfficientNet", "graft": "graft", "timm": "timm"}
FAMILY_STYLE = {"levit": ("tab:red", "o"), "deit": ("tab:blue", "s"), "efficientnet": ("tab:green", "^"),
                "graft": ("tab:purple", "D"), "timm": ("tab:gray", "x")}


@dataclass
class Point:
    model: str  # as measured (may be a _conv layout)
    family: str
    top1: float
    images_per_second: float
    source: Sourced
    measured: AccuracyRecord | None = None  # top-1 measured here (``levit-bench accuracy``), trained weights


@dataclass
class Panel:
    title: str
    points: list[Point]
    setting: str
    left_out: list[str] = field(default_factory=list)  # models measured on this device, not at this setting


def panel_for(machine: Machine, device: str, measured: Sequence[AccuracyRecord] = ()) -> Panel | None:
    """One setting and one backend variant (the form of the paper's figure: one runtime), token/conv
    merged, for the models with a published top-1; ``measured``: accuracy records to mark beside it."""
    ok = [s for s in machine.ok() if s.entry.device == device and _published_top1(s.entry.model) is not None]
    coverage: dict[Conditions, set] = {}
    for s in ok:
        coverage.setdefault(s.entry.conditions, set()).add(base_model(s.entry.model))
    setting = choose_setting({k: len(v) for k, v in coverage.items()})
    if setting is None:
        return None
    at = [s for s in ok if s.entry.conditions == setting]
    chosen = choose_variant(at)
    points = []
    for model in sorted({base_model(s.entry.model) for s in at if s.entry.variant == chosen}):
        best = best_entry(s for s in at if base_model(s.entry.model) == model and s.entry.variant == chosen)
        points.append(Point(best.entry.model, family_of(model), _published_top1(model), best.entry.timing.images_per_second,
                            best, measured_for(measured, model, chosen, setting.precision)))
    shown = {base_model(p.model) for p in points}
    left_out = sorted({base_model(s.entry.model) for s in ok} - shown)
    return Panel(f"{device} · {machine.title}", points, f"{setting_words(setting)}, {chosen}", left_out)


def choose_variant(entries: Sequence[Sourced]) -> str:
    """The backend variant that covers most models; ties go to plain ``torch``, then by name."""
    models: dict[str, set] = {}
    for s in entries:
        models.setdefault(s.entry.variant, set()).add(base_model(s.entry.model))
    return min(models, key=lambda v: (-len(models[v]), v != BASELINE_BACKEND, v))


def measured_for(records: Sequence[AccuracyRecord], model: str, variant: str, precision: str) -> AccuracyRecord | None:
    """The newest measured accuracy of ``model`` (either layout) with trained weights: of the panel's
    own variant and precision when measured, else of eager torch fp32 (the model itself)."""
    usable = [r for r in records if r.ok and not r.random_weights and base_model(r.model) == model]
    for wanted in ((variant, precision), (BASELINE_BACKEND, "fp32")):
        same = [r for r in usable if (r.variant, r.precision) == wanted]
        if same:
            return max(same, key=lambda r: r.measured_at)
    return None


def _published_top1(model: str) -> float | None:
    spec = spec_of(model)
    return spec.published.top1 if spec and spec.published else None


def speed_accuracy_panels(machines: Sequence[Machine]) -> list[Panel]:
    """One panel per real machine and device; measured accuracy from any of the files (it is the
    model's, not the machine's)."""
    measured = [a for m in machines for r in m.records for a in r.accuracy]
    return [p for m in machines if not m.emulated for d in m.devices() if (p := panel_for(m, d, measured)) is not None]


def _label_below(point, points) -> bool:
    """Whether a point's label goes below it: a faster point sits close by (labels would overlap)."""
    return any(q is not point and abs(q.top1 - point.top1) < 1.5
               and 0 <= math.log10(q.images_per_second / point.images_per_second) < 0.1 for q in points)


def plot_png(panels: Sequence[Panel]) -> bytes:
    """The paper's Figure 1 form: images/s (log) against top-1, one series per family, one panel
    per machine and device.  Agg canvas, no display, no global pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * len(panels), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for family in dict.fromkeys(p.family for p in panel.points):
            pts = sorted((p for p in panel.points if p.family == family), key=lambda p: p.top1)
            color, marker = FAMILY_STYLE.get(family, ("black", "."))
            ax.plot([p.top1 for p in pts], [p.images_per_second for p in pts], marker=marker, color=color,
                    label=FAMILY_LABELS.get(family, family))
            for p in pts:
                crowded = _label_below(p, panel.points)
                ax.annotate(p.model, (p.top1, p.images_per_second), fontsize=7,
                            xytext=(3, -10) if crowded else (3, 3), textcoords="offset points")
            measured = [p for p in pts if p.measured is not None]
            for p in measured:  # hollow marker at the measured top-1, dotted to the published one
                ax.plot([p.top1, p.measured.top1], [p.images_per_second] * 2, ":", color=color, linewidth=0.8)
            if measured:
                ax.plot([p.measured.top1 for p in measured], [p.images_per_second for p in measured], marker,
                        color=color, markerfacecolor="none", linestyle="none",
                        label=f"{FAMILY_LABELS.get(family, family)}, measured here")
        ax.set_yscale("log")
        _plain_log_ticks(ax)
        ax.margins(x=0.12, y=0.15)
        measured_any = any(p.measured is not None for p in panel.points)
        ax.set_xlabel("ImageNet top-1, %: published" + ("; hollow: measured here" if measured_any else ""))
        ax.set_ylabel("images/s (measured)")
        ax.set_title(f"{panel.title}\n{panel.setting}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _plain(v: float) -> str:
    return f"{v:,.0f}" if v >= 1 else f"{v:.2g}"


def _plain_log_ticks(ax) -> None:
    """Log axis with plain numbers (300, 10,000) rather than 3×10²; over more than a decade only
    the 2s and 5s of the minor ticks are labelled."""
    from matplotlib.ticker import FuncFormatter

    lo, hi = ax.get_ylim()
    wide = hi / max(lo, 1e-12) >= 10

    def minor(v: float, _pos) -> str:
        mantissa = v / 10 ** math.floor(math.log10(v)) if v > 0 else 0
        return _plain(v) if not wide or any(abs(mantissa - m) < 1e-6 for m in (2, 5)) else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _plain(v)))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def plot_section(panels: Sequence[Panel], plot_name: str | None) -> str:
    lines = ["## Speed and accuracy", ""]
    if not panels or plot_name is None:
        return "\n".join(lines + ["No plot: no successful entry of a model with a published top-1.", ""])
    lines += [f"![images/s against published top-1]({plot_name})", "",
              "Images/s (log axis) measured here against the published top-1, as in the paper's Figure 1. "
              "Per panel one setting and one backend (the one that covers most models), token/conv layouts "
              "merged:", ""]
    lines += [f"- {p.title}: {p.setting}" + (f" (not measured there, so not shown: {', '.join(p.left_out)})"
                                              if p.left_out else "") for p in panels]
    measured = {id(pt.measured): pt.measured for p in panels for pt in p.points if pt.measured is not None}
    if measured:
        lines += ["", "Hollow markers: top-1 measured here (`levit-bench accuracy`), not published:", ""]
        lines += [f"- {measured_words(r)}" for r in measured.values()]
    lines += ["", sources_text(pt.source for p in panels for pt in p.points), ""]
    return "\n".join(lines)


def measured_words(r: AccuracyRecord) -> str:
    """``levit_256: 81.5% (torch fp32, 50,000 images of /data/val, weights levit_256.pth)``."""
    data = r.data or {}
    skipped = f", {data['skipped']} unreadable skipped" if data.get("skipped") else ""
    weights = Path((r.weights or {}).get("file") or "?").name
    return (f"{r.model}: {r.top1:.2f}% top-1, {r.top5:.2f}% top-5 ({r.variant} {r.precision}, "
            f"{data.get('images', 0):,} images of `{data.get('root', '?')}`{skipped}; weights `{weights}`)")
