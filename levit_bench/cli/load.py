"""``levit-bench load``: latency under load, MLPerf LoadGen's scenarios (single-stream, server,
offline), the latency–throughput curve (``--sweep rate|concurrency``) and the highest rate whose p99
meets ``--slo-p99-ms`` (issue 22; docs/load.md).  Same front door and preparation path as ``run``."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from .. import sysinfo
from ..errors import UserError
from ..load_record import SCENARIOS, SWEEPS
from ..results import RunRecord
from ..results_writer import ResultsWriter
from .args import EXIT_INTERRUPTED, EXIT_OK, MAX_SECONDS, Parser, int_list, number_list, positive_int, \
    positive_number, seconds
from .front import MAX_SEED, Shape, add_output, add_selection, output_path, resolve, selection_config
from . import render

DEFAULT_DURATION_S = 3.0
MAX_SEARCH_STEPS = 10


def load_parser() -> Parser:
    p = Parser(prog="levit-bench load",
               description="Latency under load, in MLPerf LoadGen's scenarios: single-stream (one request at a "
               "time: p50/p90/p99 with bounds and the early-stopping verdict), server (open-loop Poisson arrivals, "
               "latency from each request's scheduled arrival; --sweep for the latency-throughput curve, "
               "--slo-p99-ms for the highest rate whose p99 meets it) and offline (everything queued: the best "
               "images/s over batch sizes and concurrency). See docs/load.md.")
    g = p.add_argument_group("load")
    g.add_argument("--scenario", choices=SCENARIOS, default="single-stream",
                   help="single-stream (default), server or offline")
    g.add_argument("--rate", action="append", type=number_list("--rate", " requests/s"), default=None,
                   help="server: Poisson arrival rate(s), requests/s (comma lists; several: one level each)")
    g.add_argument("--sweep", choices=SWEEPS, default=None,
                   help="server: the curve in one command: rate (the --rate list, else fractions of the capacity "
                   "the warm-up shows) or concurrency (closed loop, --concurrency outstanding requests per level)")
    g.add_argument("--slo-p99-ms", type=positive_number("--slo-p99-ms", unit=" ms"), default=None, metavar="MS",
                   help="server: search the highest rate whose p99 latency stays under MS, and report the bracket "
                   "it proved (the last rate that met it and the first that did not, each with its interval)")
    g.add_argument("--concurrency", action="append", type=int_list("--concurrency"), default=None,
                   help="worker threads calling the runtime at once (server: the workers serving the arrivals; "
                   "offline and --sweep concurrency: comma lists, one level each; default 1). Threads per worker: "
                   "--threads")
    g.add_argument("--max-batch", type=positive_int("--max-batch", 4096), default=None, metavar="B",
                   help="server: dynamic batching, up to B queued requests per call (the runner is prepared at batch "
                   "B; fewer are padded, as a static-shape engine does)")
    g.add_argument("--max-delay-ms", type=positive_number("--max-delay-ms", allow_zero=True, unit=" ms"), default=None,
                   metavar="MS", help="server with --max-batch: wait at most MS after the oldest queued request for a "
                   "fuller batch (default 0: take what is queued)")
    g.add_argument("--duration", type=seconds("--duration", False), default=DEFAULT_DURATION_S, metavar="S",
                   help=f"counted seconds per level (default {DEFAULT_DURATION_S:g})")
    g.add_argument("--level-warmup", type=seconds("--level-warmup", True), default=0.5, metavar="S",
                   help="seconds at the start of each level that are served but not counted (default 0.5)")
    g.add_argument("--warmup", type=seconds("--warmup", True), default=1.0,
                   help="the runner's warm-up seconds before its first level (default 1)")
    g.add_argument("--seed", type=positive_int("--seed", MAX_SEED, minimum=0), default=0,
                   help="seed of the arrivals (default 0; each level draws its own from it)")
    g.add_argument("--search-steps", type=positive_int("--search-steps", MAX_SEARCH_STEPS), default=3,
                   help="with --slo-p99-ms: levels added by bisection between the bracket's rates (default 3)")
    add_selection(p)
    add_output(p, "results", "results file (*.json) or folder (default: results/)", "no table, no progress")
    return p


def _flat(groups: list[list] | None) -> list:
    return list(dict.fromkeys(v for g in groups for v in g)) if groups else []


def check_flags(args: argparse.Namespace) -> Shape:
    """The scenario's flags checked against each other (one line and exit 2 for a conflict), and the
    selection's shape for it."""
    s, rates, conc = args.scenario, _flat(args.rate), _flat(args.concurrency) or [1]
    batches = _flat(args.batch_size)
    server_only = {"--rate": bool(rates), "--sweep": args.sweep is not None, "--slo-p99-ms": args.slo_p99_ms is not None,
                   "--max-batch": args.max_batch is not None, "--max-delay-ms": args.max_delay_ms is not None}
    for flag, given in server_only.items():
        if given and s != "server":
            raise UserError(f"{flag} is a server setting; --scenario {s} has no arrivals (use --scenario server)")
    if s == "single-stream":
        if batches and batches != [1]:
            raise UserError("--scenario single-stream sends one image at a time: --batch-size 1 only "
                            "(offline measures batches)")
        if conc != [1]:
            raise UserError("--scenario single-stream has one request in flight: --concurrency 1 only "
                            "(server --sweep concurrency keeps more outstanding)")
        return Shape(batch_sizes=(1,), many_batches=False, many_precisions=False)
    if s == "offline":
        return Shape(many_precisions=False)
    if args.sweep == "concurrency" and (rates or args.slo_p99_ms is not None or args.max_delay_ms):
        raise UserError("--sweep concurrency keeps --concurrency requests outstanding (closed loop); --rate, "
                        "--slo-p99-ms and --max-delay-ms are for open-loop arrivals (use --sweep rate)")
    if not (rates or args.sweep or args.slo_p99_ms is not None):
        raise UserError("--scenario server needs --rate R, --sweep rate|concurrency or --slo-p99-ms MS")
    if args.sweep != "concurrency" and len(conc) > 1:
        raise UserError(f"--concurrency takes one value for open-loop arrivals (the workers serving them), got "
                        f"{','.join(map(str, conc))}; --sweep concurrency measures each")
    if args.max_delay_ms and not (args.max_batch and args.max_batch > 1):
        raise UserError("--max-delay-ms waits for a fuller batch: give --max-batch 2 or more")
    if batches and batches != [args.max_batch or 1]:
        raise UserError("--scenario server: a request is one image; --max-batch B serves up to B per call "
                        f"(the runner's batch), so --batch-size {','.join(map(str, batches))} contradicts it")
    return Shape(batch_sizes=(args.max_batch or 1,), many_batches=False, many_precisions=False)


