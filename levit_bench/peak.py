"""The machine's peak: multiply-accumulates per second of the best large dense GEMM among the
installed runtimes (torch, ONNX Runtime, OpenVINO).

A model's achieved GMAC/s (its counted MACs times images/s, ``opcount.py``) means little alone;
beside what this machine reaches on the friendliest workload there is, one square ``n×n·n×n``
matrix product per call, it says how much of the hardware a runtime uses.  Each runtime's GEMM
(``backends/gemm.py``: the same n, threads and fp32) is an item of one group timed like any entries
(``schedule.py``: warm-up, then seeded interleaved rounds of the harness's timed calls), its figure
and interval from the round medians (``stats.round_median_time``, ``stats.median_time_interval``:
the figure always inside its interval, which a cached peak is checked for), and the peak is the
fastest of them: torch's alone let OpenVINO entries reach 98–120% of it.  The record names the runtime that gave it and keeps every runtime's
figure (or why it was not measured).  Peaks are cached per machine (CPU model, flags and cores,
torch, ONNX Runtime and OpenVINO versions, GPU name), device, precision and thread count, one JSON
file each under ``<cache root>/peak/``: a damaged, foreign or earlier-format file is measured
again, never trusted and never fatal.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import UserError, first_line
from .oncpu import scaled
from .runstate import torch_threads
from .spec import DEVICES, DTYPES, FLOAT_PRECISIONS

#: GEMM side per device: large enough to be compute bound with every core busy
DEFAULT_SIZE = {"cpu": 2048, "cuda": 8192}
#: a slow (emulated) precision gets a smaller side, so that one call stays under this: a bf16 GEMM
#: of side 2048 takes over a minute on an AVX2-only CPU, and a side of 512 is still compute bound
MAX_CALL_S = 1.0
MIN_SIZE = 256
#: the smallest side ``--size`` takes: below it a call times Python and dispatch, not arithmetic
MIN_EXPLICIT_SIZE = 16
#: 3: on the CPU at one thread, rounds scaled by their on-CPU share; 2: the best GEMM among the runtimes, with each
#: one's figure (1: torch's)
CACHE_FORMAT = 3


@dataclass(frozen=True)
class Peak:
    """A measured peak: the median GMAC/s and its 95% interval, and what it was measured on."""

    gmacs_per_s: float
    low: float
    high: float
    device: str
    precision: str
    threads: int
    size: int  # GEMM n (n×n times n×n: n³ multiply-accumulates per call)
    measured_at: str  # ISO 8601, UTC
    machine: str  # fingerprint of the machine it was measured on (:func:`machine_fingerprint`)
    runtime: str = "torch"  # the runtime whose GEMM is the peak (the fastest)
    #: every runtime of ``gemm.GEMM_RUNTIMES``: {"gmacs_per_s", "low", "high"} or {"skipped": why}
    runtimes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.runtimes:  # a peak given only its figure: that is its runtime's figure
            object.__setattr__(self, "runtimes", {self.runtime: {"gmacs_per_s": self.gmacs_per_s, "low": self.low,
                                                                 "high": self.high}})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Peak:
        """A peak from :meth:`to_dict`'s output; ValueError for anything else (wrong keys or types,
        a non-positive or non-finite rate, an interval that does not hold the median)."""
        if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
            raise ValueError("not a peak record")
        floats = ("gmacs_per_s", "low", "high")
        if not all(isinstance(data[k], (int, float)) and not isinstance(data[k], bool) for k in floats):
            raise ValueError("rates must be numbers")
        if not all(isinstance(data[k], int) and not isinstance(data[k], bool) for k in ("threads", "size")):
            raise ValueError("threads and size must be integers")
        if not all(isinstance(data[k], str) for k in ("device", "precision", "measured_at", "machine", "runtime")):
            raise ValueError("device, precision, measured_at, machine and runtime must be strings")
        if not isinstance(data["runtimes"], dict) or not all(_runtime_figure(v) for v in data["runtimes"].values()):
            raise ValueError("runtimes must map each runtime to its figure or the reason it was skipped")
        if "gmacs_per_s" not in data["runtimes"].get(data["runtime"], {}):
            raise ValueError("the peak's runtime has no figure")
        peak = cls(**{k: float(data[k]) if k in floats else data[k] for k in data})
        if not (all(math.isfinite(getattr(peak, k)) for k in floats)
                and 0 < peak.low <= peak.gmacs_per_s <= peak.high and peak.threads > 0 and peak.size > 0):
            raise ValueError("implausible peak values")
        return peak


def _runtime_figure(v: Any) -> bool:
    """One runtime's entry of ``Peak.runtimes``: a positive finite rate in its interval, or a reason."""
    if isinstance(v, dict) and set(v) == {"skipped"}:
        return isinstance(v["skipped"], str)
    if not (isinstance(v, dict) and set(v) == {"gmacs_per_s", "low", "high"}):
        return False
    if not all(isinstance(v[k], (int, float)) and not isinstance(v[k], bool) and math.isfinite(v[k]) for k in v):
        return False
    return 0 < v["low"] <= v["gmacs_per_s"] <= v["high"]


