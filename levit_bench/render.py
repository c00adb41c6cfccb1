"""Terminal output with rich: the results table, the zoo table, progress, messages."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .results import Entry

BASELINE_BACKEND = "torch"


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
    """Median images/s and spread (IQR as % of the median), or the status."""
    if e is None:
        return ""
    if e.status != "ok" or e.images_per_second is None:
        return f"[yellow]{e.status}[/]" if e.status == "skipped" else f"[red]{e.status}[/]"
    spread = (e.iqr or 0.0) / e.images_per_second * 100
    style = "yellow" if e.noisy else "dim"  # noisy: IQR above 10% of the median
    return f"{e.images_per_second:,.1f} [{style}]±{spread:.0f}%[/]"


def speedups(entries: Sequence[Entry]) -> dict[tuple, float]:
    """Speed-up of each (model, backend, device, precision, threads) row over ``torch``,
    at the largest batch size both measured."""
    by_key = {e.key: e for e in entries if e.status == "ok"}
    out: dict[tuple, float] = {}
    for e in entries:
        row = (e.model, e.backend, e.device, e.precision, e.threads)
        base_rows = [b for b in by_key.values()
                     if (b.model, b.backend, b.device, b.threads) == (e.model, BASELINE_BACKEND, e.device, e.threads)]
        common = [b for b in base_rows if (e.model, e.backend, e.device, e.precision, b.batch_size, e.threads) in by_key]
        if not common:
            continue
        base = max(common, key=lambda b: b.batch_size)
        new = by_key[(e.model, e.backend, e.device, e.precision, base.batch_size, e.threads)]
        out[row] = new.images_per_second / base.images_per_second
    return out


def results_table(entries: Sequence[Entry], title: str = "images/s (median ± IQR)") -> Table:
    batches = sorted({e.batch_size for e in entries})
    table = Table(title=title, title_justify="left")
    for col in ("model", "backend", "precision"):
        table.add_column(col)
    for b in batches:
        table.add_column(f"batch {b}", justify="right")
    table.add_column(f"× {BASELINE_BACKEND}", justify="right")
    rows: dict[tuple, dict[int, Entry]] = {}
    for e in entries:
        rows.setdefault((e.model, e.backend, e.device, e.precision, e.threads), {})[e.batch_size] = e
    ups = speedups(entries)
    for row, cells in rows.items():
        up = ups.get(row)
        table.add_row(row[0], row[1], f"{row[2]} {row[3]}", *[cell(cells.get(b)) for b in batches],
                      f"{up:.2f}×" if up is not None else "")
    return table


def problems(entries: Iterable[Entry]) -> list[str]:
    return [f"{e.status}: {e.label()}: {e.reason}" for e in entries if e.status != "ok"]
