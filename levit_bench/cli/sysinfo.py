"""``levit-bench sysinfo``: the machine and library facts recorded with every result; with
``--peak``, the machine's measured GEMM peak (the best runtime's, each runtime's figure shown;
cached per machine) that "% of peak" divides by."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from .. import sysinfo
from ..spec import FLOAT_PRECISIONS
from . import render
from .args import EXIT_OK, Parser, positive_int, seconds
from .front import add_cache_dir, add_device, add_precision, add_threads


def cmd_sysinfo(argv: Sequence[str]) -> int:
    p = Parser(prog="levit-bench sysinfo", description="Machine and library facts recorded with every result.")
    p.add_argument("--json", action="store_true")
    p.add_argument("--peak", action="store_true",
                   help="the machine's peak GMAC/s (a large dense GEMM through torch, timed like any entry); "
                   "cached per machine, measured when not cached")
    p.add_argument("--remeasure", action="store_true", help="--peak: measure again even when cached")
    add_device(p, "--peak: device (default cpu)")
    add_precision(p, "--peak: precision, a run's default", FLOAT_PRECISIONS)
    add_threads(p, "--peak: torch threads (repeatable; default 1 and the physical cores, the threads a run uses "
                "by default)", many=True)
    p.add_argument("--size", type=positive_int("--size"), default=None,
                   help="--peak: GEMM side n (default 2048 on cpu, 8192 on cuda; smaller for a slow precision)")
    p.add_argument("--min-time", type=seconds("--min-time", False), default=None,
                   help="--peak: timed seconds per measurement (default 2)")
    add_cache_dir(p, "--peak: cache (default: $LEVIT_BENCH_CACHE or ~/.cache/levit-bench)")
    args = p.parse_args(argv)
    peak_only = [flag for flag, given in (("--remeasure", args.remeasure), ("--precision", args.precision),
                                          ("--threads", args.threads), ("--size", args.size),
                                          ("--cache-dir", args.cache_dir), ("--min-time", args.min_time),
                                          ("--device", args.device != "cpu"))
                 if given]
    if peak_only and not args.peak:
        p.error(f"{', '.join(peak_only)} {'applies' if len(peak_only) == 1 else 'apply'} only with --peak")
    if args.peak:
        return _peak(args)
    info = sysinfo.collect()
    if args.json:
        sys.stdout.write(json.dumps(info, indent=1) + "\n")
        return EXIT_OK
    from rich.table import Table

    t = Table(show_header=False)
    for k, v in info.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items() if b is not None)
        elif isinstance(v, list):
            v = ", ".join(map(str, v))
        t.add_row(k, str(v))
    render.console().print(t)
    return EXIT_OK


def _peak(args) -> int:
    from .. import peak as peaks
    from .front import DEFAULT_PRECISION

    precision = args.precision or DEFAULT_PRECISION[args.device]
    cores = sysinfo.physical_cores()
    if args.threads:
        threads = list(dict.fromkeys(args.threads))
    else:  # a run's default on cuda is the physical cores; on cpu, one core beside all of them
        threads = [cores] if args.device == "cuda" else list(dict.fromkeys([1, cores]))
    rows = []
    err = render.console(stderr=True)
    for n in threads:
        cached = None if args.remeasure else peaks.cached_peak(args.device, precision, n, args.cache_dir, args.size)
        if cached is not None:
            rows.append((cached, True))
            continue
        if not args.json:
            err.print(f"measuring the peak: {args.device} {precision}, {n} thread{'s' if n > 1 else ''} …")
        fresh = peaks.measure_peak(args.device, precision, n, min_time=args.min_time or 2.0, size=args.size)
        try:
            peaks.store_peak(fresh, args.cache_dir, args.size)
        except OSError as exc:
            sys.stderr.write(f"levit-bench: warning: the peak cannot be cached: {exc.strerror or exc} "
                             "(choose another place with --cache-dir or $LEVIT_BENCH_CACHE)\n")
        rows.append((fresh, False))
    if args.json:
        out = [{**pk.to_dict(), "cached": was_cached} for pk, was_cached in rows]
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
        return EXIT_OK
    from rich.table import Table

    t = Table(title="peak: the best dense GEMM among the runtimes (n×n · n×n, n³ multiply-accumulates a call)",
              title_justify="left")
    for col, just in [("device", "left"), ("precision", "left"), ("threads", "right"), ("runtime", "left"),
                      ("GMAC/s", "right"), ("95% interval", "right"), ("n", "right"), ("measured (UTC)", "left"),
                      ("source", "left")]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for pk, was_cached in rows:
        when, source = pk.measured_at.replace("+00:00", ""), "cached" if was_cached else "measured now"
        for runtime, fig in pk.runtimes.items():
            if "skipped" in fig:
                t.add_row(pk.device, pk.precision, str(pk.threads), runtime, "—", f"[dim]{fig['skipped']}[/]", "",
                          "", "")
                continue
            best = runtime == pk.runtime
            t.add_row(pk.device, pk.precision, str(pk.threads), f"{runtime} (peak)" if best else runtime,
                      f"[bold]{fig['gmacs_per_s']:,.1f}[/]" if best else f"{fig['gmacs_per_s']:,.1f}",
                      f"{fig['low']:,.1f} – {fig['high']:,.1f}", str(pk.size), when, source)
        t.add_section()
    con = render.console()
    con.print(t)
    con.print("[dim]The peak is the fastest runtime's GEMM (same n, threads and harness for each). Cached per "
              "machine, device, precision and threads; --remeasure measures again.[/]")
    return EXIT_OK
