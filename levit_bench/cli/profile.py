"""``levit-bench profile``: where each model's time goes in each runtime, by op category.

Each model × backend is prepared as a run prepares it (same flags: precision, threads, batch size,
runtime options), checked for parity, then timed in rounds of unprofiled and profiled blocks: the
runtime's own profiler gives the op times, the unprofiled blocks its overhead.  Prints a table of
category shares and each entry's largest runtime ops; ``--json`` prints the profiles instead,
``--png`` draws them as stacked bars.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import sysinfo
from ..atomic import target_problem
from ..errors import UserError
from ..results import RunRecord
from ..results_writer import ResultsWriter
from .args import EXIT_OK, Parser, positive_int, seconds
from .front import Shape, add_output, add_selection, resolve
from . import render

DEFAULT_BACKENDS = ("torch", "onnxruntime", "openvino")
DEFAULT_BATCH = 16
DEFAULT_TOP = 8


SHAPE = Shape(batch_sizes=(DEFAULT_BATCH,), many_batches=False, many_precisions=False,
              backends=DEFAULT_BACKENDS)


def profile_parser() -> Parser:
    from ..profiling import CATEGORIES, ProfileOptions

    defaults = ProfileOptions()
    p = Parser(prog="levit-bench profile",
               description="Per-op time of each model × backend from the runtime's own profiler (torch.profiler, "
               "ONNX Runtime session profiling, OpenVINO performance counters), in categories: "
               f"{', '.join(CATEGORIES.values())}; and the profiler's overhead against unprofiled calls.")
    add_selection(p, SHAPE)
    p.add_argument("--calls", type=positive_int("--calls"), default=defaults.calls,
                   help=f"profiled calls per entry, at least (default {defaults.calls}; as many unprofiled)")
    p.add_argument("--min-time", type=seconds("--min-time", False), default=defaults.min_time_s,
                   help=f"profiled seconds per entry, at least (default {defaults.min_time_s:g})")
    p.add_argument("--warmup", type=seconds("--warmup", True), default=defaults.warmup_s,
                   help=f"warm-up seconds (default {defaults.warmup_s:g})")
    p.add_argument("--top", type=positive_int("--top"), default=DEFAULT_TOP,
                   help=f"runtime ops shown per entry (default {DEFAULT_TOP}; unclassified ones are listed too)")
    p.add_argument("--png", default=None, metavar="PATH", help="write a stacked-bar chart of the categories")
    add_output(p, None, "also save them as a results file (system facts, the command, `profiles`), which "
               "`levit-bench report` turns into a profile figure; never replaced unless --force", "no tables")
    return p


def _check(args: argparse.Namespace, selection) -> None:
    """The refusals only profiling has, before anything is built or measured."""
    from ..profiling import cannot_profile

    for backend in selection.backends:
        reason = cannot_profile(backend, selection.settings)
        if reason:
            raise UserError(f"cannot profile {backend}: {reason}")
    if args.png is not None and Path(args.png).is_dir():
        raise UserError(f"--png {args.png} is a folder; give a file name (e.g. {Path(args.png) / 'profile.png'})")
    if args.png is not None and target_problem(args.png):  # before the profiling work, not after it
        raise UserError(f"--png {args.png}: cannot be written: {target_problem(args.png)}")


def cmd_profile(argv: Sequence[str]) -> int:
    from ..profiling import ProfileOptions, plot_profiles, profile_entries
    from ..profiling.table import categories_table, ops_table, summary_lines

    args = profile_parser().parse_args(argv)
    selection = resolve(args, SHAPE)
    settings = selection.settings
    _check(args, selection)
    writer = ResultsWriter(args.out, replace=args.force).claim() if args.out else None
    out = render.console(stderr=args.json, quiet=args.quiet)
    err = render.console(stderr=True)
    options = ProfileOptions(calls=args.calls, min_time_s=args.min_time, warmup_s=args.warmup)

    def on_entry(model: str, backend: str) -> None:
        if not args.quiet:
            err.print(f"[dim]profiling {model} · {backend} (batch {selection.batch_sizes[0]}, "
                      f"{settings.threads} thread{'s' if settings.threads != 1 else ''})[/]")

    try:
        profiles = profile_entries(selection, options=options, on_entry=on_entry,
                                   show_warning=lambda text: err.print(f"[yellow]warning[/]: {text}"))
        if writer is not None:
            writer.save(RunRecord(system=sysinfo.collect(), config={"argv": ["profile", *argv]}, complete=True,
                                  profiles=[p.to_dict() for p in profiles]))
            err.print(f"profiles: {writer.path}")
    finally:
        if writer is not None:
            writer.release()
    if args.json:
        sys.stdout.write(json.dumps([p.to_dict() for p in profiles], indent=1) + "\n")
    out.print(categories_table(profiles))
    for p in profiles:
        if p.ok:
            out.print(ops_table(p, args.top))
            for line in summary_lines(p):
                out.print(f"[dim]{line}[/]")
        else:
            out.print(f"[red]failed[/]: {p.label()}: {p.reason}")
    if args.png is not None:
        if any(p.ok for p in profiles):
            try:
                out.print(f"chart: {plot_profiles(profiles, args.png)}")
            except OSError as exc:
                raise UserError(f"--png {args.png}: cannot be written: {exc.strerror or exc}") from None
        else:
            err.print("[yellow]no entry was profiled: no chart written[/]")
    return EXIT_OK
