"""The front door: one declaration of the flags that say *what to measure*, and one resolver that
turns them into a checked :class:`Selection`.

Every command that measures (``run``, ``accuracy``, ``profile``, and those to come) adds
:func:`add_selection` (and :func:`add_output`) to its parser and calls :func:`resolve`; the
resolution order and its error messages are the same everywhere.  Command-specific limits (one
batch size, one precision, the backends a profiler reads) are a :class:`Shape`, not another parser.
"""
from __future__ import annotations

import argparse
import difflib
import os
import platform
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import paper, sysinfo
from ..errors import UserError
from ..selection import Selection
from ..spec import DEVICES, PRECISIONS, RuntimeOptions, Settings
from .args import int_list, names, percent, positive_int, seconds

DEFAULT_BATCHES = {"cpu": (1, 16, 64), "cuda": (256, 2048)}
DEFAULT_PRECISION = {"cpu": "fp32", "cuda": "fp16"}
DEFAULT_MODEL = "levit_256"
CACHE_HELP = "export cache (default: $LEVIT_BENCH_CACHE or ~/.cache/levit-bench)"


@dataclass(frozen=True)
class Shape:
    """How one command reads the selection: its defaults and what it takes one of."""

    batch_sizes: tuple[int, ...] | None = None  # None: the device's defaults
    many_batches: bool = True
    many_precisions: bool = True
    backends: tuple[str, ...] | None = None  # None: the device's default set


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_selection(p: argparse.ArgumentParser, shape: Shape = Shape()) -> None:
    """The selection flags, declared here once: device, models, backends, batch sizes, precisions,
    threads, every runtime option of ``spec.RuntimeOptions``, weights, input size, cache."""
    from ..backends import BACKENDS

    backends = ", ".join(BACKENDS)
    default_backends = ",".join(shape.backends) if shape.backends else "the device's set"
    batches = ",".join(map(str, shape.batch_sizes)) if shape.batch_sizes else \
        "; ".join(f"{d} {','.join(map(str, b))}" for d, b in DEFAULT_BATCHES.items())
    g = p.add_argument_group("what to measure")
    add_device(g)
    g.add_argument("--model", action="append", type=names("--model"), default=None,
                   help=f"model names or globs (repeatable, comma lists; default {DEFAULT_MODEL}): "
                   "levit_256, 'levit_*', timm:resnet50")
    g.add_argument("--backend", action="append", type=names("--backend"), default=None,
                   help=f"{backends} (repeatable, comma lists; default {default_backends})")
    g.add_argument("--batch-size", action="append", type=int_list("--batch-size"), default=None,
                   help=f"images per call ({'repeatable, comma lists; ' if shape.many_batches else 'one; '}"
                   f"default {batches})")
    add_precision(g, f"{', '.join(PRECISIONS)}"
                  + ("; a comma list measures each, timed in the same rounds" if shape.many_precisions else "; one"))
    add_threads(g, "threads for torch, ONNX Runtime and OpenVINO (default: physical cores)")
    for name, default, info in RuntimeOptions.declared():  # nothing to add here by hand
        shown = f" (default {default})" if info.choices and default is not None and not info.device_defaults else ""
        if info.metavar is not None:
            g.add_argument(_flag(name), dest=name, default=None, metavar=info.metavar, help=info.help)
        elif info.choices is None:
            g.add_argument(_flag(name), dest=name, action="store_true", default=None, help=info.help)
        else:
            g.add_argument(_flag(name), dest=name, choices=info.choices, default=None, help=info.help + shown)
    g.add_argument("--weights", default=None, help="local checkpoint file (.pth, .pt, .safetensors; default: "
                   "seeded random weights)")
    g.add_argument("--img-size", type=positive_int("--img-size"), default=None, help="input resolution override")
    add_cache_dir(g)


# the flags other commands share with the selection (sysinfo --peak, cache), declared here only


def add_paper(p: argparse.ArgumentParser) -> None:
    p.add_argument("--paper", action="store_true", help=paper.protocol_flag_help())


def add_device(g: argparse._ActionsContainer, help: str | None = None) -> None:
    g.add_argument("--device", choices=DEVICES, default="cpu", help=help)


def add_precision(g: argparse._ActionsContainer, help: str, choices: tuple[str, ...] | None = None) -> None:
    """``--precision``: repeatable comma lists (resolved by :func:`resolve_precisions`), or one of
    ``choices``."""
    default = " (default " + ", ".join(f"{v} on {d}" for d, v in DEFAULT_PRECISION.items()) + ")"
    how = {"action": "append", "type": names("--precision")} if choices is None else {"choices": choices}
    g.add_argument("--precision", default=None, help=help + default, **how)