def build_plan(args: argparse.Namespace):
    """The LoadPlan, every value checked (UserError before anything is built or measured)."""
    from ..load import LoadPlan

    shape = check_flags(args)
    selection = resolve(args, shape)
    rates = tuple(_flat(args.rate))
    sweep = args.sweep or ("rate" if len(rates) > 1 else None)
    if args.duration + args.level_warmup > MAX_SECONDS:
        raise UserError(f"--duration with --level-warmup must be at most {MAX_SECONDS:g} seconds per level")
    return LoadPlan(selection, args.scenario, rates, sweep, tuple(_flat(args.concurrency) or [1]),
                    (args.max_delay_ms or 0.0) / 1000.0, args.slo_p99_ms, args.duration, args.level_warmup,
                    args.warmup, args.seed, args.search_steps)


def config_of(argv: Sequence[str], plan) -> dict:
    load = {k: v for k, v in asdict(plan).items() if k != "selection"}
    return {"argv": ["load", *argv], "command": "load", **selection_config(plan.selection), "load": load}


def cmd_load(argv: Sequence[str]) -> int:
    args = load_parser().parse_args(argv)
    plan = build_plan(args)
    writer = ResultsWriter(output_path(args.out, args.device), replace=args.force).claim()
    try:
        return _measure(args, argv, plan, writer)
    except UserError:
        writer.abandon()
        raise
    finally:
        writer.release()


def _measure(args: argparse.Namespace, argv: Sequence[str], plan, writer: ResultsWriter) -> int:
    from ..load import execute

    out = render.console(stderr=args.json, quiet=args.quiet)
    err = render.console(stderr=True, quiet=args.quiet)
    record = RunRecord(system=sysinfo.collect(), config=config_of(argv, plan))
    writer.save(record)

    def on_record(r) -> None:
        record.load.append(r)
        writer.save(record)
        if not r.ok:
            err.print(f"[yellow]{r.status}[/]: {r.label()}: {r.reason}")

    def on_step(model: str, backend: str, batch: int) -> None:
        err.print(f"[dim]preparing {model} · {backend} · batch {batch}[/]")

    def on_level(identity, level: dict) -> None:
        err.print(f"[dim]{identity.model} · {identity.variant} · {render.level_words(level)}[/]", soft_wrap=True)

    try:
        execute(plan, on_record, on_step, on_level, show_warning=lambda text: err.print(f"[yellow]warning[/]: {text}"))
    except KeyboardInterrupt:
        record.complete = False
        writer.save(record)
        err.print(f"[yellow]interrupted[/]: {len(record.load)} finished records kept in {writer.path} (complete: false)")
        return EXIT_INTERRUPTED
    record.complete = True
    writer.save(record)
    if args.json:
        sys.stdout.write(json.dumps(record.to_dict(), indent=1) + "\n")
    for table in render.load_tables(record.load):
        out.print(table)
    for line in render.load_findings(record.load):
        out.print(line, soft_wrap=True)
    out.print(f"results: {writer.path}")
    return EXIT_OK
