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
    adjusted speed and the two labelled intervals (entries that have them)."""
    if e is None:
        return ""
    if not e.ok:
        return f"[yellow]{e.status}[/]" if e.status is Status.SKIPPED else f"[red]{e.status}[/]"
    style = "yellow" if e.timing.noisy else "dim"  # noisy: IQR above 10% of the median
    extra = fmt_intervals(e)
    return f"{e.timing.images_per_second:,.1f} [{style}]±{spread_pct(e):.0f}%[/]" + (f"\n[dim]{extra}[/]" if extra else "")


def results_table(entries: Sequence[Entry], title: str = "images/s (median ± IQR; below: adjusted by the canary and, at one thread, the on-CPU share, "
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
        par = e.export.parity or {}
        verdict = "[green]ok[/]" if e.status is Status.OK else f"[red]{e.status}[/]"
        table.add_row(e.model, e.variant, str(e.batch_size), verdict,
                      f"{par['max_rel_diff']:.2g}" if "max_rel_diff" in par else "")
    return table


def problems(entries: Iterable[Entry]) -> list[str]:
    return [f"{e.status}: {e.label()}: {e.reason}" for e in entries if e.status is not Status.OK]


# ---------------------------------------------------------------------------------------------
# levit-bench load (issue 22)


def level_words(level: dict) -> str:
    """One level in a line, for the progress shown as each level ends."""
    from ..present import fmt_percentile, fmt_rate

    what = (f"{fmt_rate(level['rate'])}/s offered" if level.get("rate") else "closed loop") + \
        f", {level.get('concurrency', 1)} worker{'s' if level.get('concurrency', 1) != 1 else ''}"
    if level.get("unsustainable"):
        return f"{what}: {level['unsustainable']}"
    return (f"{what}: achieved {fmt_rate(level.get('achieved_rate'))}/s, p99 {fmt_percentile(level, 'p99')} ms, "
            f"max queue {level.get('max_queue', 0)}")


def load_tables(records: Sequence) -> list[Table]:
    """One table per load record measured: its levels (the latency–throughput curve)."""
    from rich.markup import escape

    from ..present import LEVEL_HEADER, level_row

    tables = []
    for r in records:
        if not r.ok:
            continue
        t = Table(title=f"{r.scenario}: {r.model} · {r.variant} · {r.device} {r.precision} · batch {r.batch_size} · "
                  f"{r.threads} threads/worker", title_justify="left")
        for col in LEVEL_HEADER:
            t.add_column(col, justify="left" if col == "note" else "right")
        for i, level in enumerate(r.levels):
            row = [escape(c) for c in level_row(level)]
            if r.best_level == i:
                row[-1] = (row[-1] + " best").strip()
            t.add_row(*row)
        tables.append(t)
    return tables


def load_findings(records: Sequence) -> list[str]:
    """What each record shows, in a line: single-stream's early-stopping verdicts, server's peak rate
    (under the SLO, with the bracket), offline's best images/s per model × backend."""
    from rich.markup import escape

    from ..present import fmt_ips, fmt_rate

    lines = []
    best_offline: dict[tuple, tuple] = {}
    for r in records:
        if not r.ok:
            continue
        name = f"{r.model} / {r.variant}"
        if r.scenario == "single-stream":
            verdicts = "; ".join(_early_words(e) for e in r.early_stopping or [])
            lines.append(f"{name}: {verdicts}")
        elif r.scenario == "server" and r.search:
            proven = "proven by both intervals" if r.search.get("proven") else "not proven by the intervals"
            lines.append(f"{name}: peak rate under the SLO: {fmt_rate(r.peak_rate)}/s; {r.search['statement']} "
                         f"({proven})")
        elif r.scenario == "server":
            lines.append(f"{name}: highest sustained rate {fmt_rate(r.peak_rate)}/s")
        elif r.best_level is not None:
            level = r.levels[r.best_level]
            ips = level.get("images_per_second") or 0.0
            key = (r.model, r.variant)
            if key not in best_offline or ips > best_offline[key][0]:
                best_offline[key] = (ips, r.batch_size, level.get("concurrency"))
    for (model, variant), (ips, batch, conc) in best_offline.items():
        lines.append(f"{model} / {variant}: offline best {fmt_ips(ips)} images/s at batch {batch}, {conc} workers")
    return [escape(x) for x in lines]


def _early_words(e: dict) -> str:
    if not e.get("enough"):
        return f"p{e['pct']:g}: not enough requests ({e['n']}; {e['min_requests']} needed)"
    return f"p{e['pct']:g} ≤ {e['bound_ms']:.3g} ms ({e['confidence']:.0%} early stopping, rank {e['rank']} of {e['n']})"


def end_to_end_tables(entries: Sequence[Entry]) -> list[Table]:
    """``run --input jpeg``: compute-only beside the JPEG path (serial, overlapped), and the serial
    path's stages (``present.end_to_end_tables``)."""
    from ..present import end_to_end_tables as layouts

    titles = ("JPEG to top-5 (images/s): compute-only, serial, overlapped pipeline (decode+inference threads)",
              "where an image's time goes (serial path, mean ms per image; the stages add up to the call)")
    out = []
    for title, (header, rows) in zip(titles, layouts(entries)):
        table = Table(title=title, title_justify="left")
        for k, col in enumerate(header):
            table.add_column(col, justify="left" if col in ("model", "backend", "decoder") else "right")
        for row in rows:
            table.add_row(*row)
        out.append(table)
    return out