# ---------------------------------------------------------------------------------------------
# the machine a peak belongs to

def machine_facts(device: str) -> dict[str, Any]:
    """What decides a GEMM's speed and does not change between runs (sysinfo's facts, without
    the current frequency, memory or host name): the CPU, its flags and cores, the runtimes whose
    GEMMs are timed (torch, ONNX Runtime, OpenVINO), the GPU."""
    return dict(_machine_facts(device))


@functools.lru_cache(maxsize=None)
def _machine_facts(device: str) -> tuple[tuple[str, Any], ...]:
    from . import sysinfo

    info = sysinfo.collect()
    facts = {k: info.get(k) for k in ("cpu", "arch", "emulated", "physical_cores", "logical_cores", "cpu_flags")}
    versions = info.get("versions") or {}
    facts["torch"] = versions.get("torch")
    for lib in ("onnxruntime", "openvino"):  # absent (None) where not installed
        facts[lib] = versions.get(lib)
    gpu = info.get("gpu") or {}
    facts["gpu"] = gpu.get("name") if device == "cuda" else None
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in facts.items())


def machine_fingerprint(device: str) -> str:
    facts = machine_facts(device)
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# measuring

def _check(device: str, precision: str, threads: int) -> None:
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    if precision not in FLOAT_PRECISIONS:  # int8 runs quantized graphs: a float GEMM is not their ceiling
        raise UserError(f"no GEMM peak is defined for precision {precision!r} "
                        f"(choose from {', '.join(FLOAT_PRECISIONS)})")
    if not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a positive integer, got {threads!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")


def _operands(device: str, precision: str, n: int):
    import torch

    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device=device, dtype=DTYPES[precision]) for _ in range(2))
    return a, b, torch.empty_like(a)


def _fits_in_memory(device: str, precision: str, n: int) -> None:
    """A UserError, before anything is allocated, when the three n×n operands (and the float32 ones
    they are drawn as, and the other runtimes' copies) cannot fit in the memory available now."""
    import psutil
    import torch

    from .spec import DTYPES

    itemsize = torch.empty(0, dtype=DTYPES[precision]).element_size()
    need = n * n * (3 * itemsize + 4)
    if device == "cpu" and precision == "fp32":  # ONNX Runtime's and OpenVINO's A, B, Y (and packed B)
        need += n * n * 4 * 7
    if device == "cuda":
        free = torch.cuda.mem_get_info()[0]
    else:
        free = psutil.virtual_memory().available
    if need > free:
        raise UserError(f"a GEMM of side {n} needs {need / 1024**3:,.1f} GiB of memory for its operands; {device} has "
                        f"{free / 1024**3:,.1f} GiB available (a smaller --size fits)")


def _supported(device: str, precision: str) -> None:
    """A clear UserError where torch cannot multiply matrices of this precision on this device."""
    import torch

    a, b, c = _operands(device, precision, 8)
    try:
        torch.mm(a, b, out=c)
    except (RuntimeError, NotImplementedError) as exc:
        raise UserError(f"torch cannot multiply {precision} matrices on {device} here: {first_line(exc)}") from None


