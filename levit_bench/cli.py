"""Command line: parse, build a Plan, run it, render.  Exit codes: 0 done, 1 regression (compare),
2 bad input (before anything is measured), 130 interrupted (finished entries kept)."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from . import __version__
from .errors import UserError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_BATCHES = {"cpu": [1, 16, 64], "cuda": [256, 2048]}


# ---------------------------------------------------------------------------------------------
# argument types


def positive_int(option: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value <= 0 or str(value) != text.strip().lstrip("+"):
            raise argparse.ArgumentTypeError(f"{option} must be a positive integer, got {text!r}")
        return value

    return parse


def int_list(option: str) -> Callable[[str], list[int]]:
    one = positive_int(option)
    return lambda text: [one(t) for t in text.split(",") if t.strip()] or [one("")]


def seconds(option: str, allow_zero: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be a number of seconds, got {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero) or value != value:
            raise argparse.ArgumentTypeError(f"{option} must be {'≥' if allow_zero else '>'} 0 seconds, got {text!r}")
        return value

    return parse


def names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class Parser(argparse.ArgumentParser):
    """argparse that says what is wrong in one line and exits 2 (never a traceback)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"levit-bench: error: {message}\n")


# ---------------------------------------------------------------------------------------------
# the main command: measure


def run_parser() -> Parser:
    p = Parser(
        prog="levit-bench",
        description="Measure images/s of vision models on this machine, per runtime, with honest statistics. "
        "Other commands: list, sysinfo, report, compare (levit-bench COMMAND --help).",
    )
    p.add_argument("--version", action="version", version=f"levit-bench {__version__}")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model", action="append", type=names, default=None,
                   help="model names or globs (repeatable, comma lists): levit_256, 'levit_*', timm:resnet50")
    p.add_argument("--backend", action="append", type=names, default=None,
                   help="torch, torch-compile, torchscript, onnxruntime, openvino (default: the device's set)")
    p.add_argument("--batch-size", action="append", type=int_list("--batch-size"), default=None,
                   help="batch sizes (repeatable, comma lists; default cpu 1,16,64, cuda 256,2048)")
    p.add_argument("--threads", type=positive_int("--threads"), default=None,
                   help="threads for torch, ONNX Runtime and OpenVINO (default: physical cores)")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default=None,
                   help="default fp32 on cpu, fp16 on cuda")
    p.add_argument("--half-mode", choices=["cast", "autocast"], default="cast",
                   help="how torch backends run fp16/bf16: cast the weights, or autocast")
    p.add_argument("--channels-last", action="store_true", help="torch backends: channels_last memory format")
    p.add_argument("--compile-mode", default="default",
                   help="torch-compile mode: default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs")
    p.add_argument("--cuda-graphs", action="store_true", help="torch-compile on CUDA: replay CUDA graphs")
    p.add_argument("--openvino-mode", choices=["sync", "async"], default="sync",
                   help="sync: latency hint, one request; async: throughput hint, AsyncInferQueue")
    p.add_argument("--warmup", type=seconds("--warmup", True), default=1.0, help="warm-up seconds (default 1)")
    p.add_argument("--min-time", type=seconds("--min-time", False), default=2.0,
                   help="timed seconds per entry, at least (default 2)")
    p.add_argument("--min-calls", type=positive_int("--min-calls"), default=5, help="timed calls, at least (default 5)")
    p.add_argument("--weights", default=None, help="local checkpoint file (.pth, .pt, .safetensors)")
    p.add_argument("--img-size", type=positive_int("--img-size"), default=None, help="input resolution override")
    p.add_argument("--out", default="results", help="results file (*.json) or folder (default: results/)")
    p.add_argument("--cache-dir", default=None, help="export cache (default: $LEVIT_BENCH_CACHE or ~/.cache/levit-bench)")
    p.add_argument("--json", action="store_true", help="print the results JSON on stdout (nothing else)")
    p.add_argument("--quiet", action="store_true", help="no table, no progress")
    p.add_argument("--paper", action="store_true",
                   help="the paper's protocol: CPU 1 thread, batch 16, fp32; CUDA AMP fp16, batch 2048 "
                   "(halved until it fits)")
    return p


def resolve_models(groups: list[list[str]] | None) -> list[str]:
    from . import zoo

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

    from .backends import BACKENDS, default_backends

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
    """The results file to write; checks now that it can be written (exit 2 before measuring)."""
    p = Path(out)
    if p.suffix != ".json":
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        host = "".join(c if c.isalnum() or c in "-_" else "_" for c in platform.node() or "host")
        p = p / f"{host}-{device}-{stamp}.json"
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=".levit-bench-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return p


def build_plan(args: argparse.Namespace):
    from .backends import Settings
    from .bench import Plan
    from .harness import TimingOptions

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    models = resolve_models(args.model)
    backends = resolve_backends(args.backend, args.device)
    batches = [b for g in args.batch_size for b in g] if args.batch_size else None
    precision, half_mode, threads = args.precision, args.half_mode, args.threads
    if args.paper:
        if args.device == "cpu":
            threads, precision, batches = 1, "fp32", batches or [16]
        else:
            precision, half_mode, batches = precision or "fp16", "autocast", batches or [2048]
    precision = precision or ("fp16" if args.device == "cuda" else "fp32")
    batches = list(dict.fromkeys(batches or DEFAULT_BATCHES[args.device]))
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"--weights {args.weights}: no such file")
    settings = Settings(
        device=args.device, precision=precision, threads=threads, half_mode=half_mode,
        channels_last=args.channels_last, compile_mode=args.compile_mode, cuda_graphs=args.cuda_graphs,
        openvino_mode=args.openvino_mode,
    )
    timing = TimingOptions(warmup_s=args.warmup, min_time_s=args.min_time, min_calls=args.min_calls)
    return Plan(models, backends, batches, settings, timing, args.weights, args.img_size, args.cache_dir,
                shrink_on_oom=bool(args.paper and args.device == "cuda"))


