"""The main command: validate everything, build a Plan, claim the results file, measure, render."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace

from .. import __version__, paper, sysinfo
from ..errors import UserError
from ..results import RunRecord
from ..results_writer import ResultsWriter
from ..shard_merge import interrupted, step_of
from ..spec import EventKind
from .args import COMMAND_NAMES, EXIT_INTERRUPTED, EXIT_OK, Parser
from .front import (add_input, add_output, add_paper, add_selection, add_timing, output_path, resolve, resolve_input,
                    resolve_timing, selection_config)
from . import planfile, render


def run_parser() -> Parser:
    p = Parser(
        prog="levit-bench",
        description="Measure images/s of vision models on this machine, per runtime, with honest statistics. "
        f"Other commands: {', '.join(c for c in COMMAND_NAMES if c != 'run')} (levit-bench COMMAND --help; "
        "`levit-bench run` is this command).",
    )
    p.add_argument("--version", action="version", version=f"levit-bench {__version__}")
    add_selection(p)
    add_paper(p)
    add_timing(p, processes=1)
    planfile.add_plan_flags(p, resume=True)
    add_input(p)
    add_output(p, "results", "results file (*.json) or folder (default: results/)", "no table, no progress")
    return p


def build_plan(args: argparse.Namespace):
    """The Plan (this run's shard of it, in chunks where asked) and its fleet view, every value
    checked (UserError before anything is measured)."""
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
    fleet = planfile.resolve_fleet(args, selection)
    chunks = fleet.chunks(args.chunk)
    return Plan(fleet.selection, timing, shrink_on_oom=bool(selection.paper and paper.PROTOCOLS[args.device].shrink_on_oom),
                schedule=schedule, processes=args.processes, chunks=tuple(chunks) if chunks else None,
                end_to_end=e2e), fleet


def config_of(args: argparse.Namespace, plan, fleet: planfile.Fleet) -> dict:
    from dataclasses import asdict

    e2e = plan.end_to_end
    return {"argv": sys.argv[1:], **selection_config(plan.selection), "timing": asdict(plan.timing),
            "schedule": asdict(plan.schedule), "processes": plan.processes, "plan": fleet.record(),
            **({"input": {"kind": "jpeg", "folder": e2e.spec.folder, "decoders": list(e2e.spec.decoders),
                          "decode_threads": list(e2e.spec.decode_threads)}} if e2e is not None else {})}


def cmd_run(argv: Sequence[str]) -> int:
    args = planfile.parse(run_parser, argv)
    plan, fleet = build_plan(args)
    if args.resume is not None:
        if any(a == "--out" or a.startswith("--out=") for a in argv):
            raise UserError("--resume writes FILE in place; drop --out")
        writer = ResultsWriter(args.resume, resume=True).claim()
    else:
        writer = ResultsWriter(output_path(args.out, args.device), replace=args.force).claim()
    try:
        record, kept = (_resumed(args, plan, fleet, argv) if args.resume is not None else
                        (RunRecord(system=sysinfo.collect(), config=config_of(args, plan, fleet)), []))
        if kept or args.resume is not None:
            plan = replace(plan, selection=plan.selection.restricted(_missing(fleet, kept)),
                           first_group=1 + max((e.group for e in kept if e.group is not None), default=-1))
        return _measure(args, plan, writer, record, fleet, kept)
    except UserError:
        writer.abandon()
        raise
    finally:
        writer.release()


def _finished(e) -> bool:
    """Measured to the end (not cut short by an interrupt): what --resume keeps (a failed or skipped
    entry is measured again: what failed may not fail twice)."""
    return e.ok and not interrupted(e)


def _step(e) -> tuple:
    return tuple(step_of(e))


def _missing(fleet: planfile.Fleet, kept: list) -> list[tuple]:
    have = {_step(e) for e in kept}
    return [tuple(fleet.entries[i]) for i in fleet.mine() if tuple(fleet.entries[i]) not in have]


def _resumed(args: argparse.Namespace, plan, fleet: planfile.Fleet, argv: Sequence[str]):
    """The record of ``--resume FILE`` with its finished entries of this plan, shard, machine and
    versions (else a UserError saying what differs)."""
    from datetime import datetime, timezone

    from ..results import load

    old = load(args.resume)
    recorded = (old.config or {}).get("plan") or {}
    if not recorded.get("hash"):
        raise UserError(f"--resume {args.resume}: it records no plan (a file of an older levit-bench or of "
                        "another command); measure again without --resume")
    problems = []
    if recorded["hash"] != fleet.hash:
        problems.append(f"plan {recorded['hash'][:12]} vs {fleet.hash[:12]} (another plan, flags or timing)")
    shard, now = recorded.get("shard"), fleet.record()["shard"]
    if shard != now:
        show = lambda s: f"{s['index']}/{s['count']}" if s else "the whole plan"  # noqa: E731
        problems.append(f"shard {show(shard)} vs {show(now)}")
    problems += sysinfo.machine_differences(old.system, sysinfo.collect())
    if old.tool_version != __version__:
        problems.append(f"levit-bench {old.tool_version} vs {__version__}")
    if problems:
        raise UserError(f"--resume {args.resume}: cannot resume, this run differs: {'; '.join(problems)}")
    wanted = {tuple(fleet.entries[i]) for i in fleet.mine()}
    kept = [e for e in old.results if _finished(e) and _step(e) in wanted]
    old.results, old.complete = list(kept), False
    old.config.setdefault("resumed", []).append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                                 "argv": list(argv), "kept": len(kept)})
    return old, kept


def _measure(args: argparse.Namespace, plan, writer: ResultsWriter, record: RunRecord, fleet: planfile.Fleet,
             kept: list) -> int:
    from ..bench import execute

    out = render.console(stderr=args.json, quiet=args.quiet)
    err = render.console(stderr=True)
    if fleet.shard is not None or fleet.source or kept or args.resume:
        where = f"shard {fleet.shard[0]}/{fleet.shard[1]}: " if fleet.shard else ""
        err.print(f"[dim]plan {fleet.hash[:12]}: {where}{plan.steps()} entries to measure"
                  + (f", {len(kept)} kept from {writer.path}" if args.resume else "") + "[/]")
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
    order = {tuple(e): i for i, e in enumerate(fleet.entries)}
    record.results = sorted(kept + finished, key=lambda e: order.get(_step(e), len(order)))  # plan order
    record.complete = True
    writer.save(record)
    if args.json:
        sys.stdout.write(json.dumps(record.to_dict(), indent=1) + "\n")
    if record.results:
        out.print(render.results_table(record.results, emulated=record.system.get("emulated")))
    else:
        out.print("nothing to measure: this shard of the plan has no entries (more shards than groups)")
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