def _gemm_call(device: str, precision: str, n: int):
    import torch

    a, b, c = _operands(device, precision, n)
    return lambda: torch.mm(a, b, out=c)  # into one output: no allocation (and page faults) per call


def _choose_size(device: str, precision: str, sync) -> int:
    """The device's default side, or less where a call of twice the side (8× the work) of the
    last one tried would take longer than ``MAX_CALL_S``: probed upwards from ``MIN_SIZE``, so a
    slow precision never runs one huge call."""
    n = MIN_SIZE
    while n < DEFAULT_SIZE[device]:
        call = _gemm_call(device, precision, n)
        call()
        sync()  # the first call may allocate workspaces: time the second
        start = time.perf_counter()
        call()
        sync()
        if 8 * (time.perf_counter() - start) > MAX_CALL_S:
            break
        n *= 2
    return n


def _items(device: str, precision: str, threads: int, n: int, sync, cuda: bool) -> tuple[list, dict[str, dict]]:
    """One timed item per runtime whose GEMM can be measured here, and the reasons for the others."""
    from .backends.gemm import BUILDERS, GEMM_RUNTIMES, unavailable
    from .schedule import Timed

    on_cpu = None if cuda else threads  # at one thread the rounds keep their on-CPU share (``oncpu.py``)
    items, skipped = [Timed("torch", _gemm_call(device, precision, n), sync, cuda, threads=on_cpu)], {}
    for runtime in GEMM_RUNTIMES[1:]:
        reason = unavailable(runtime, device, precision)
        if reason is None:
            try:
                items.append(Timed(runtime, BUILDERS[runtime](n, threads), sync, cuda, threads=on_cpu))
            except Exception as exc:  # noqa: BLE001 - a runtime that cannot build a MatMul is skipped, with why
                reason = f"{runtime} could not run a {n}×{n} MatMul: {first_line(exc)}"
        if reason is not None:
            skipped[runtime] = {"skipped": reason}
    return items, skipped


def measure_peak(device: str, precision: str, threads: int, *, min_time: float = 2.0,
                 size: int | None = None) -> Peak:
    """Time the dense GEMM of two ``size``-square matrices (default :data:`DEFAULT_SIZE`, smaller for
    a slow precision) of every installed runtime (``backends/gemm.py``) on ``device`` in
    ``precision`` with ``threads`` threads (torch's restored after), as a run times its entries: each
    warmed up, then one group of seeded interleaved rounds of ``min_time`` timed seconds per runtime.
    The peak is the fastest runtime's median of round medians, on the CPU of its rounds scaled by
    their on-CPU share (``oncpu.py``: a peak timed while the process was stopped would read low, and
    every efficiency against it high); every runtime's figure is kept."""
    import torch

    from .backends.gemm import GEMM_RUNTIMES
    from .harness import TimingOptions
    from .schedule import Schedule, run_rounds, warm
    from .stats import median_time_interval, round_median_time

    _check(device, precision, threads)
    if size is not None and size < MIN_EXPLICIT_SIZE:
        raise UserError(f"GEMM size must be at least {MIN_EXPLICIT_SIZE} (a smaller one times the call, not the "
                        f"arithmetic), got {size}")
    if size is not None:
        _fits_in_memory(device, precision, size)
    if not (min_time > 0 and math.isfinite(min_time)):
        raise UserError(f"min_time must be a positive number of seconds, got {min_time}")
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch_threads(threads):
        _supported(device, precision)
        n = size or _choose_size(device, precision, sync)
        items, figures = _items(device, precision, threads, n, sync, cuda)
        timing = TimingOptions(warmup_s=min(1.0, min_time / 2), min_time_s=min_time)
        with torch.inference_mode():
            for item in items:
                warm(item, timing)
            run_rounds(items, timing, Schedule(rounds=None, seed=0))
    macs = float(n) ** 3
    for item in items:
        if item.error is not None or not item.samples:
            if item.label == "torch":
                raise UserError(f"the peak GEMM failed on {device} {precision}: {item.error or 'no timed calls'}")
            figures[item.label] = {"skipped": f"its GEMM failed: {item.error or 'no timed calls'}"}
            continue
        rounds = scaled(item.round_samples(), item.rounds)  # the estimate its interval holds (a cached
        # peak is checked for it)
        lo, hi = median_time_interval(rounds)
        figures[item.label] = {"gmacs_per_s": macs / round_median_time(rounds) / 1e9, "low": macs / hi / 1e9,
                              "high": macs / lo / 1e9}
    best = max((r for r in figures if "gmacs_per_s" in figures[r]), key=lambda r: figures[r]["gmacs_per_s"])
    return Peak(**figures[best], device=device, precision=precision, threads=threads, size=n,
                measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                machine=machine_fingerprint(device), runtime=best,
                runtimes={r: figures[r] for r in GEMM_RUNTIMES if r in figures})