def add_threads(g: argparse._ActionsContainer, help: str, many: bool = False) -> None:
    g.add_argument("--threads", type=positive_int("--threads"), action="append" if many else "store", default=None,
                   help=help)


def add_cache_dir(g: argparse._ActionsContainer, help: str = CACHE_HELP) -> None:
    g.add_argument("--cache-dir", default=None, help=help)


def add_output(p: argparse.ArgumentParser, out_default: str | None, out_help: str, quiet_help: str) -> None:
    """The output flags every measuring command shares: --out, --force, --json, --quiet."""
    g = p.add_argument_group("output")
    g.add_argument("--out", default=out_default, help=out_help)
    g.add_argument("--force", action="store_true", help="replace the --out file if it exists (never done unasked)")
    g.add_argument("--json", action="store_true", help="print JSON on stdout (nothing else)")
    g.add_argument("--quiet", action="store_true", help=quiet_help)


def resolve(args: argparse.Namespace, shape: Shape = Shape()) -> Selection:
    """Every selection flag checked and resolved, in one order; a one-line UserError before anything
    is built, measured or written."""
    check_device(args.device)
    models = resolve_models(args.model)
    backends = resolve_backends(args.backend, args.device, shape.backends)
    precisions = _one_if(resolve_precisions(args.precision, args.device), shape.many_precisions, "--precision")
    asked_batches = [b for g in args.batch_size for b in g] if args.batch_size else None
    batches = list(dict.fromkeys(asked_batches or shape.batch_sizes or DEFAULT_BATCHES[args.device]))
    batches = _one_if(batches, shape.many_batches, "--batch-size")
    given = {name: getattr(args, name) for name, _d, _i in RuntimeOptions.declared()}
    threads = args.threads
    use_paper = bool(getattr(args, "paper", False))
    if use_paper:
        protocol = paper.PROTOCOLS[args.device]
        _paper_conflicts(args, protocol, given)
        precisions, batches, threads = [protocol.precision], [protocol.batch_size], protocol.threads or threads
        given["half_mode"] = protocol.half_mode
    options = RuntimeOptions.for_device(args.device, given)
    from ..backends.quantize import check_calibration

    check_calibration(options.calibration, "int8" if "int8" in precisions else precisions[0])
    check_weights(args.weights)
    if args.weights or args.img_size is not None:
        check_models(models, args.weights, args.img_size)
    from ..backends import ExportCache

    ExportCache(args.cache_dir).check()
    settings = Settings(device=args.device, precision=precisions[0], threads=resolve_threads(threads), options=options)
    return Selection(tuple(models), tuple(backends), tuple(batches), tuple(precisions), settings, args.weights,
                     args.img_size, args.cache_dir, use_paper)


def _one_if(values: list, many: bool, flag: str) -> list:
    if not many and len(values) > 1:
        raise UserError(f"{flag} takes one value for this command, got {','.join(map(str, values))}")
    return values


def resolve_models(groups: list[list[str]] | None) -> list[str]:
    from .. import zoo

    wanted = [n for g in (groups or [[DEFAULT_MODEL]]) for n in g]
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


