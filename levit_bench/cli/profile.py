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
from ..errors import UserError
from ..results import ResultsWriter, RunRecord
from ..spec import DEVICES, PRECISIONS, Settings
from . import render
from .args import EXIT_OK, Parser, names, positive_int, seconds
from .run import (DEFAULT_PRECISION, add_runtime_options, check_models, options_of, resolve_backends, resolve_models,
                  resolve_threads)

DEFAULT_BACKENDS = ["torch", "onnxruntime", "openvino"]
DEFAULT_BATCH = 16
DEFAULT_TOP = 8


def profile_parser() -> Parser:
    from ..profiling import CATEGORIES, ProfileOptions

    defaults = ProfileOptions()
    p = Parser(prog="levit-bench profile",
               description="Per-op time of each model × backend from the runtime's own profiler (torch.profiler, "
               "ONNX Runtime session profiling, OpenVINO performance counters), in categories: "
               f"{', '.join(CATEGORIES.values())}; and the profiler's overhead against unprofiled calls.")
    p.add_argument("--model", action="append", type=names("--model"), default=None,
                   help="model names or globs (repeatable, comma lists; default levit_256)")
    p.add_argument("--backend", action="append", type=names("--backend"), default=None,
                   help=f"torch, torch-compile, torchscript, onnxruntime, openvino (default {','.join(DEFAULT_BACKENDS)})")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="cpu (the profilers read are CPU ones)")
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="default fp32")
    p.add_argument("--threads", type=positive_int("--threads"), default=None,
                   help="threads for torch, ONNX Runtime and OpenVINO (default: physical cores)")
    p.add_argument("--batch-size", type=positive_int("--batch-size"), default=DEFAULT_BATCH,
                   help=f"images per call (default {DEFAULT_BATCH})")
    add_runtime_options(p)
    p.add_argument("--img-size", type=positive_int("--img-size"), default=None, help="input resolution override")
    p.add_argument("--weights", default=None, help="local checkpoint file (.pth, .pt, .safetensors)")
    p.add_argument("--calls", type=positive_int("--calls"), default=defaults.calls,
                   help=f"profiled calls per entry, at least (default {defaults.calls}; as many unprofiled)")
    p.add_argument("--min-time", type=seconds("--min-time", False), default=defaults.min_time_s,
                   help=f"profiled seconds per entry, at least (default {defaults.min_time_s:g})")
    p.add_argument("--warmup", type=seconds("--warmup", True), default=defaults.warmup_s,
                   help=f"warm-up seconds (default {defaults.warmup_s:g})")
    p.add_argument("--top", type=positive_int("--top"), default=DEFAULT_TOP,
                   help=f"runtime ops shown per entry (default {DEFAULT_TOP}; unclassified ones are listed too)")
    p.add_argument("--png", default=None, metavar="PATH", help="write a stacked-bar chart of the categories")
    p.add_argument("--cache-dir", default=None, help="export cache (default: $LEVIT_BENCH_CACHE or ~/.cache/levit-bench)")
    p.add_argument("--json", action="store_true", help="print the profiles as JSON on stdout (nothing else)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="also save them as a results file (system facts, the command, `profiles`), which "
                   "`levit-bench report` turns into a profile figure; never replaced unless --force")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--quiet", action="store_true", help="no tables")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    options = options_of(args)
    return Settings(device=args.device, precision=args.precision or DEFAULT_PRECISION[args.device],
                    threads=resolve_threads(args.threads), options=options)


def _check(args: argparse.Namespace, backends: list[str], settings: Settings, models: list[str]) -> None:
    """Every refusal before anything is built or measured."""
    from ..backends import ExportCache
    from ..profiling import cannot_profile

    for backend in backends:
        reason = cannot_profile(backend, settings)
        if reason:
            raise UserError(f"cannot profile {backend}: {reason}")
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"--weights {args.weights}: no such file")
    if args.png is not None and Path(args.png).is_dir():
        raise UserError(f"--png {args.png} is a folder; give a file name (e.g. {Path(args.png) / 'profile.png'})")
    if args.weights or args.img_size is not None:
        check_models(models, args.weights, args.img_size)
    ExportCache(args.cache_dir).check()


def cmd_profile(argv: Sequence[str]) -> int:
    from ..profiling import ProfileOptions, plot_profiles, profile_entries
    from ..profiling.table import categories_table, ops_table, summary_lines

    args = profile_parser().parse_args(argv)
    models = resolve_models(args.model)
    backends = resolve_backends(args.backend or [DEFAULT_BACKENDS], args.device)
    settings = _settings(args)
    _check(args, backends, settings, models)
    writer = ResultsWriter(args.out, replace=args.force).claim() if args.out else None
    out = render.console(stderr=args.json, quiet=args.quiet)
    err = render.console(stderr=True)
    options = ProfileOptions(calls=args.calls, min_time_s=args.min_time, warmup_s=args.warmup)

    def on_entry(model: str, backend: str) -> None:
        if not args.quiet:
            err.print(f"[dim]profiling {model} · {backend} (batch {args.batch_size}, "
                      f"{settings.threads} thread{'s' if settings.threads != 1 else ''})[/]")

    try:
        profiles = profile_entries(models, backends, settings, args.batch_size, options=options,
                                   weights=args.weights, img_size=args.img_size, cache_dir=args.cache_dir,
                                   on_entry=on_entry, show_warning=lambda text: err.print(f"[yellow]warning[/]: {text}"))
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
            out.print(f"chart: {plot_profiles(profiles, args.png)}")
        else:
            err.print("[yellow]no entry was profiled: no chart written[/]")
    return EXIT_OK
