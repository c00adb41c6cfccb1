"""The main command: validate everything, build a Plan, claim the results file, measure, render."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .. import __version__, paper, sysinfo
from ..errors import UserError
from ..results import RunRecord
from ..results_writer import ResultsWriter
from ..spec import EventKind
from .args import COMMAND_NAMES, EXIT_INTERRUPTED, EXIT_OK, Parser
from .front import (add_input, add_output, add_selection, add_timing, output_path, resolve, resolve_input,
                    resolve_timing, selection_config)
from . import render



def run_parser() -> Parser:
    p = Parser(
        prog="levit-bench",
        description="Measure images/s of vision models on this machine, per runtime, with honest statistics. "
        f"Other commands: {', '.join(c for c in COMMAND_NAMES if c != 'run')} (levit-bench COMMAND --help; "
        "`levit-bench run` is this command).",
    )
    p.add_argument("--version", action="version", version=f"levit-bench {__version__}")
    add_selection(p)
    p.add_argument("--paper", action="store_true", help=paper.protocol_flag_help())
    add_timing(p, processes=True)
    add_input(p)
    add_output(p, "results", "results file (*.json) or folder (default: results/)", "no table, no progress")
    return p


def build_plan(args: argparse.Namespace):
    """The Plan, every value checked (UserError before anything is measured)."""
    from ..bench import Plan

    selection = resolve(args)
    timing, schedule = resolve_timing(args)
    if args.processes > 1 and selection.paper and paper.PROTOCOLS[args.device].shrink_on_oom:
        raise UserError("--processes runs each step at its batch size; --paper's GPU protocol halves a batch "
                        "that does not fit, in one process only (drop one of the two)")
    wanted = resolve_input(args)
    e2e = None
    if wanted is not None:
        if args.processes > 1:
            raise UserError("--input jpeg times the JPEG path in this process; drop --processes")
        from ..backends import ExportCache
        from ..endtoend import open_input

        e2e = open_input(wanted, ExportCache(selection.cache_dir).root, selection.settings.device)
    return Plan(selection, timing, shrink_on_oom=bool(selection.paper and paper.PROTOCOLS[args.device].shrink_on_oom),
                schedule=schedule, processes=args.processes, end_to_end=e2e)


def config_of(args: argparse.Namespace, plan) -> dict:
    from dataclasses import asdict

    e2e = plan.end_to_end
    return {"argv": sys.argv[1:], **selection_config(plan.selection), "timing": asdict(plan.timing),
            "schedule": asdict(plan.schedule), "processes": plan.processes,
            **({"input": {"kind": "jpeg", "folder": e2e.spec.folder, "decoders": list(e2e.spec.decoders),
                          "decode_threads": list(e2e.spec.decode_threads)}} if e2e is not None else {})}


def cmd_run(argv: Sequence[str]) -> int:
    args = run_parser().parse_args(argv)
    plan = build_plan(args)
    writer = ResultsWriter(output_path(args.out, args.device), replace=args.force).claim()
    try:
        return _measure(args, plan, writer)
    except UserError:
        writer.abandon()
        raise
    finally:
        writer.release()


def _measure(args: argparse.Namespace, plan, writer: ResultsWriter) -> int:
    from ..bench import execute

    out = render.console(stderr=args.json, quiet=args.quiet)
    err = render.console(stderr=True)
    record = RunRecord(system=sysinfo.collect(), config=config_of(args, plan))
    writer.save(record)
    if plan.end_to_end is not None:
        f = plan.end_to_end.files
        err.print(f"[dim]--input jpeg: {len(f.paths)} JPEG files ({f.source}, {f.root}); {len(f.skipped)} skipped[/]")
        for line in plan.end_to_end.refusals():
            err.print(f"[yellow]warning[/]: {line}")
    with render.progress(out) as bar:
        task = bar.add_task("measuring", total=plan.steps())

        def on_event(ev) -> None:
            if ev.kind is EventKind.STEP:
                bar.update(task, description=f"preparing {ev.model} · {ev.backend} · batch {ev.batch_size}")
            elif ev.kind is EventKind.ROUND:
                if ev.round == 0:
                    err.print(f"[dim]timing {ev.count} prepared entries in {ev.rounds} interleaved rounds[/]")
                bar.update(task, description=f"timing: round {ev.round} of {ev.rounds}")
            elif ev.kind is EventKind.ENTRY:
                record.results.append(ev.entry)
                writer.save(record)
                bar.advance(task)

        try:
            finished = execute(plan, on_event, show_warning=lambda text: err.print(f"[yellow]warning[/]: {text}"))
        except KeyboardInterrupt:
            record.complete = False
            writer.save(record)
            bar.stop()
            err.print(f"[yellow]interrupted[/]: {len(record.results)} finished entries kept in {writer.path} "
                      "(complete: false)")
            return EXIT_INTERRUPTED
    record.results = finished  # plan order (saved meanwhile in the order they finished)
    record.complete = True
    writer.save(record)
    if args.json:
        sys.stdout.write(json.dumps(record.to_dict(), indent=1) + "\n")
    out.print(render.results_table(record.results, emulated=record.system.get("emulated")))
    if plan.end_to_end is not None:
        for table in render.end_to_end_tables(record.results):
            out.print(table)
        for note in (n for e in record.results for n in (e.end_to_end or {}).get("notes", [])):
            out.print(f"[yellow]{note}[/]")
    for line in render.problems(record.results):
        out.print(f"[dim]{line}[/]")
    for e in record.results:  # --target-ci: name the entries that did not get there
        for note in e.notes:
            if note.startswith("did not reach --target-ci"):
                out.print(f"[yellow]{e.label()}: {note}[/]")
    out.print(f"results: {writer.path}")
    return EXIT_OK
