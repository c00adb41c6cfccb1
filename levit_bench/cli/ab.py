"""``levit-bench ab --base PYTHON --new PYTHON``: did this upgrade slow the plan down?

The same plan in two environments (two virtual environments, or two checkouts with ``--base-path``
/ ``--new-path``), each side in worker processes of its own interpreter, timed in the same
interleaved rounds with each entry's base and new blocks adjacent (``--duet``: at the same time, on
disjoint cores).  The verdict per entry comes from the paired per-round ratios; exit 1 when the new
side is flagged slower.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import sysinfo
from ..allocator import heaps_differ
from ..errors import UserError
from ..gate import paired_verdict
from ..results import Entry, RunRecord
from ..results_writer import ResultsWriter
from ..verdict import FAIL, INCONCLUSIVE, PASS
from .args import EXIT_INTERRUPTED, EXIT_OK, EXIT_REGRESSION, Parser, percent
from .front import add_output, add_selection, add_timing, output_path, resolve, resolve_timing, selection_config
from . import render

DEFAULT_FAIL_ABOVE_PCT = 5.0
#: worker processes per side unless --processes says otherwise: with the steady heap one a side kept
#: A/A false flags at 0 of 10 under the ci-like neighbour (docs/measurement.md)
AB_PROCESSES = 1
#: paired rounds unless --rounds says otherwise: at 8, a 10% slowdown was flagged in 4 of 10 ci-like
#: trials (the rest inconclusive); at 32, in 10 of 10, with 0 of 10 A/A flagged, 59 s a trial for one
#: entry (docs/measurement.md)
AB_ROUNDS = 32
NOT_MEASURED = "not measured"


def ab_parser() -> Parser:
    p = Parser(prog="levit-bench ab",
               description="Time the same plan in two Python environments in the same interleaved rounds (each "
               "entry's base and new blocks adjacent) and judge each entry from the paired per-round ratios. "
               "Exit 1 when the new side is flagged slower, 2 for bad input or sides that prepared different "
               "identities.")
    g = p.add_argument_group("the two sides")
    g.add_argument("--base", required=True, metavar="PYTHON", help="the base side's interpreter (e.g. venv-a/bin/python)")
    g.add_argument("--new", required=True, metavar="PYTHON", help="the new side's interpreter")
    g.add_argument("--base-path", default=None, metavar="DIR",
                   help="a checkout put first on the base worker's PYTHONPATH (its levit_bench and model code)")
    g.add_argument("--new-path", default=None, metavar="DIR", help="the same for the new side")
    g.add_argument("--duet", action="store_true",
                   help="run each entry's two blocks at the same time, each side pinned to its own cores (needs "
                   "threads × 2 ≤ cores): both meet the same interference (duet benchmarking)")
    g.add_argument("--fail-above", type=percent("--fail-above"), default=DEFAULT_FAIL_ABOVE_PCT, metavar="PCT",
                   help=f"flag an entry when the new side is significantly slower by more than PCT%% "
                   f"(default {DEFAULT_FAIL_ABOVE_PCT:g}); one that cannot be told apart at this noise is inconclusive")
    add_selection(p)
    add_timing(p, processes=AB_PROCESSES, rounds=AB_ROUNDS)
    add_output(p, "results", "results file (*.json) or folder (default: results/)", "no table")
    return p


def verdict(base: Entry, new: Entry, threshold_pct: float) -> dict[str, Any]:
    """One entry's verdict as the results file keeps it (``gate.paired_verdict``: the paired
    per-round log ratios, new speed over base speed)."""
    out: dict[str, Any] = {"label": base.label(), "model": base.model, "backend": base.backend,
                           "batch_size": base.batch_size}
    v = paired_verdict(base, new, threshold_pct=threshold_pct)
    if v is None:
        return {**out, "outcome": NOT_MEASURED, "reason": new.reason or base.reason or "fewer than 2 paired rounds"}
    return {**out, "outcome": v.outcome, "ratio": v.ratio, "bounds": list(v.interval), "p": v.p,
            "alpha": v.alpha, "rounds": v.rounds[0], "threshold": v.threshold, "more_rounds": v.more_rounds,
            "reason": v.reason, **({} if v.processes is None else
                                   {"processes": v.processes[0], "more_processes": v.more_processes})}


def _interpreter(flag: str, python: str) -> str:
    import shutil

    found = shutil.which(python)
    if found is None or not os.access(found, os.X_OK):
        raise UserError(f"{flag} {python}: no such interpreter (give a python executable, e.g. venv/bin/python)")
    return found


def _folder(flag: str, path: str | None) -> str | None:
    if path is not None and not Path(path).is_dir():
        raise UserError(f"{flag} {path}: no such folder (give a checkout holding levit_bench/)")
    return None if path is None else str(Path(path).resolve())


def _duet_cores(threads: int) -> tuple[frozenset[int], frozenset[int]]:
    cores = sorted(os.sched_getaffinity(0))
    if 2 * threads > len(cores):
        raise UserError(f"--duet runs both sides at once on disjoint cores: threads × 2 must be at most the "
                        f"{len(cores)} cores here, got --threads {threads}")
    return frozenset(cores[:threads]), frozenset(cores[threads:2 * threads])


def cmd_ab(argv: Sequence[str]) -> int:
    from dataclasses import asdict

    from ..executions import Side, WorkerDied, execute_ab

    args = ab_parser().parse_args(argv)
    selection = resolve(args)
    timing, schedule = resolve_timing(args)
    cpus = _duet_cores(selection.settings.threads) if args.duet else (None, None)
    base = Side("base", _interpreter("--base", args.base), _folder("--base-path", args.base_path), cpus=cpus[0])
    new = Side("new", _interpreter("--new", args.new), _folder("--new-path", args.new_path), cpus=cpus[1])
    writer = ResultsWriter(output_path(args.out, args.device), replace=args.force).claim()
    out = render.console(stderr=args.json, quiet=args.quiet)
    err = render.console(stderr=True)
    config = {"argv": sys.argv[1:], **selection_config(selection), "timing": asdict(timing),
              "schedule": asdict(schedule), "processes": args.processes, "duet": args.duet, "fail_above_pct": args.fail_above}
    try:
        try:
            run = execute_ab(selection, timing, schedule, base, new, processes=args.processes, duet=args.duet,
                             on_round=lambda done, planned: err.print(f"[dim]round {done} of {planned}[/]")
                             if not args.quiet and done else None)
        except WorkerDied as exc:
            raise UserError(f"a worker could not start: {exc}") from None
        entries = [e for pair in run.pairs for e in pair]
        verdicts = [verdict(b, n, args.fail_above) for b, n in run.pairs]
        record = RunRecord(system=sysinfo.collect(), config=config, results=entries, complete=not run.interrupted,
                           ab={**run.environments, "verdicts": verdicts})
        writer.save(record)
    except UserError:
        writer.abandon()
        raise
    finally:
        writer.release()
    if args.json:
        import json

        sys.stdout.write(json.dumps(record.to_dict(), indent=1) + "\n")
    for line in summary(verdicts, args.fail_above):
        out.print(line)
    if (heap := heaps_differ({name: env.get("allocator") for name, env in run.environments.items()})) is not None:
        err.print(f"[bold yellow]warning[/]: {heap}")
    out.print(f"results: {writer.path}")
    if run.interrupted:
        err.print("[yellow]interrupted[/]: the rounds done are kept (complete: false)")
        return EXIT_INTERRUPTED
    return EXIT_REGRESSION if any(v["outcome"] == FAIL for v in verdicts) else EXIT_OK


def _units(v: dict[str, Any]) -> str:
    if v.get("processes"):
        return f"{v['processes']} processes a side, {v['rounds']} blocks"
    return f"{v['rounds']} paired rounds"


def summary(verdicts: list[dict[str, Any]], fail_above_pct: float) -> list[str]:
    """One line per entry (new against base, the paired interval, the verdict) and the decision."""
    lines = []
    for v in verdicts:
        if v["outcome"] == NOT_MEASURED:
            lines.append(f"{v['label']}: not measured ({v['reason']})")
            continue
        lo, hi = v["bounds"]
        lines.append(f"{v['label']}: new {(v['ratio'] - 1) * 100:+.1f}% (one-sided {1 - v['alpha']:.0%} bounds "
                     f"{(lo - 1) * 100:+.1f}% … {(hi - 1) * 100:+.1f}%, {_units(v)}, p = {v['p']:.2g}): "
                     f"{v['outcome'].upper()}" + ("" if v["outcome"] == PASS else f" — {v['reason']}"))
    counts = {k: sum(v["outcome"] == k for v in verdicts) for k in (FAIL, INCONCLUSIVE, PASS)}
    lines.append(f"ab --fail-above {fail_above_pct:g}%: {counts[FAIL]} slower, {counts[PASS]} pass, "
                 f"{counts[INCONCLUSIVE]} inconclusive" + (" (a change of that size cannot be told at this noise: "
                                                           "more rounds would)" if counts[INCONCLUSIVE] else ""))
    return lines
