"""``levit-bench report RESULTS... [-o REPORT.md] [--analysis FILE]``."""
from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..report import write_report
from . import render
from .args import EXIT_OK, Parser


def report_parser() -> Parser:
    p = Parser(prog="levit-bench report",
               description="A Markdown report (tables, paper figures, speed-accuracy plot) from results files; "
               "files from several machines merge into one report.")
    p.add_argument("results", nargs="+", help="results files (JSON) or folders of them")
    p.add_argument("-o", "--output", default="results/REPORT.md",
                   help="report file (.md) or folder; the plot is written next to it (default results/REPORT.md)")
    p.add_argument("--analysis", default=None,
                   help="a Markdown file of written analysis to include after the headline")
    return p


def cmd_report(argv: Sequence[str]) -> int:
    """``levit-bench report RESULTS... [-o REPORT.md]``."""
    args = report_parser().parse_args(argv)
    command = "levit-bench report " + shlex.join(list(argv))
    report_path, plot_path = write_report(args.results, args.output, command, args.analysis)
    con = render.console()
    con.print(f"report: {report_path}")
    if plot_path is not None:
        con.print(f"plot: {plot_path}")
    return EXIT_OK
