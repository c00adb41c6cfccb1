"""torch, TorchScript and torch.compile under ``torch.profiler``: self CPU time per op.

The profiled call is the run's own bound call; only the profiler around it differs.  Self time is
used, so nested ops (``aten::linear`` → ``aten::addmm``) are not counted twice; ``record_shapes``
gives each convolution's weight shape, which tells depthwise ones apart.  Dynamo's guard checks
and the compiled graph's Python wrapper are framework, not ops: their time shows in the gap
between op time and wall time.  torch.compile is prepared with inductor's
``cpp.enable_kernel_profile``, so the kernels it generates are recorded by name (the unprofiled
calls run that same compiled code).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..harness import TimingOptions, time_calls
from .categories import inductor_kernel_name, torch_category
from .probe import OpTotals, Probe
from .record import OpTime

#: lines kineto writes on every profiler start/stop (and, on a CUDA build without a GPU, one error):
#: status, not news; any other line written meanwhile is passed on
_KINETO_NOISE = ("USDT:", "STAGE:", "ERROR:", "WARNING:")
_KINETO_NOISE_TEXT = ("SyncActivityProfilerHandler", "gpuGetDeviceCount", "Completed Stage", "Logger.cpp")

#: TorchScript graph nodes that are bookkeeping, not work (never recorded, never timed)
_TS_BOOKKEEPING = {"prim::Constant", "prim::ListConstruct", "prim::TupleConstruct", "prim::TupleUnpack",
                   "prim::ListUnpack", "prim::GetAttr", "prim::ConstantMKLDNNTensor", "prim::NumToTensor",
                   "prim::BroadcastMKLDNNTensors", "prim::unchecked_cast", "prim::RaiseException"}


@contextlib.contextmanager
def preparing(backends: Sequence[str]) -> Iterator[None]:
    """Around the preparation of ``backends``: torch.compile's generated kernels get profiler records."""
    if "torch-compile" not in backends:
        yield
        return
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.enable_kernel_profile": True}):
        yield


@contextlib.contextmanager
def quiet_kineto() -> Iterator[None]:
    """Drop kineto's status lines, written to file descriptor 2 by C++ on every profiler start and
    stop; whatever else is written to it meanwhile reaches stderr afterwards."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a file (captured): nothing to filter
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode(errors="replace").splitlines(keepends=True)
                    if not (line.startswith(_KINETO_NOISE) and any(t in line for t in _KINETO_NOISE_TEXT))]
            if kept:
                sys.stderr.write("".join(kept))


class TorchProbe(Probe):
    profiler = "torch.profiler (self CPU time per op)"

    def __init__(self, call: Callable[[], Any], backend: str, module: Any = None):
        super().__init__(call)
        self.totals = OpTotals()
        self.framework_s = 0.0
        self.recorded: set[str] = set()
        self.graph_kinds = _script_node_kinds(module) if backend == "torchscript" else Counter()
        if backend == "torch-compile":
            self.notes.append("compiled with inductor's cpp.enable_kernel_profile: generated kernels are "
                              "recorded as cpp_fused_<ops>")

    def warm(self, timing: TimingOptions) -> None:
        """Nothing to do: the profiled call is the run's own, warmed up already (and its warm-up sizes the blocks)."""

    def _profiled_block(self, n: int) -> list[float]:
        from torch.profiler import ProfilerActivity, profile

        with quiet_kineto():
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                samples = time_calls(self.call, n)
            events = prof.key_averages(group_by_input_shape=True)
        for ev in events:
            self.recorded.add(ev.key)
            seconds = ev.self_cpu_time_total / 1e6
            category = torch_category(ev.key, ev.input_shapes)
            if category is None:
                self.framework_s += seconds
                continue
            self.totals.add(inductor_kernel_name(ev.key) or ev.key, category, seconds, ev.count)
        return samples

    def finish(self) -> list[OpTime]:
        calls = max(self.profiled_calls, 1)
        if self.framework_s > 0:
            self.notes.append(f"framework markers (dynamo guards, compiled-graph wrapper): "
                              f"{self.framework_s / calls * 1e3:.2f} ms per call, not counted as op time")
        unrecorded = {k: n for k, n in self.graph_kinds.items() if k not in self.recorded}
        if unrecorded:
            kinds = ", ".join(f"{k} ×{n}" for k, n in sorted(unrecorded.items(), key=lambda kv: -kv[1]))
            self.notes.append(f"TorchScript runs {kinds} without profiler records: their time is inside "
                              "'forward' (other)")
        return self.totals.per_call(calls)


def _script_node_kinds(module: Any) -> Counter:
    """Node kinds of a TorchScript module's forward graph that do work (bookkeeping left out)."""
    graph = getattr(module, "graph", None)
    if graph is None:
        return Counter()
    return Counter(n.kind() for n in graph.nodes() if n.kind() not in _TS_BOOKKEEPING)