def config_of(args: argparse.Namespace, plan) -> dict:
    from dataclasses import asdict

    return {
        "argv": sys.argv[1:],
        "models": plan.models,
        "backends": plan.backends,
        "batch_sizes": plan.batch_sizes,
        "settings": {k: v for k, v in asdict(plan.settings).items() if k != "batch_size"} | {"threads": plan.threads},
        "timing": asdict(plan.timing),
        "weights": plan.weights,
        "img_size": plan.img_size,
        "paper_protocol": args.paper,
        "cache_dir": str(Path(plan.cache_dir)) if plan.cache_dir else None,
    }


def cmd_run(argv: Sequence[str]) -> int:
    args = run_parser().parse_args(argv)
    plan = build_plan(args)
    out_path = output_path(args.out, args.device)

    from . import render, sysinfo
    from .bench import execute
    from .results import RunRecord

    out = render.console(stderr=args.json, quiet=args.quiet)
    err = render.console(stderr=True)
    warnings.showwarning = lambda message, category, *_a, **_k: err.print(f"[yellow]warning[/]: {message}")
    record = RunRecord(system=sysinfo.collect(), config=config_of(args, plan))
    record.save(out_path)
    with render.progress(out) as bar:
        task = bar.add_task("measuring", total=plan.steps())

        def on_event(ev) -> None:
            if ev.kind == "step":
                bar.update(task, description=f"{ev.model} · {ev.backend} · batch {ev.batch_size}")
            elif ev.kind == "entry":
                record.results.append(ev.entry)
                record.save(out_path)
                bar.advance(task)

        try:
            execute(plan, on_event)
        except KeyboardInterrupt:
            record.complete = False
            record.save(out_path)
            bar.stop()
            render.console(stderr=True).print(
                f"[yellow]interrupted[/]: {len(record.results)} finished entries kept in {out_path} (complete: false)"
            )
            return EXIT_INTERRUPTED
    record.complete = True
    record.save(out_path)
    if args.json:
        sys.stdout.write(json.dumps(record.to_dict(), indent=1) + "\n")
    out.print(render.results_table(record.results))
    for line in render.problems(record.results):
        out.print(f"[dim]{line}[/]")
    out.print(f"results: {out_path}")
    return 0


# ---------------------------------------------------------------------------------------------
# other commands


def cmd_list(argv: Sequence[str]) -> int:
    p = Parser(prog="levit-bench list", description="The model zoo with published figures.")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from dataclasses import asdict

    from . import render, zoo

    specs = [zoo.model_spec(n) for n in zoo.list_models(args.pattern)]
    if args.json:
        rows = [{"name": s.name, "family": s.family, "img_size": s.img_size, "timm_name": s.timm_name,
                 "published": asdict(s.published) if s.published else None} for s in specs]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return 0
    from rich.table import Table

    t = Table(title="levit-bench model zoo (paper throughput: V100 GPU, Xeon 6138 1 thread, Graviton2)", title_justify="left")
    for col, just in [("model", "left"), ("family", "left"), ("input", "right"), ("params", "right"),
                      ("FLOPs", "right"), ("top-1", "right"), ("GPU img/s", "right"), ("Intel img/s", "right"),
                      ("ARM img/s", "right")]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    fmt = lambda v, f="{:g}": "" if v is None else f.format(v)  # noqa: E731
    for s in specs:
        pub = s.published
        top1 = "" if not pub or pub.top1 is None else f"{pub.top1:g}" + ("" if pub.top1_verified else "*")
        t.add_row(s.name, s.family, str(s.img_size),
                  fmt(pub and pub.params, "{:,}"), fmt(pub and pub.flops_m, "{:g}M"), top1,
                  fmt(pub and pub.gpu), fmt(pub and pub.intel_cpu), fmt(pub and pub.arm))
    con = render.console()
    con.print(t)
    con.print("[dim]* top-1 from the model's own paper, not verified against the LeViT paper's table. "
              "Any timm model: timm:NAME[/]")
    return 0


def cmd_sysinfo(argv: Sequence[str]) -> int:
    p = Parser(prog="levit-bench sysinfo", description="Machine and library facts recorded with every result.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from . import render, sysinfo

    info = sysinfo.collect()
    if args.json:
        sys.stdout.write(json.dumps(info, indent=1) + "\n")
        return 0
    from rich.table import Table

    t = Table(show_header=False)
    for k, v in info.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items() if b is not None)
        elif isinstance(v, list):
            v = ", ".join(map(str, v))
        t.add_row(k, str(v))
    render.console().print(t)
    return 0


def _lazy(module: str, func: str) -> Callable[[Sequence[str]], int]:
    def call(argv: Sequence[str]) -> int:
        import importlib

        return getattr(importlib.import_module(f"levit_bench.{module}"), func)(argv)

    return call


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "list": cmd_list,
    "sysinfo": cmd_sysinfo,
    "report": _lazy("report", "cmd_report"),
    "compare": _lazy("gate", "cmd_compare"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        if argv and not argv[0].startswith("-"):
            raise UserError(f"unknown command {argv[0]!r} (commands: {', '.join(COMMANDS)}; or options to measure)")
        return cmd_run(argv)
    except UserError as exc:
        sys.stderr.write(f"levit-bench: error: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("levit-bench: interrupted\n")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # argparse: --help, --version, bad arguments
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)


if __name__ == "__main__":
    sys.exit(main())
