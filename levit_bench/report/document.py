"""The whole report: assembled from its sections, written atomically with its plot."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_write_text, target_problem
from ..errors import UserError
from ..profiling import profiles_png
from ..results import RunRecord
from .endtoend import e2e_section, machine_e2e, stages_png
from .headline import headline_section
from .int8 import Top1, int8_section
from .load import load_png, load_section, machine_load
from .merge import group_by_machine, load_results
from .plot import plot_png, plot_section, speed_accuracy_panels
from .profile import machine_profiles, profile_section
from .sections import machine_section


@dataclass
class Report:
    markdown: str
    plot_png: bytes | None
    plot_name: str | None
    figures: dict[str, bytes] = field(default_factory=dict)  # other PNGs it links to (profiles), by name


def relative_to(records: Sequence[RunRecord], folder: str | os.PathLike) -> list[RunRecord]:
    """Copies whose ``source`` is relative to ``folder`` (the report's) when the file lies inside it,
    as a reader of the report sees it; other paths stay as given."""
    out = []
    for r in records:
        src = r.source
        if src and Path(src).resolve().is_relative_to(Path(folder).resolve()):
            src = os.path.relpath(Path(src).resolve(), Path(folder).resolve())
        out.append(replace(r, source=src))
    return out


def build_report(records: Sequence[RunRecord], plot_name: str | None = "speed-accuracy.png",
                 command: str | None = None, analysis: str | None = None) -> Report:
    """The Markdown text and the plot's PNG bytes (nothing written); ``plot_name`` is the link target.

    ``analysis``: Markdown written by a person about these results, placed after the headline
    (kept in its own file so that regenerating the report keeps it)."""
    machines = group_by_machine(records)
    panels = speed_accuracy_panels(machines)
    png = plot_png(panels) if panels and plot_name else None
    files = ", ".join(f"`{r.source or '(unsaved results)'}`" for r in records)
    head = ["# levit-bench report", "",
            f"From {len(records)} results file{'s' if len(records) != 1 else ''} ({files}), "
            f"{len(machines)} machine{'s' if len(machines) != 1 else ''}."]
    if command:
        head.append(f"Regenerate this report: `{command}`.")
    parts = ["\n".join(head) + "\n", headline_section(machines)]
    if analysis:
        parts.append(analysis.strip() + "\n")
    parts.append(plot_section(panels, plot_name if png else None))
    parts += [machine_section(m) for m in machines]
    figures: dict[str, bytes] = {}
    for m in machines:
        profiles = machine_profiles(m)
        if not profiles:
            continue
        name = None
        if plot_name and any(p.ok for p in profiles):
            name = f"{Path(plot_name).stem.removesuffix('speed-accuracy')}profile-{len(figures) + 1}.png"
            figures[name] = profiles_png(profiles, f"share of op time per category · {m.title}")
        parts.append(profile_section(m, profiles, name))
    figure_sections = (  # (what a machine has, its figure, the figure's title, the file's kind, the section)
        (machine_load, load_png, "p99 latency against achieved rate", "load", load_section),  # levit-bench load
        (machine_e2e, stages_png, "where an image's time goes", "jpeg", e2e_section),  # run --input jpeg
    )
    for collect, draw, title, kind, section in figure_sections:
        for m in machines:
            found = collect(m)
            if not found or m.emulated:
                continue
            name = None
            png_bytes = draw(found, f"{title} · {m.title}") if plot_name else None
            if png_bytes is not None:
                name = f"{Path(plot_name).stem.removesuffix('speed-accuracy')}{kind}-{len(figures) + 1}.png"
                figures[name] = png_bytes
            parts.append(section(m, found, name))
    parts.append(int8_section(machines, measured_top1(records)))
    return Report("\n".join(parts).rstrip() + "\n", png, plot_name if png else None, figures)


def measured_top1(records: Sequence[RunRecord]) -> Top1:
    """Top-1 measured with trained weights (``levit-bench accuracy --weights``) per (model, backend,
    precision), the newest where measured more than once; random-weight records are not accuracy."""
    found = sorted((a for r in records for a in r.accuracy if a.ok and not a.random_weights),
                   key=lambda a: a.measured_at)
    return {(a.model, a.backend, a.precision): a.top1 for a in found}


def report_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """The report file (a folder gets REPORT.md) and the plot next to it."""
    p = Path(out)
    if p.suffix.lower() != ".md":
        p = p / "REPORT.md"
    return p, p.with_name(f"{p.stem}-speed-accuracy.png")


def write_report(paths: Iterable[str | os.PathLike], out: str | os.PathLike = "results/REPORT.md",
                 command: str | None = None, analysis: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
    """Load results files, build the report and write it (and its plot) atomically."""
    report_path, plot_path = report_paths(out)
    for target in (report_path, plot_path):
        if os.path.isdir(target):
            raise UserError(f"cannot write the report to {target}: it is a folder (nothing was written)")
        if target_problem(target):
            raise UserError(f"cannot write the report to {target}: {target_problem(target)} (nothing was written)")
    records = load_results(paths)
    text = None
    if analysis is not None:
        try:
            text = Path(analysis).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the analysis file {analysis}: {exc}") from None
    report = build_report(relative_to(records, report_path.parent), plot_path.name, command, text)
    try:
        if report.plot_png is not None:
            atomic_write_bytes(plot_path, report.plot_png)
        for name, png in report.figures.items():
            atomic_write_bytes(report_path.parent / name, png)
        atomic_write_text(report_path, report.markdown)
    except OSError as exc:
        raise UserError(f"cannot write the report to {report_path}: {exc.strerror or exc}") from None
    return report_path, (plot_path if report.plot_png is not None else None)
