"""The CI outputs of the commands that read results (``compare``, ``history``), declared once:
``--markdown [FILE]`` (a pull-request comment, a job summary, also appended to
``$GITHUB_STEP_SUMMARY``) and ``--export FORMAT FILE`` (the dashboards' formats, ``dashboards.py``)."""
from __future__ import annotations

import argparse

from ..errors import UserError


def add_ci_outputs(p: argparse.ArgumentParser) -> None:
    """--markdown [FILE] and --export FORMAT FILE: a job summary or PR comment, dashboard files."""
    from ..dashboards import EXPORT_FORMATS, STEP_SUMMARY

    g = p.add_argument_group("CI outputs")
    g.add_argument("--markdown", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the Markdown summary (a pull-request comment, a job summary) to FILE; without FILE, "
                   f"print it instead of the terminal table. It is also appended to ${STEP_SUMMARY} when that is "
                   "set (GitHub Actions), with or without this flag")
    g.add_argument("--export", nargs=2, action="append", default=[], metavar=("FORMAT", "FILE"),
                   help=f"write the run's figures for a dashboard: FORMAT {' or '.join(EXPORT_FORMATS)} "
                   "(github-action-benchmark customBiggerIsBetter JSON; Bencher Metric Format JSON); repeatable")


def check_ci_outputs(args: argparse.Namespace) -> None:
    """Refuse an unknown export format, or a target that is a results file, before anything is read."""
    from ..dashboards import EXPORT_FORMATS, check_target

    if args.markdown not in (None, "-"):
        check_target(args.markdown, "Markdown summary")
    for fmt, path in args.export:
        if fmt not in EXPORT_FORMATS:
            raise UserError(f"--export {fmt!r}: the formats are {', '.join(EXPORT_FORMATS)}")
        check_target(path, f"{fmt} export")


def write_ci_outputs(args: argparse.Namespace, markdown: str, named: list, commit: str | None = None) -> None:
    """The Markdown to --markdown FILE and to $GITHUB_STEP_SUMMARY, the exports to their files
    (printing Markdown on stdout, ``--markdown`` without FILE, is the command's)."""
    from ..dashboards import append_step_summary, export_text, write_text

    if args.markdown not in (None, "-"):
        write_text(args.markdown, markdown, "Markdown summary")
    append_step_summary(markdown)
    for fmt, path in args.export:
        write_text(path, export_text(fmt, named, commit), f"{fmt} export")
