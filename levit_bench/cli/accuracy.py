"""``levit-bench accuracy --data DIR``: measured top-1/top-5 of each export, into a results file.

``--out`` naming a new file (or a folder) writes a new results file holding the accuracy records;
naming an existing results file adds the records to it (a record replaces an earlier one of the same
model, variant, device, precision and threads), so the report shows them beside that run's timings;
``--force`` replaces the file instead.  Without ``--out`` nothing is written: a table (or, with
``--json``, the records) is printed.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from .. import sysinfo
from ..accuracy_record import AccuracyRecord
from ..errors import UserError
from ..results import RunRecord, load
from ..results_writer import ResultsWriter
from ..spec import Status
from .args import EXIT_INTERRUPTED, EXIT_OK, Parser, positive_int
from .front import Shape, add_output, add_selection, output_path, resolve, selection_config
from . import render

DEFAULT_BATCH = 32


SHAPE = Shape(batch_sizes=(DEFAULT_BATCH,), many_batches=False)


def accuracy_parser() -> Parser:
    p = Parser(prog="levit-bench accuracy",
               description="Top-1/top-5 of each model's exports (backend × precision) on a local ImageNet-style "
               "folder, with the model's own eval transform; runners that fail the parity check are not evaluated. "
               "Nothing is downloaded.")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="one sub-folder per class: WordNet ids (n01440764) or class indices (0..999)")
    p.add_argument("--limit", type=positive_int("--limit"), default=None, metavar="N",
                   help="evaluate N images, evenly spaced over the sorted folder (so every class is reached)")
    add_selection(p, SHAPE)
    add_output(p, None, "results file to write, or an existing one to add the records to (default: print only; "
               "--force replaces it instead of adding)", "no table, no progress")
    return p


def build_plan(args: argparse.Namespace):
    """The AccuracyPlan, every value checked (UserError before anything is evaluated)."""
    from .. import data
    from ..accuracy import AccuracyPlan

    selection = resolve(args, SHAPE)
    images = data.labelled_images(Path(args.data), args.limit)
    calibration = selection.settings.options.calibration
    if calibration and _overlap(Path(calibration), images.root):
        sys.stderr.write("levit-bench: warning: --calibration and --data share images: int8 calibrated on the "
                         "images it is evaluated on scores higher than it would on unseen ones\n")
    return AccuracyPlan(selection, images, args.limit)


def _overlap(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def config_of(argv: Sequence[str], plan) -> dict:
    return {"argv": ["accuracy", *argv], "command": "accuracy", **selection_config(plan.selection),
            "batch_size": plan.batch_size, "data": str(plan.images.root), "limit": plan.limit}


class _Target:
    """Where the records go: a new results file, or an existing one they are added to."""

    def __init__(self, out: str, device: str, force: bool, argv: Sequence[str], plan):
        path = output_path(out, device)
        exists = path.is_file()
        self.writer = ResultsWriter(path, replace=True).claim()  # the lock: no run writes it meanwhile
        try:
            self.added = exists and not force
            if self.added:
                try:
                    self.doc = load(path)
                except UserError as exc:
                    raise UserError(f"--out {path}: exists and cannot take accuracy records ({exc}); choose "
                                    "another --out, or pass --force to replace it") from None
            else:
                self.doc = RunRecord(system=sysinfo.collect(), config=config_of(argv, plan))
            self.doc.source = None
            self.save()
        except BaseException:
            self.writer.release()
            raise

    def add(self, record: AccuracyRecord) -> None:
        self.doc.accuracy = [r for r in self.doc.accuracy if r.key != record.key] + [record]
        self.save()

    def finish(self) -> None:
        if not self.added:
            self.doc.complete = True
        self.save()

    def save(self) -> None:
        self.writer.save(self.doc)


def cmd_accuracy(argv: Sequence[str]) -> int:
    args = accuracy_parser().parse_args(argv)
    plan = build_plan(args)
    target = _Target(args.out, args.device, args.force, argv, plan) if args.out else None
    try:
        return _evaluate(args, plan, target)
    except UserError:
        if target is not None:
            target.writer.abandon()
        raise
    finally:
        if target is not None:
            target.writer.release()


def _evaluate(args: argparse.Namespace, plan, target: _Target | None) -> int:
    from ..accuracy import evaluate

    out = render.console(stderr=args.json, quiet=args.quiet)
    err = render.console(stderr=True)
    done: list[AccuracyRecord] = []

    def on_record(record: AccuracyRecord) -> None:
        done.append(record)
        if target is not None:
            target.add(record)

    with render.progress(out) as bar:
        task = bar.add_task("accuracy", total=plan.total_images())
        try:
            records = evaluate(plan, lambda what, n: bar.update(task, description=what or None, advance=n),
                               on_record, show_warning=lambda text: err.print(f"[yellow]warning[/]: {text}"))
        except KeyboardInterrupt:
            bar.stop()
            kept = f", kept in {target.writer.path}" if target is not None else ""
            err.print(f"[yellow]interrupted[/]: {len(done)} finished records{kept}")
            return EXIT_INTERRUPTED
    if target is not None:
        target.finish()
    if args.json:
        sys.stdout.write(json.dumps([r.to_dict() for r in records], indent=1) + "\n")
    out.print(accuracy_table(records, plan.selection.weights is None))
    for r in records:
        if r.status is not Status.OK:
            out.print(f"[dim]{r.status}: {r.label()}: {r.reason}[/]")
    data = next((r.data for r in records if r.data), None)
    if data and data["skipped"]:
        out.print(f"[yellow]{data['skipped']} unreadable image(s) skipped[/], e.g. {data['skipped_files'][0]}")
    if target is not None:
        out.print(f"accuracy records added to {target.writer.path}" if target.added else f"results: {target.writer.path}")
    return EXIT_OK


def accuracy_table(records: Sequence[AccuracyRecord], random_weights: bool) -> Table:
    """One row per model × variant × precision: images, top-1, top-5, agreement with eager fp32."""
    title = "measured accuracy" + (" (seeded random weights: not the models' accuracy)" if random_weights else "")
    table = Table(title=title, title_justify="left")
    for col, justify in (("model", "left"), ("backend", "left"), ("precision", "left"), ("images", "right"),
                         ("top-1 %", "right"), ("top-5 %", "right"), ("agrees with fp32", "right")):
        table.add_column(col, justify=justify)
    for r in records:
        images = str((r.data or {}).get("images", ""))
        if r.ok:
            agree = f"{r.agreement:.1%}" if r.agreement is not None else ""
            table.add_row(r.model, r.variant, f"{r.device} {r.precision}", images, f"{r.top1:.2f}", f"{r.top5:.2f}",
                          agree)
        else:
            style = "yellow" if r.status is Status.SKIPPED else "red"
            table.add_row(r.model, r.variant, f"{r.device} {r.precision}", images, f"[{style}]{r.status}[/]", "", "")
    return table
