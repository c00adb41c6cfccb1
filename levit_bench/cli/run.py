"""The main command: validate everything, build a Plan, claim the results file, measure, render."""
from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence

from .. import __version__, paper, sysinfo
from ..errors import UserError
from ..results import RunRecord
from ..results_writer import ResultsWriter
from ..spec import EventKind
from .args import COMMAND_NAMES, EXIT_INTERRUPTED, EXIT_OK, Parser, percent, positive_int, seconds
from .front import add_output, add_selection, output_path, resolve, selection_config
from . import render

DEFAULT_MAX_TIME_S = 600.0
#: more rounds than this is a typo, not a plan (each round visits every entry with its re-warm)
MAX_ROUNDS = 1000
#: seeds are drawn below 2**31 and recorded; any of them (0 included) can be given back
MAX_SEED = 2**31 - 1


def run_parser() -> Parser:
    from ..harness import TimingOptions
    from ..schedule import AUTO_BUDGET, AUTO_ROUNDS

    p = Parser(
        prog="levit-bench",
        description="Measure images/s of vision models on this machine, per runtime, with honest statistics. "
        f"Other commands: {', '.join(c for c in COMMAND_NAMES if c != 'run')} (levit-bench COMMAND --help; "
        "`levit-bench run` is this command).",
    )
    p.add_argument("--version", action="version", version=f"levit-bench {__version__}")
    add_selection(p)
    p.add_argument("--paper", action="store_true", help=paper.protocol_flag_help())
    t = p.add_argument_group("timing")
    t.add_argument("--warmup", type=seconds("--warmup", True), default=1.0, help="warm-up seconds (default 1)")
    t.add_argument("--min-time", type=seconds("--min-time", False), default=2.0,
                   help="timed seconds per entry, at least (default 2)")
    t.add_argument("--min-calls", type=positive_int("--min-calls", TimingOptions.max_calls), default=5,
                   help=f"timed calls, at least (default 5, at most {TimingOptions.max_calls:,})")
    t.add_argument("--rounds", type=positive_int("--rounds", MAX_ROUNDS), default=None,
                   help="timing rounds: each visits every entry once in a random order, and --min-time is "
                   f"shared between them (default: {AUTO_ROUNDS[0]} to {AUTO_ROUNDS[1]}, as many as cost at most "
                   f"{AUTO_BUDGET:g}x the timed time of one block per entry; at most {MAX_ROUNDS})")
    t.add_argument("--seed", type=positive_int("--seed", MAX_SEED, minimum=0), default=None,
                   help="seed of the round orders, 0 or more (default: drawn, and recorded in the results)")
    t.add_argument("--target-ci", type=percent("--target-ci", allow_zero=False), default=None, metavar="PCT",
                   help="add rounds until every entry's 95%% interval half-width is within PCT%% of its estimate")
    t.add_argument("--max-time", type=seconds("--max-time", False, maximum=7 * 24 * 3600), default=None,
                   help=f"with --target-ci: stop adding rounds after this many seconds of timing "
                   f"(default {DEFAULT_MAX_TIME_S:g})")
    add_output(p, "results", "results file (*.json) or folder (default: results/)", "no table, no progress")
    return p


def build_plan(args: argparse.Namespace):
    """The Plan, every value checked (UserError before anything is measured)."""
    from ..bench import Plan
    from ..harness import TimingOptions
    from ..schedule import Schedule

    selection = resolve(args)
    timing = TimingOptions(warmup_s=args.warmup, min_time_s=args.min_time, min_calls=args.min_calls)
    if args.max_time is not None and args.target_ci is None:
        raise UserError("--max-time bounds the rounds --target-ci adds; give --target-ci too")
    schedule = Schedule(args.rounds, args.seed if args.seed is not None else secrets.randbelow(MAX_SEED + 1),
                        None if args.target_ci is None else args.target_ci / 100,
                        (args.max_time or DEFAULT_MAX_TIME_S) if args.target_ci is not None else None)
    return Plan(selection, timing, shrink_on_oom=bool(selection.paper and paper.PROTOCOLS[args.device].shrink_on_oom),
                schedule=schedule)


def config_of(args: argparse.Namespace, plan) -> dict:
    from dataclasses import asdict

    return {"argv": sys.argv[1:], **selection_config(plan.selection), "timing": asdict(plan.timing),
            "schedule": asdict(plan.schedule)}


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
    for line in render.problems(record.results):
        out.print(f"[dim]{line}[/]")
    for e in record.results:  # --target-ci: name the entries that did not get there
        for note in e.notes:
            if note.startswith("did not reach --target-ci"):
                out.print(f"[yellow]{e.label()}: {note}[/]")
    out.print(f"results: {writer.path}")
    return EXIT_OK
