"""``levit-bench history FILES|DIR``: per entry, the speed file by file and its change points."""
from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import history as hist
from ..present import fmt_ips, md_table
from . import ci_outputs, render
from .args import EXIT_OK, EXIT_REGRESSION, Parser, percent, positive_int, probability

SERIES_HEADER = ["entry", "figure", "files", "first img/s", "newest img/s", "change points", "detectable"]
FILES_HEADER = ["#", "created", "commit"]


def series_cells(m: hist.MachineHistory, s: hist.Series, h: hist.History) -> list[str]:
    changes = "; ".join(f"{cp.words()}" + (" (NEW)" if m.is_newest(s, cp, h.newest) else "")
                        for cp in s.change_points) or (s.note or "none")
    return [s.label, s.figure, str(len(s.points)), fmt_ips(s.points[0].ips), fmt_ips(s.points[-1].ips), changes,
            "—" if s.detectable_pct is None else f"±{s.detectable_pct:.0f}%"]


def file_cells(f: hist.HistoryFile, libs: list[str]) -> list[str]:
    return [str(f.position + 1), f.created.strftime("%Y-%m-%d %H:%M"), f.commit,
            *[str(f.versions.get(lib) or "—") for lib in libs], f.source]


def headline(h: hist.History) -> str:
    new = h.new_slowdowns()
    n = sum(len(m.files) for m in h.machines)
    found = sum(len(s.change_points) for m in h.machines for s in m.series)
    head = f"History of {n} results file{'s' * (n != 1)} on {len(h.machines)} machine{'s' * (len(h.machines) != 1)}: "
    if new:
        return head + f"NEW SLOWDOWN in {len(new)} entr{'ies' if len(new) != 1 else 'y'} (" + "; ".join(
            f"{s.label}: {cp.words()}" for _m, s, cp in new[:3]) + ("; …" if len(new) > 3 else "") + ")"
    return head + (f"{found} change point{'s' * (found != 1)}, none a slowdown in the newest {h.newest} files"
                   if found else "no change point")


def rule_line(h: hist.History) -> str:
    floor = (f"{h.min_step_pct:g}%" if h.min_step_pct is not None else
             f"{hist.RERUN_RESIDUAL_ADJUSTED:.1%} canary-adjusted, {hist.RERUN_RESIDUAL_RAW:.0%} raw or on-CPU-adjusted")
    return (f"Change points: ruptures PELT on log images/s over each series' noise (the files' rerun intervals, or "
            f"the series' own scatter if larger), false-alarm rate {h.alpha:g} per entry; smallest step reported "
            f"{floor}; 'new' = a slowdown whose after-segment holds the newest file and begins in the last "
            f"{h.newest} files.")


def history_markdown(h: hist.History) -> str:
    """The history as Markdown (a job summary, a pull-request comment): the decision first."""
    libs = h.shown_versions()
    lines = [f"**{headline(h)}**", ""]
    for m in h.machines:
        lines += [f"### {m.machine}", "",
                  md_table(SERIES_HEADER, (series_cells(m, s, h) for s in m.series), "lllrrll"), "",
                  md_table(FILES_HEADER + libs + ["file"], (file_cells(f, libs) for f in m.files)), ""]
    lines.append(rule_line(h))
    if h.skipped:
        lines += ["", "Left out:", ""] + [f"- {x}" for x in h.skipped]
    return "\n".join(lines) + "\n"


def _tables(h: hist.History) -> list:
    from rich.markup import escape
    from rich.table import Table

    out, libs = [], h.shown_versions()
    for m in h.machines:
        files = Table(title=f"{m.machine}: files in time order", title_justify="left")
        for col in FILES_HEADER + libs + ["file"]:
            files.add_column(col)
        for f in m.files:
            files.add_row(*map(escape, file_cells(f, libs)))
        series = Table(title=f"{m.machine}: entries", title_justify="left")
        for col in SERIES_HEADER:
            series.add_column(col, justify="right" if "img/s" in col or col == "files" else "left")
        for s in m.series:
            row = list(map(escape, series_cells(m, s, h)))
            if s.change_points:
                row[5] = f"[{'bold red' if any(m.is_newest(s, c, h.newest) for c in s.change_points) else 'yellow'}]" \
                         f"{row[5]}[/]"
            series.add_row(*row)
        out += [files, series]
    return out


def history_parser() -> Parser:
    p = Parser(prog="levit-bench history",
               description="The history of results files: ordered by when they were made, kept apart per machine, "
               "each entry's speed file by file (canary-adjusted where every file has it) with its change points "
               "(ruptures PELT, the penalty from the files' stated uncertainty), each with its commit range and step. "
               "Exit 1 with --fail-on-change when the newest change of an entry is a slowdown in the newest files; "
               "2 for no, unreadable or unmatched files.")
    p.add_argument("results", nargs="+", help="results files (JSON) or folders of them")
    p.add_argument("--png", default=None, metavar="FILE", help="write the plot as a PNG")
    p.add_argument("--html", default=None, metavar="FILE",
                   help="write a self-contained interactive HTML page of the history (plotly.js inlined: no network)")
    p.add_argument("--fail-on-change", action="store_true",
                   help="exit 1 when an entry's newest change point is a slowdown whose after-segment holds the "
                   "newest file and begins within the last --newest files")
    p.add_argument("--newest", type=positive_int("--newest"), default=hist.DEFAULT_NEWEST, metavar="K",
                   help=f"how many of a machine's last files count as newest (default {hist.DEFAULT_NEWEST})")
    p.add_argument("--alpha", type=probability("--alpha"), default=hist.DEFAULT_ALPHA,
                   help=f"false-alarm rate per entry of the change-point test (default {hist.DEFAULT_ALPHA:g})")
    p.add_argument("--min-step", type=percent("--min-step"), default=None, metavar="PCT",
                   help="smallest step reported (default: the rerun residual, "
                   f"{hist.RERUN_RESIDUAL_ADJUSTED:.1%} canary-adjusted, {hist.RERUN_RESIDUAL_RAW:.0%} raw or on-CPU-adjusted)"
                   .replace("%", "%%"))
    ci_outputs.add_ci_outputs(p)
    return p


def cmd_history(argv: Sequence[str]) -> int:
    args = history_parser().parse_args(argv)
    ci_outputs.check_ci_outputs(args)
    h = hist.history(args.results, alpha=args.alpha, min_step_pct=args.min_step, newest=args.newest)
    from ..dashboards import write_text
    from ..report.history import history_html, history_png

    markdown = history_markdown(h)
    newest = max((m.files[-1] for m in h.machines), key=lambda f: f.created)
    ci_outputs.write_ci_outputs(args, markdown, hist.newest_entries(h), newest.commit)
    if args.png:
        _write_bytes(args.png, history_png(h))
    if args.html:
        write_text(args.html, history_html(h), "HTML page")
    code = EXIT_REGRESSION if args.fail_on_change and h.new_slowdowns() else EXIT_OK
    if args.markdown == "-":
        sys.stdout.write(markdown)
        return code
    from rich.markup import escape

    out = render.console()
    for table in _tables(h):
        out.print(table)
    for line in h.skipped:
        out.print(f"[dim]left out: {escape(line)}[/]")
    out.print(f"[dim]{escape(rule_line(h))}[/]")
    out.print(f"[{'bold red' if h.new_slowdowns() else 'default'}]{escape(headline(h))}[/]")
    return code


def _write_bytes(path: str, data: bytes) -> None:
    from ..atomic import atomic_write_bytes
    from ..errors import UserError

    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise UserError(f"cannot write the PNG to {path}: {exc.strerror or exc}") from None
