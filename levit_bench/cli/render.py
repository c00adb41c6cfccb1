"""Terminal output with rich: the results table, progress, consoles (the commands' shared printer;
number formats shared with the report are ``present.py``'s)."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..present import Baselines, fmt_efficiency, fmt_intervals, fmt_ratio, most_efficient, spread_pct
from ..results import Entry
from ..spec import BASELINE_BACKEND, Status


def console(stderr: bool = False, quiet: bool = False) -> Console:
    """A rich console; when writing to a file or pipe, wide enough that tables are not truncated."""
    con = Console(stderr=stderr, quiet=quiet, highlight=False)
    if not con.is_terminal:
        con = Console(stderr=stderr, quiet=quiet, highlight=False, width=max(con.width, 160))
    return con


def progress(con: Console) -> Progress:
    disable = bool(os.environ.get("LEVIT_BENCH_NO_PROGRESS")) or not con.is_terminal
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=con, disable=disable, transient=True,
    )


def cell(e: Entry | None) -> str:
    """Median images/s and spread (IQR as % of the median), or the status; below it the
    canary-adjusted speed and the two labelled intervals (entries that have them)."""
    if e is None:
        return ""
    if not e.ok:
        return f"[yellow]{e.status}[/]" if e.status is Status.SKIPPED else f"[red]{e.status}[/]"
    style = "yellow" if e.noisy else "dim"  # noisy: IQR above 10% of the median
    extra = fmt_intervals(e)
    return f"{e.images_per_second:,.1f} [{style}]±{spread_pct(e):.0f}%[/]" + (f"\n[dim]{extra}[/]" if extra else "")


def results_table(entries: Sequence[Entry], title: str = "images/s (median ± IQR; below: canary-adjusted, "
                  "95% confidence interval of this run, where a rerun will land)",
                  emulated: str | None = None) -> Table:
    """One row per model × backend variant × device/precision/threads, one column per batch size;
    "× torch" at the largest batch, and the GMAC/s (share of the measured peak) of the row's best batch.

    Under emulation (``emulated`` names the emulator) timings are not speed: cells say whether
    parity held, and there is no speed-up column."""
    if emulated:
        return _emulated_table(entries, emulated)
    batches = sorted({e.batch_size for e in entries})
    table = Table(title=title, title_justify="left")
    for col in ("model", "backend", "precision"):
        table.add_column(col)
    for b in batches:
        table.add_column(f"batch {b}", justify="right")
    table.add_column(f"× {BASELINE_BACKEND}", justify="right")
    table.add_column("GMAC/s (% of peak)", justify="right")
    rows: dict[tuple, dict[int, Entry]] = {}
    for e in entries:
        s = e.conditions
        rows.setdefault((e.model, e.variant, s.device, s.precision, s.threads), {})[e.batch_size] = e
    baselines = Baselines(entries)
    for (model, variant, device, precision, _threads), cells in rows.items():
        up = baselines.row_speedup(cells.values())
        table.add_row(model, variant, f"{device} {precision}", *[cell(cells.get(b)) for b in batches],
                      fmt_ratio(up) if up is not None else "", fmt_efficiency(most_efficient(cells.values())))
    return table


def _emulated_table(entries: Sequence[Entry], emulated: str) -> Table:
    table = Table(title=f"parity under emulation ({emulated}): timings here are not speed", title_justify="left")
    for col in ("model", "backend", "batch", "parity", "max rel diff"):
        table.add_column(col)
    for e in entries:
        par = e.parity or {}
        verdict = "[green]ok[/]" if e.status is Status.OK else f"[red]{e.status}[/]"
        table.add_row(e.model, e.variant, str(e.batch_size), verdict,
                      f"{par['max_rel_diff']:.2g}" if "max_rel_diff" in par else "")
    return table


def problems(entries: Iterable[Entry]) -> list[str]:
    return [f"{e.status}: {e.label()}: {e.reason}" for e in entries if e.status is not Status.OK]