# ---------------------------------------------------------------------------------------------
# the cache

def _root(cache_root: str | Path | None) -> Path:
    if cache_root is not None:
        return Path(cache_root).expanduser()
    from .backends.cache import default_cache_root

    return default_cache_root()


def cache_path(device: str, precision: str, threads: int, cache_root: str | Path | None = None,
               machine: str | None = None, size: int | None = None) -> Path:
    """``<cache root>/peak/<machine>-<device>-<precision>-t<threads>.json``: the machine's peak, which
    runs read; a GEMM side asked for below ``MIN_SIZE`` (``sysinfo --peak --size 32``: too small to
    be compute bound) has its own file (``...-n<size>.json``), so it is never taken for the peak."""
    machine = machine or machine_fingerprint(device)
    tag = f"-n{size}" if size is not None and size < MIN_SIZE else ""
    return _root(cache_root) / "peak" / f"{machine}-{device}-{precision}-t{threads}{tag}.json"


def cached_peak(device: str, precision: str, threads: int, cache_root: str | Path | None = None,
                size: int | None = None) -> Peak | None:
    """The cached peak of this machine for these settings (``size``: of a GEMM side asked for); None
    when there is none, or when the file is unreadable, damaged, of another format, or describes
    another machine or setting; and the machine's peak measured on a side below ``MIN_SIZE``
    (cached by an older version that put every size in one file) is not trusted."""
    _check(device, precision, threads)
    machine = machine_fingerprint(device)
    path = cache_path(device, precision, threads, cache_root, machine, size)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            return None
        peak = Peak.from_dict(data.get("peak"))
    except (OSError, ValueError, TypeError):
        return None
    if (peak.machine, peak.device, peak.precision, peak.threads) != (machine, device, precision, threads):
        return None
    if (size is None and peak.size < MIN_SIZE) or (size is not None and peak.size != size):
        return None
    return peak


def store_peak(peak: Peak, cache_root: str | Path | None = None, size: int | None = None) -> Path:
    """Write ``peak`` to its cache file (atomically: a reader never sees half a file); ``size``: the
    GEMM side that was asked for (None: the machine's peak, its side chosen by :func:`measure_peak`)."""
    path = cache_path(peak.device, peak.precision, peak.threads, cache_root, peak.machine, size)
    record = {"format": CACHE_FORMAT, "peak": peak.to_dict(), "machine_facts": machine_facts(peak.device)}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def get_peak(device: str, precision: str, threads: int, cache_root: str | Path | None = None, *,
             remeasure: bool = False, min_time: float = 2.0, size: int | None = None) -> Peak:
    """The cached peak, or (none usable, or ``remeasure``) a fresh measurement, then cached.  A cache
    that cannot be written costs a warning, not the measurement."""
    if not remeasure:
        found = cached_peak(device, precision, threads, cache_root, size)
        if found is not None:
            return found
    peak = measure_peak(device, precision, threads, min_time=min_time, size=size)
    try:
        store_peak(peak, cache_root, size)
    except OSError as exc:
        warnings.warn(f"the peak was measured but cannot be cached under {_root(cache_root)}: "
                      f"{exc.strerror or exc} (choose another place with --cache-dir or $LEVIT_BENCH_CACHE)",
                      stacklevel=2)
    return peak
