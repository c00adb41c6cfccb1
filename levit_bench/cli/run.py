"""The main command: validate everything, build a Plan, claim the results file, measure, render."""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from .. import __version__, paper, sysinfo
from ..errors import UserError
from ..results import ResultsWriter, RunRecord
from ..spec import DEVICES, PRECISIONS, EventKind, RuntimeOptions, Settings
from . import render
from .args import EXIT_INTERRUPTED, EXIT_OK, Parser, int_list, names, percent, positive_int, seconds

DEFAULT_BATCHES = {"cpu": [1, 16, 64], "cuda": [256, 2048]}
DEFAULT_MAX_TIME_S = 600.0
DEFAULT_PRECISION = {"cpu": "fp32", "cuda": "fp16"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    """One flag per declared runtime option (``spec.RuntimeOptions``): nothing to add here by hand."""
    for name, default, info in RuntimeOptions.declared():
        if info.metavar is not None:
            p.add_argument(_flag(name), dest=name, default=default, metavar=info.metavar, help=info.help)
        elif info.choices is None:
            p.add_argument(_flag(name), dest=name, action="store_true", help=info.help)
        else:
            p.add_argument(_flag(name), dest=name, choices=info.choices, default=default,
                           help=f"{info.help} (default {default})")


def run_parser() -> Parser:
    p = Parser(
        prog="levit-bench",
        description="Measure images/s of vision models on this machine, per runtime, with honest statistics. "
        "Other commands: list, sysinfo, report, compare, cache (levit-bench COMMAND --help).",
    )
    p.add_argument("--version", action="version", version=f"levit-bench {__version__}")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--model", action="append", type=names("--model"), default=None,
                   help="model names or globs (repeatable, comma lists): levit_256, 'levit_*', timm:resnet50")
    p.add_argument("--backend", action="append", type=names("--backend"), default=None,
                   help="torch, torch-compile, torchscript, onnxruntime, openvino (default: the device's set)")
    p.add_argument("--batch-size", action="append", type=int_list("--batch-size"), default=None,
                   help="batch sizes (repeatable, comma lists; default cpu 1,16,64, cuda 256,2048)")
    p.add_argument("--threads", type=positive_int("--threads"), default=None,
                   help="threads for torch, ONNX Runtime and OpenVINO (default: physical cores)")
    p.add_argument("--precision", action="append", type=names("--precision"), default=None,
                   help=f"{', '.join(PRECISIONS)}; a comma list measures each, timed in the same rounds "
                   "(default fp32 on cpu, fp16 on cuda)")
    add_runtime_options(p)
    p.add_argument("--warmup", type=seconds("--warmup", True), default=1.0, help="warm-up seconds (default 1)")
    p.add_argument("--min-time", type=seconds("--min-time", False), default=2.0,
                   help="timed seconds per entry, at least (default 2)")
    p.add_argument("--min-calls", type=positive_int("--min-calls"), default=5, help="timed calls, at least (default 5)")
    p.add_argument("--rounds", type=positive_int("--rounds"), default=None,
                   help="timing rounds: each visits every entry once in a random order, and --min-time is "
                   "shared between them (default: 5 to 10, as many as cost at most a quarter more timed time "
                   "than one block per entry)")
    p.add_argument("--seed", type=positive_int("--seed"), default=None,
                   help="seed of the round orders (default: drawn, and recorded in the results)")
    p.add_argument("--target-ci", type=percent("--target-ci"), default=None, metavar="PCT",
                   help="add rounds until every entry's 95%% interval half-width is within PCT%% of its estimate")
    p.add_argument("--max-time", type=seconds("--max-time", False, maximum=7 * 24 * 3600), default=None,
                   help="with --target-ci: stop adding rounds after this many seconds of timing (default 600)")
    p.add_argument("--weights", default=None, help="local checkpoint file (.pth, .pt, .safetensors)")
    p.add_argument("--img-size", type=positive_int("--img-size"), default=None, help="input resolution override")
    p.add_argument("--out", default="results", help="results file (*.json) or folder (default: results/)")
    p.add_argument("--force", action="store_true", help="replace the --out file if it exists (never done unasked)")
    p.add_argument("--cache-dir", default=None, help="export cache (default: $LEVIT_BENCH_CACHE or ~/.cache/levit-bench)")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout (nothing else)")
    p.add_argument("--quiet", action="store_true", help="no table, no progress")
    p.add_argument("--paper", action="store_true", help=paper.protocol_flag_help())
    return p


def resolve_models(groups: list[list[str]] | None) -> list[str]:
    from .. import zoo

    wanted = [n for g in (groups or [["levit_256"]]) for n in g]
    out: list[str] = []
    for name in wanted:
        if any(ch in name for ch in "*?[") and not name.startswith("timm:"):
            matched = zoo.list_models(name)
            if not matched:
                raise UserError(f"--model {name!r} matches no model (see `levit-bench list`)")
        else:
            zoo.model_spec(name)  # raises with the closest names
            matched = [name]
        out += [m for m in matched if m not in out]
    return out


def resolve_backends(groups: list[list[str]] | None, device: str) -> list[str]:
    import difflib

    from ..backends import BACKENDS, default_backends

    if not groups:
        return default_backends(device)
    out = []
    for name in (n for g in groups for n in g):
        if name not in BACKENDS:
            close = difflib.get_close_matches(name, list(BACKENDS), n=3, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise UserError(f"unknown backend {name!r}{hint} (choose from {', '.join(BACKENDS)})")
        if name not in out:
            out.append(name)
    return out


def output_path(out: str, device: str) -> Path:
    """The results file to write: ``--out`` itself when it ends in .json (any case), else a name in
    that folder unique to this process (host, device, time, process id and a random part)."""
    p = Path(out)
    if p.suffix.lower() == ".json":
        return p
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in platform.node() or "host")
    return p / f"{host}-{device}-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}.json"


