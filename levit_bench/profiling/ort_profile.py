"""ONNX Runtime with session profiling: kernel time per node of the optimised graph.

Profiling is a session option, so the probe opens a twin of the run's session: the same ONNX file,
the backend's own ``session_options`` with ``enable_profiling`` added.  The trace (Chrome trace
JSON) cannot be paused: every run of the twin is in it, and the profiled calls are cut out by run
index (its ``model_run`` events, in order).  Node types are those of the optimised graph
(``FusedConv``, ``QuickGelu``, NCHWc ``ReorderInput``...); input shapes tell depthwise convolutions.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..backends.onnxruntime import OrtRunner, session_options
from ..harness import time_calls
from ..spec import Settings
from .categories import ort_category
from .probe import OpTotals, Probe, ProfileFailed
from .record import OpTime

KERNEL_SUFFIX = "_kernel_time"


class OrtProbe(Probe):
    profiler = "ONNX Runtime session profiling (kernel time per node)"
    twin = True

    def __init__(self, artifact: str, settings: Settings, x: torch.Tensor):
        import onnxruntime as ort

        self._dir = tempfile.TemporaryDirectory(prefix="levit-bench-ort-profile-")
        opts = session_options(settings)
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(self._dir.name, "trace")
        self.session = ort.InferenceSession(artifact, sess_options=opts, providers=["CPUExecutionProvider"])
        self.runner = OrtRunner(self.session)
        super().__init__(self.runner.bind(x))
        self.profiled: list[range] = []
        self.notes.append("overhead compares this profiled twin session with the run's own session: it also holds "
                          "any difference between the two instances")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.runs += 1
        return self.runner(x)

    def _profiled_block(self, n: int) -> list[float]:
        self.profiled.append(range(self.runs, self.runs + n))
        return time_calls(self.call, n)

    def finish(self) -> list[OpTime]:
        trace = Path(self.session.end_profiling())
        try:
            events = json.loads(trace.read_text())
        finally:
            trace.unlink(missing_ok=True)
        totals = node_times(events, [i for r in self.profiled for i in r], self.runs)
        return totals.per_call(max(self.profiled_calls, 1))

    def close(self) -> None:
        self.session = None
        self.runner.close()
        self._dir.cleanup()


def node_times(events: list[dict[str, Any]], runs: list[int], expected_runs: int) -> OpTotals:
    """Kernel time per (op type, category) over the session runs numbered ``runs``."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])
    if len(model_runs) != expected_runs:
        raise ProfileFailed(f"ONNX Runtime's trace holds {len(model_runs)} runs, {expected_runs} were made")
    windows = sorted((model_runs[i]["ts"], model_runs[i]["ts"] + model_runs[i]["dur"]) for i in runs)
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith(KERNEL_SUFFIX)),
                   key=lambda e: e["ts"])
    totals = OpTotals()
    w = 0
    for e in nodes:
        while w < len(windows) and e["ts"] > windows[w][1]:
            w += 1
        if w == len(windows):
            break
        if e["ts"] < windows[w][0]:
            continue
        args = e.get("args", {})
        op = args.get("op_name", "?")
        totals.add(op, ort_category(op, input_shapes(args)), e["dur"] / 1e6)
    return totals


def input_shapes(args: dict[str, Any]) -> list[list[int]]:
    """``[{"float": [16, 3, 224, 224]}, ...]`` -> ``[[16, 3, 224, 224], ...]``."""
    out = []
    for item in args.get("input_type_shape", []):
        shape = next(iter(item.values()), []) if isinstance(item, dict) else []
        out.append([int(d) for d in shape])
    return out
