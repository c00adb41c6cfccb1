"""The machine-speed canary: a small fixed workload timed next to every timed block.

A shared machine's speed changes from run to run (about 12% standard deviation between runs on the
rerun study's noisy VM, the same for every model and runtime) and within a run over a few seconds
(residuals of two entries correlate about +0.5 under 2 s apart, about 0 beyond 10–20 s): no interval
computed inside one run sees the first, and a reference timed a round away shares little of the
second.  So ``schedule.run_rounds`` times a canary immediately before and after each block; the
geometric mean of the two is that block's machine-speed index (``RoundRecord.canary_s``), and
``stats.adjusted_rounds`` scales the block's call times by ``reference_s / canary_s``.

Candidates (``CANARIES``), each a name and a builder, all torch on the CPU at the run's threads:

* ``gemm``: a 128×128 fp32 matrix product (compute bound, in cache);
* ``dwconv``: a 3×3 depthwise convolution over 64×56×56 (memory bound, as EfficientNet's blocks);
* ``model``: a small fixed network (pointwise conv, depthwise conv, attention-like matmuls, MLP);
* ``blend``: one call of ``gemm`` and one of ``model`` per call.  ``dwconv`` is left out of it:
  its speed is bimodal, window by window and process by process (0.36 or 2.1 ms a call on the
  same buffers' sizes; SD of log window time 0.6-0.7, of process means 0.3), so it made the blend
  the noisiest candidate but one (``benchmarks/canary_processes.py``).

The default is chosen by measurement (``benchmarks/canary_choice.py``, figures in
docs/measurement.md).  A measurement runs as many calls as fill ``TARGET_S`` (sized once, after a
warm-up), so before + after cost about ``2 × TARGET_S`` per block: a few percent of the default
budget's blocks.  The per-machine reference (so that adjusted figures of two runs on one machine
share it) is cached under ``<cache root>/canary/`` like the GEMM peak under ``peak/``.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from .atomic import atomic_write_text

#: seconds one canary measurement lasts (sized once): 5 ms windows tracked the entries worse (correlation
#: 0.03–0.51) than 10 ms ones (0.58–0.73) on the shared VM, and 10 ms cost 1.0–1.6% of the timed seconds
#: ... but at the default budget (2 s per entry over 10 rounds) 10 ms windows cost 11% of a run's timed
#: seconds (levit_128s/torch, batch 1): 6 ms keeps the cost near 6.5%, under the 10% aim
TARGET_S = 0.006
#: the canary a run uses: the blend tracked the entries best (correlation 0.51 of log block medians,
#: gemm 0.03) on the shared 2-core VM (benchmarks/canary_choice.py), and, renewed and without the
#: depthwise convolution, agreed best with itself across processes (benchmarks/canary_processes.py;
#: docs/measurement.md)
DEFAULT_CANARY = "blend"
#: bump when a canary's workload, or what a run's canary figure means, changes: cached references of
#: other formats are measured again (2: buffers renewed before every measurement; 3: at one thread
#: the run's figure is the canary's seconds while the process ran, ``oncpu.canary_seconds``)
CACHE_FORMAT = 3


class Workload:
    """A canary's timed call and the tensors it reads and writes (inputs, weights, outputs):
    :meth:`renew` moves every one of them to fresh memory."""

    def __init__(self, fn: Callable[[], object], tensors: list) -> None:
        self.fn, self.tensors = fn, tensors

    def __call__(self) -> object:
        return self.fn()

    def renew(self) -> None:
        """Each tensor's data copied to a new allocation (the old ones still held while copying, so
        that none lands where it was), then one untimed call to warm the new buffers."""
        fresh = [t.data.clone() for t in self.tensors]
        for t, data in zip(self.tensors, fresh):
            t.data = data
        self.fn()


def _gemm() -> Workload:
    import torch

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(128, 128, generator=g), torch.randn(128, 128, generator=g)
    out = torch.empty(128, 128)
    return Workload(lambda: torch.mm(a, b, out=out), [a, b, out])


def _dwconv() -> Workload:
    import torch

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 64, 56, 56, generator=g), torch.randn(64, 1, 3, 3, generator=g)
    conv = torch.nn.functional.conv2d
    return Workload(lambda: conv(x, w, padding=1, groups=64), [x, w])


def _model() -> Workload:
    import torch
    from torch import nn

    torch.manual_seed(0)  # the model's weights; the global seed is restored below

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pw = nn.Conv2d(32, 64, 1)
            self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64)
            self.qkv = nn.Linear(64, 192)
            self.mlp = nn.Sequential(nn.Linear(64, 128), nn.Hardswish(), nn.Linear(128, 64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.dw(torch.nn.functional.hardswish(self.pw(x)))
            t = x.flatten(2).transpose(1, 2)  # 1 × 196 × 64
            q, k, v = self.qkv(t).chunk(3, dim=-1)
            t = t + (q @ k.transpose(1, 2) / 8.0).softmax(-1) @ v
            return t + self.mlp(t)

    state = torch.random.get_rng_state()
    try:
        net = Tiny().eval().requires_grad_(False)
    finally:
        torch.random.set_rng_state(state)
    x = torch.randn(1, 32, 14, 14, generator=torch.Generator().manual_seed(0))

    def call() -> object:
        with torch.inference_mode():
            return net(x)

    return Workload(call, [*net.parameters(), x])


def _blend() -> Workload:
    parts = [_gemm(), _model()]

    def call() -> None:
        for part in parts:
            part()

    return Workload(call, [t for part in parts for t in part.tensors])


#: name -> builder of the workload timed (built once per run, under the run's threads)
CANARIES: dict[str, Callable[[], Workload]] = {
    "gemm": _gemm, "dwconv": _dwconv, "model": _model, "blend": _blend,
}


class Window(NamedTuple):
    """One canary measurement: seconds per call, and the process's CPU seconds per wall second over
    it (about 1 when it ran throughout; lower while it was stopped or waited for a core; with more
    than one thread it may pass 1 and means nothing: ``schedule`` keeps it at one thread only)."""

    seconds: float
    on_cpu: float


@dataclass
class Canary:
    """A built canary: its call and how many calls one measurement makes; ``cost_s`` adds up the
    wall seconds its measurements took, renewals included (what the canary costs the run).

    With ``renew`` (and a :class:`Workload`), every measurement first moves the workload's tensors
    to fresh memory.  A canary's speed depends on where its buffers landed: six processes measured
    in interleaved turns on the 2-core VM held their 128×128 GEMM at offsets up to 2.1× apart for
    the whole of their life (SD of the processes' mean log time 0.28), with fresh buffers 0.03, the
    window noise alone (``benchmarks/canary_processes.py``; docs/measurement.md).  Kept buffers put
    that offset into every adjusted figure of a run; renewed ones turn it into window noise, which a
    run's hundreds of windows average away."""

    name: str
    call: Callable[[], object]
    calls: int = 1
    cost_s: float = 0.0
    renew: bool = False

    def measure(self) -> float:
        """Seconds per call over one measurement (``calls`` calls back to back): the machine's speed now."""
        return self.window().seconds

    def window(self) -> Window:
        """One measurement: its seconds per call and its on-CPU share.  A 6 ms window under a
        neighbour that stops the process for a share of every 50 ms is either hit by a stop or not: the
        stopped windows are the wall seconds' slow tail (log SD 0.38-0.39 in a run, 0.20-0.25 while
        running), and how far they moved a run's median differed from run to run (docs/measurement.md)."""
        clock = time.perf_counter
        start = clock()
        if self.renew and isinstance(self.call, Workload):
            self.call.renew()
        cpu, t0 = time.process_time(), clock()
        for _ in range(self.calls):
            self.call()
        end, cpu = clock(), time.process_time() - cpu
        self.cost_s += end - start
        wall = max(end - t0, 1e-12)
        return Window(wall / self.calls, cpu / wall)


def build(name: str = DEFAULT_CANARY, target_s: float = TARGET_S, renew: bool = True) -> Canary:
    """The canary ``name``, warmed up and sized so that one measurement lasts about ``target_s``,
    its buffers renewed before every measurement unless ``renew`` is False (a KeyError names the
    candidates)."""
    if name not in CANARIES:
        raise KeyError(f"unknown canary {name!r} (choose from {', '.join(CANARIES)})")
    call = CANARIES[name]()
    for _ in range(3):
        call()
    n, t0 = 0, time.perf_counter()
    while True:  # the warm-up also sizes the measurement
        call()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= target_s or n >= 10_000:
            break
    per_call = max(elapsed, 1e-9) / n
    return Canary(name, call, max(1, round(target_s / per_call)), renew=renew)


def block_index(before_s: float, after_s: float) -> float:
    """A block's machine-speed index: the geometric mean of the canary just before and just after it."""
    return math.sqrt(before_s * after_s)


# ---------------------------------------------------------------------------------------------
# the per-machine reference

@dataclass(frozen=True)
class Reference:
    """The canary seconds per call that adjusted figures are scaled to, and where it came from."""

    name: str
    reference_s: float
    source: str  # "cache <path>" or "this run (cached as <path>)" or "this run"


#: how much faster than the cached reference a run's median canary must be to replace it (a few
#: per cent: quiet runs' medians differ by about that much, and churn would only relabel figures)
FASTER_BY = 0.03


def _reference_path(cache_root: Path, name: str, device: str, threads: int, machine: str) -> Path:
    return Path(cache_root) / "canary" / f"{machine}-{device}-{threads}t-{name}-v{CACHE_FORMAT}.json"


def reference(name: str, device: str, threads: int, machine: str, cache_root: Path | None,
              measured_s: float) -> Reference:
    """The machine's cached reference for this canary, device and threads; else ``measured_s``
    (the median canary of this run), cached for the next runs.  The reference only ratchets
    faster: a run whose median canary beats the cached one by more than :data:`FASTER_BY` replaces
    it, since the machine was then busy when the cached one was measured (seen: a reference taken
    at load average 5 put every later adjusted figure at 0.37× the raw one of a quiet run).  So
    adjusted figures mean "at the fastest this machine was seen to run the canary"; the gate is
    unit-free (reference 1) and ``history`` rescales files to one reference, so neither depends on
    it.  A damaged cache file is replaced, never fatal; an unwritable cache costs only the caching."""
    if cache_root is None:
        return Reference(name, measured_s, "this run")
    path = _reference_path(cache_root, name, device, threads, machine)
    replaced = ""
    try:
        data = json.loads(path.read_text())
        value = float(data["reference_s"])
        if data.get("machine") == machine and data.get("name") == name and math.isfinite(value) and value > 0:
            if measured_s * (1 + FASTER_BY) >= value:
                return Reference(name, value, f"cache {path}")
            replaced = f", faster than the cached {value * 1e3:.3g} ms it replaced"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    record = {"name": name, "device": device, "threads": threads, "machine": machine, "reference_s": measured_s,
              "format": CACHE_FORMAT, "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    except OSError:
        return Reference(name, measured_s, "this run")
    return Reference(name, measured_s, f"this run (cached as {path}{replaced})")