def resolve_backends(groups: list[list[str]] | None, device: str, default: tuple[str, ...] | None = None) -> list[str]:
    from ..backends import BACKENDS, default_backends

    if not groups:
        return list(default) if default else default_backends(device)
    out = []
    for name in (n for g in groups for n in g):
        if name not in BACKENDS:
            close = difflib.get_close_matches(name, list(BACKENDS), n=3, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise UserError(f"unknown backend {name!r}{hint} (choose from {', '.join(BACKENDS)})")
        if name not in out:
            out.append(name)
    return out


def resolve_precisions(groups: list[list[str]] | None, device: str) -> list[str]:
    """``--precision`` values (repeatable, comma lists) in order, each once; the device's default without."""
    wanted = [p for g in groups for p in g] if groups else [DEFAULT_PRECISION[device]]
    for p in wanted:
        if p not in PRECISIONS:
            raise UserError(f"unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
    return list(dict.fromkeys(wanted))


def _paper_conflicts(args: argparse.Namespace, protocol: paper.Protocol, given: dict) -> None:
    """--paper fixes threads, precision, batch size and half mode: a different value is refused."""
    asked = {"--threads": (args.threads, protocol.threads),
             "--precision": (args.precision and [p for g in args.precision for p in g], [protocol.precision]),
             "--batch-size": (args.batch_size and [b for g in args.batch_size for b in g], [protocol.batch_size]),
             "--half-mode": (given.get("half_mode"), protocol.half_mode)}
    for flag, (value, fixed) in asked.items():
        if value is not None and fixed is not None and value != fixed:
            fixed_text = fixed[0] if isinstance(fixed, list) else fixed
            value_text = ",".join(map(str, value)) if isinstance(value, list) else value
            raise UserError(f"--paper fixes {flag} to {fixed_text} on {args.device}; {flag} {value_text} "
                            "contradicts it (drop one of the two)")


def resolve_threads(asked: int | None) -> int:
    if asked is None:
        return sysinfo.physical_cores()
    logical = os.cpu_count() or 1
    if asked > logical:
        sys.stderr.write(f"levit-bench: warning: --threads {asked} is more than this machine's {logical} logical "
                         "cores: oversubscribed threads make every call slower and the figures unlike any deployment\n")
    return asked


def check_device(device: str) -> None:
    """A UserError for ``--device cuda`` where torch sees no CUDA device."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")


def check_weights(weights: str | None) -> None:
    if weights is None:
        return
    path = Path(weights)
    if path.is_dir():
        raise UserError(f"--weights {weights}: is a folder; name the checkpoint file in it (.pth, .pt, .safetensors)")
    if not path.is_file():
        raise UserError(f"--weights {weights}: no such file")


def check_models(models: list[str], weights: str | None, img_size: int | None) -> None:
    """Build every model as the command will (its weights, its input size) now, so a misfit stops
    it before anything is measured: weights of another model, a size LeViT cannot take."""
    from .. import zoo

    for name in models:
        try:
            zoo.create_model(name, weights=weights, img_size=img_size)
        except UserError as exc:
            if weights is None:
                raise
            raise UserError(f"--weights {weights} does not fit {name}: {exc}") from None


def output_path(out: str, device: str) -> Path:
    """The results file to write: ``--out`` itself when it ends in .json (any case), else a name in
    that folder unique to this process (host, device, time, process id and a random part)."""
    p = Path(out)
    if p.suffix.lower() == ".json":
        return p
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in platform.node() or "host")
    return p / f"{host}-{device}-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}.json"


def selection_config(sel: Selection) -> dict:
    """The selection as a results file's ``config`` records it."""
    s = sel.settings
    return {"models": list(sel.models), "backends": list(sel.backends), "batch_sizes": list(sel.batch_sizes),
            "settings": {"device": s.device, "precision": s.precision, "threads": s.threads, **s.options.to_dict()},
            "precisions": list(sel.precisions), "weights": sel.weights, "img_size": sel.img_size,
            "paper_protocol": sel.paper, "cache_dir": str(Path(sel.cache_dir)) if sel.cache_dir else None}


# ---------------------------------------------------------------------------------------------
# the timing flags: declared once, for every command that times a plan (run, ab)

DEFAULT_MAX_TIME_S = 600.0
#: more rounds than this is a typo, not a plan (each round visits every entry with its re-warm)
MAX_ROUNDS = 1000
#: seeds are drawn below 2**31 and recorded; any of them (0 included) can be given back
MAX_SEED = 2**31 - 1
#: more worker processes per entry than this is a typo (each holds its own runtimes and models)
MAX_PROCESSES = 64


def add_timing(p: argparse.ArgumentParser, processes: int | None = None, rounds: int | None = None) -> None:
    """The timing flags: warm-up, timed seconds and calls, rounds (``rounds``: their default, else
    chosen per group), seed, --target-ci, --max-time; with ``processes``, --processes too,
    defaulting to it (``run``: 1, ``ab``: K per side)."""
    from ..harness import TimingOptions
    from ..schedule import AUTO_BUDGET, AUTO_ROUNDS

    t = p.add_argument_group("timing")
    t.add_argument("--warmup", type=seconds("--warmup", True), default=TimingOptions.warmup_s,
                   help=f"warm-up seconds per entry when it is prepared (default {TimingOptions.warmup_s:g}; every "
                        "entry also gets an untimed round just before the timed ones)")
    t.add_argument("--min-time", type=seconds("--min-time", False), default=2.0,
                   help="timed seconds per entry, at least (default 2)")
    t.add_argument("--min-calls", type=positive_int("--min-calls", TimingOptions.max_calls), default=5,
                   help=f"timed calls, at least (default 5, at most {TimingOptions.max_calls:,})")
    chosen = (f"{AUTO_ROUNDS[0]} to {AUTO_ROUNDS[1]}, as many as cost at most {AUTO_BUDGET:g}x the timed time of "
              "one block per entry") if rounds is None else str(rounds)
    t.add_argument("--rounds", type=positive_int("--rounds", MAX_ROUNDS), default=rounds,
                   help="timing rounds: each visits every entry once in a random order, and --min-time is "
                   f"shared between them (default: {chosen}; at most {MAX_ROUNDS})")
    t.add_argument("--seed", type=positive_int("--seed", MAX_SEED, minimum=0), default=None,
                   help="seed of the round orders, 0 or more (default: drawn, and recorded in the results)")
    t.add_argument("--target-ci", type=percent("--target-ci", allow_zero=False), default=None, metavar="PCT",
                   help="add rounds until every entry's 95%% interval half-width is within PCT%% of its estimate")
    t.add_argument("--max-time", type=seconds("--max-time", False, maximum=7 * 24 * 3600), default=None,
                   help=f"with --target-ci: stop adding rounds after this many seconds of timing "
                   f"(default {DEFAULT_MAX_TIME_S:g})")
    if processes is not None:
        t.add_argument("--processes", type=positive_int("--processes", MAX_PROCESSES), default=processes, metavar="K",
                       help="prepare each entry in K worker processes (ab: K per side) whose rounds interleave, so "
                       "effects of one process enter the interval; a runtime that crashes or hangs fails its own "
                       f"entries only (default {processes}; in run, 1 times everything in this process)")


def resolve_timing(args: argparse.Namespace):
    """(``harness.TimingOptions``, ``schedule.Schedule``) from the timing flags, checked."""
    import secrets

    from ..harness import TimingOptions
    from ..schedule import Schedule

    timing = TimingOptions(warmup_s=args.warmup, min_time_s=args.min_time, min_calls=args.min_calls)
    if args.max_time is not None and args.target_ci is None:
        raise UserError("--max-time bounds the rounds --target-ci adds; give --target-ci too")
    schedule = Schedule(args.rounds, args.seed if args.seed is not None else secrets.randbelow(MAX_SEED + 1),
                        None if args.target_ci is None else args.target_ci / 100,
                        (args.max_time or DEFAULT_MAX_TIME_S) if args.target_ci is not None else None)
    return timing, schedule


# ---------------------------------------------------------------------------------------------
# the input flags (issue 24): what the timed call starts from, declared once (run; load may add them)

#: decode threads beyond this are a typo (each is a thread of this process)
MAX_DECODE_THREADS = 64


def add_input(p: argparse.ArgumentParser) -> None:
    """--input, --decoder, --decode-threads (``docs/end-to-end.md``)."""
    from ..jpeg import DECODERS, DEFAULT_DECODERS, DEFAULT_GENERATED

    g = p.add_argument_group("input")
    g.add_argument("--input", default="tensor", metavar="tensor|jpeg[:DIR]",
                   help="tensor (default): a ready tensor, compute only; jpeg[:DIR]: also time JPEG files to top-5 labels "
                   "(read, decode, the model's eval transform, batch, inference, top-5; serial per stage and an "
                   f"overlapped pipeline), on DIR's files or, without DIR, a seeded photo-like set of {DEFAULT_GENERATED} "
                   "made once in the export cache")
    g.add_argument("--decoder", action="append", type=names("--decoder"), default=None,
                   help=f"JPEG decoders to time with --input jpeg ({', '.join(DECODERS)}; repeatable, comma lists; "
                   f"default {','.join(DEFAULT_DECODERS)}); each checked against Pillow first")
    g.add_argument("--decode-threads", action="append", type=int_list("--decode-threads"), default=None,
                   help="decode worker threads of the overlapped pipeline, swept (comma list; default 1 and the "
                   "physical cores)")


def resolve_input(args: argparse.Namespace):
    """``jpeg.JpegInput`` for --input jpeg[:DIR], None for tensor; a one-line UserError otherwise."""
    from ..jpeg import DEFAULT_DECODERS, JpegInput, check_decoders

    text = args.input.strip()
    extra = args.decoder is not None or args.decode_threads is not None
    if text == "tensor":
        if extra:
            raise UserError("--decoder and --decode-threads apply to --input jpeg; give --input jpeg[:DIR] too")
        return None
    kind, _, folder = text.partition(":")
    if kind != "jpeg" or (_ and not folder):
        raise UserError(f"--input {args.input!r}: expected tensor, jpeg or jpeg:DIR")
    decoders = check_decoders([d for g in args.decoder for d in g] if args.decoder else DEFAULT_DECODERS)
    threads = [t for g in args.decode_threads for t in g] if args.decode_threads else [1, sysinfo.physical_cores()]
    if max(threads) > MAX_DECODE_THREADS:
        raise UserError(f"--decode-threads {max(threads)}: at most {MAX_DECODE_THREADS}")
    return JpegInput(folder or None, decoders, tuple(dict.fromkeys(threads)))