def resolve_precisions(groups: list[list[str]] | None, device: str) -> list[str]:
    """``--precision`` values (repeatable, comma lists) in order, each once; the device's default without."""
    wanted = [p for g in groups for p in g] if groups else [DEFAULT_PRECISION[device]]
    for p in wanted:
        if p not in PRECISIONS:
            raise UserError(f"unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
    return list(dict.fromkeys(wanted))


def _paper_conflicts(args: argparse.Namespace) -> None:
    protocol = paper.PROTOCOLS[args.device]
    asked = {"--threads": (args.threads, protocol.threads),
             "--precision": (args.precision and [p for g in args.precision for p in g], [protocol.precision]),
             "--batch-size": (args.batch_size and [b for g in args.batch_size for b in g], [protocol.batch_size])}
    for flag, (given, fixed) in asked.items():
        if given is not None and fixed is not None and given != fixed:
            raise UserError(f"--paper fixes {flag} to {fixed if not isinstance(fixed, list) else fixed[0]} on "
                            f"{args.device}; {flag} {given if not isinstance(given, list) else ','.join(map(str, given))} "
                            "contradicts it (drop one of the two)")


def resolve_threads(asked: int | None) -> int:
    if asked is None:
        return sysinfo.physical_cores()
    logical = os.cpu_count() or 1
    if asked > logical:
        sys.stderr.write(f"levit-bench: warning: --threads {asked} is more than this machine's {logical} logical "
                         "cores: oversubscribed threads make every call slower and the figures unlike any deployment\n")
    return asked


def check_models(models: list[str], weights: str | None, img_size: int | None) -> None:
    """Build every model as the run will (its weights, its input size) now, so a misfit stops the
    run before anything is measured: weights of another model, a size LeViT cannot take."""
    from .. import zoo

    for name in models:
        try:
            zoo.create_model(name, weights=weights, img_size=img_size)
        except UserError as exc:
            if weights is None:
                raise
            raise UserError(f"--weights {weights} does not fit {name}: {exc}") from None


def check_device(device: str) -> None:
    """A UserError for ``--device cuda`` where torch sees no CUDA device."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")


def options_of(args: argparse.Namespace) -> RuntimeOptions:
    """The runtime options the generated flags (:func:`add_runtime_options`) were given."""
    return RuntimeOptions(**{name: getattr(args, name) for name, _d, _i in RuntimeOptions.declared()})


def build_plan(args: argparse.Namespace):
    """The Plan, every value checked (UserError before anything is measured)."""
    from ..backends import ExportCache
    from ..backends.quantize import check_calibration
    from ..bench import Plan
    from ..harness import TimingOptions
    from ..schedule import Schedule

    check_device(args.device)
    models = resolve_models(args.model)
    backends = resolve_backends(args.backend, args.device)
    batches = [b for g in args.batch_size for b in g] if args.batch_size else None
    options = options_of(args)
    precisions, threads = resolve_precisions(args.precision, args.device), args.threads
    if args.paper:
        _paper_conflicts(args)
        protocol = paper.PROTOCOLS[args.device]
        precisions, threads = [protocol.precision], protocol.threads or threads
        batches = [protocol.batch_size]
        options = RuntimeOptions(**{**options.to_dict(), "half_mode": protocol.half_mode})
    check_calibration(options.calibration, "int8" if "int8" in precisions else precisions[0])
    batches = list(dict.fromkeys(batches or DEFAULT_BATCHES[args.device]))
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"--weights {args.weights}: no such file")
    if args.weights or args.img_size is not None:
        check_models(models, args.weights, args.img_size)
    ExportCache(args.cache_dir).check()
    settings = Settings(device=args.device, precision=precisions[0], threads=resolve_threads(threads), options=options)
    timing = TimingOptions(warmup_s=args.warmup, min_time_s=args.min_time, min_calls=args.min_calls)
    if args.max_time is not None and args.target_ci is None:
        raise UserError("--max-time bounds the rounds --target-ci adds; give --target-ci too")
    schedule = Schedule(args.rounds, args.seed if args.seed is not None else secrets.randbelow(2**31),
                        None if args.target_ci is None else args.target_ci / 100,
                        (args.max_time or DEFAULT_MAX_TIME_S) if args.target_ci is not None else None)
    return Plan(models, backends, batches, settings, timing, args.weights, args.img_size, args.cache_dir,
                shrink_on_oom=bool(args.paper and paper.PROTOCOLS[args.device].shrink_on_oom), schedule=schedule,
                precisions=precisions if len(precisions) > 1 else [])


def config_of(args: argparse.Namespace, plan) -> dict:
    from dataclasses import asdict

    s = plan.settings
    return {
        "argv": sys.argv[1:],
        "models": plan.models,
        "backends": plan.backends,
        "batch_sizes": plan.batch_sizes,
        "settings": {"device": s.device, "precision": s.precision, "threads": s.threads, **s.options.to_dict()},
        "precisions": [x.precision for x in plan.settings_list()],
        "timing": asdict(plan.timing),
        "schedule": asdict(plan.schedule),
        "weights": plan.weights,
        "img_size": plan.img_size,
        "paper_protocol": args.paper,
        "cache_dir": str(Path(plan.cache_dir)) if plan.cache_dir else None,
    }


def cmd_run(argv: Sequence[str]) -> int:
    args = run_parser().parse_args(argv)
    plan = build_plan(args)
    writer = ResultsWriter(output_path(args.out, args.device), replace=args.force).claim()
    try:
        return _measure(args, plan, writer)
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
