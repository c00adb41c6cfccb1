"""OpenVINO with performance counters: real time per node of the compiled (runtime) graph.

``PERF_COUNT`` is fixed at compile time, so the probe compiles a twin of the run's compiled model:
the same model file at the same static shape, with the performance hint, precision and threads read
back from the run's compiled model, plus ``PERF_COUNT``.  The twin must come out the same: its
resolved properties and its runtime graph (node types and kernels) are compared with the run's,
and any difference fails the entry rather than profiling something else.

The counters are running means over every inference of the compiled model's graph, in whole
microseconds, shared by its requests: the probe reads them after warm-up and after the last
profiled call (nothing else runs on the twin in between) and takes the difference of the totals.
Async mode, where requests spread over several streams unevenly, cannot be split so: refused.

Snippets (``Subgraph`` nodes) fuse several ops into one generated kernel; which ones is found from
the graph: the original-model ops between the snippet's producers and consumers that no other
runtime node claims.  A snippet holding MatMul and Softmax is a fused attention kernel.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends.openvino import OpenVinoSyncRunner
from ..harness import TimingOptions, Warmup, time_calls
from ..spec import Settings
from .categories import openvino_category, snippet_name
from .probe import OpTotals, Probe, ProfileFailed
from .record import OpTime

#: read from the run's compiled model and passed to the twin's compile
COPIED = ("PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS")
#: must then agree between the two compiled models
CHECKED = COPIED + ("NUM_STREAMS", "EXECUTION_MODE_HINT", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING",
                    "SCHEDULING_CORE_TYPE", "OPTIMAL_NUMBER_OF_INFER_REQUESTS")
_NO_BODY = {"Constant", "Parameter", "Result"}
ASYNC_REFUSAL = ("OpenVINO's counters are running means over every inference of a stream's graph, and async "
                 "requests share streams unevenly: per-call op times cannot be recovered (profile --openvino-mode sync)")


class OpenVinoProbe(Probe):
    profiler = "OpenVINO performance counters (real time per node)"
    twin = True
    rewarms = False  # every inference on the twin enters its counters' means: only profiled calls after warm-up

    def __init__(self, run_compiled: Any, artifact: str, x: torch.Tensor, settings: Settings):
        """``run_compiled``: the compiled model the run's runner holds; ``artifact``: its model file."""
        import openvino as ov

        if settings.options.openvino_mode != "sync":
            raise ProfileFailed(ASYNC_REFUSAL)
        core = ov.Core()
        config: dict[str, Any] = {k: run_compiled.get_property(k) for k in COPIED}
        config["PERF_COUNT"] = True
        model = _read(core, artifact)
        model.reshape({0: list(x.shape)})  # as the backend does
        self.compiled = core.compile_model(model, "CPU", config)
        _check_same(run_compiled, self.compiled)
        if _prop(self.compiled, "NUM_STREAMS") != "1":
            raise ProfileFailed(f"OpenVINO runs {_prop(self.compiled, 'NUM_STREAMS')} streams here: " + ASYNC_REFUSAL)
        self.runner = OpenVinoSyncRunner(self.compiled)
        super().__init__(self.runner.bind(x))
        self.kinds = classify_nodes(self.compiled.get_runtime_model(), _read(core, artifact))
        self._before: list[Any] | None = None
        self._runs_before = 0
        self.notes.append("overhead compares this profiled twin with the run's own compiled model (from the "
                          "export cache): it also holds any difference between the two instances")
        self.notes.append("OpenVINO's counters are running means over all inferences, in whole µs: op times are "
                          "the totals' difference across the profiled calls (±1 µs per node and call)")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.runs += 1  # a fresh request, but the same graph: its counters see this inference too
        return self.runner(x)

    def warm(self, timing: TimingOptions) -> Warmup:
        """Warm up, then take the counters' means and the inference count: the baseline."""
        w = super().warm(timing)
        self._before, self._runs_before = self._counters(), self.runs
        return w

    def rewarm(self, seconds: float, per_call_s: float) -> None:
        """None: an inference between the baseline and the end would enter the profiled totals."""

    def _profiled_block(self, n: int) -> list[float]:
        return time_calls(self.call, n)

    def _counters(self) -> list[Any]:
        return list(self.runner.request.get_profiling_info())

    def finish(self) -> list[OpTime]:
        """Per node: mean after × inferences after − mean before × inferences before, per profiled call."""
        if self._before is None:
            raise ProfileFailed("OpenVINO's counters were not read before the profiled calls")
        after, n = self._counters(), self.profiled_calls
        if self.runs != self._runs_before + n or len(after) != len(self._before):
            raise ProfileFailed("OpenVINO's twin ran inferences outside the profiled calls: its counters cannot "
                                "be split")
        totals = OpTotals()
        for a, b in zip(after, self._before):
            if a.node_name != b.node_name:
                raise ProfileFailed(f"OpenVINO's counters changed order ({a.node_name} where {b.node_name} was)")
            if str(a.status).rsplit(".", 1)[-1] != "EXECUTED":
                continue
            seconds = a.real_time.total_seconds() * self.runs - b.real_time.total_seconds() * self._runs_before
            name, category = self.kinds.get(a.node_name) or (
                f"{a.node_type} ({a.exec_type})", openvino_category(a.node_type, a.exec_type))
            totals.add(name, category, max(seconds, 0.0), n)
        return totals.per_call(max(n, 1))

    def close(self) -> None:
        self.runner = None
        self.compiled = None


def _read(core: Any, artifact: str) -> Any:
    """The model the backend compiled: its ONNX export, or (int8) the IR it packed into a zip."""
    if artifact.endswith(".zip"):
        from ..backends.openvino import read_packed

        return read_packed(core, Path(artifact))
    return core.read_model(artifact)


def _check_same(run: Any, twin: Any) -> None:
    for key in CHECKED:
        a, b = _prop(run, key), _prop(twin, key)
        if a != b:
            raise ProfileFailed(f"OpenVINO compiled the profiled twin differently: {key} {b} (run: {a})")
    a, b = _kernels(run.get_runtime_model()), _kernels(twin.get_runtime_model())
    if a != b:
        diff = (a - b) + (b - a)
        raise ProfileFailed(f"OpenVINO compiled the profiled twin to another graph: {dict(diff)}")


def _prop(compiled: Any, key: str) -> str:
    try:
        return str(compiled.get_property(key))
    except RuntimeError:  # not reported by this version
        return "?"


def _kernels(runtime_model: Any) -> Counter:
    return Counter((_rt(op, "layerType"), _rt(op, "primitiveType")) for op in runtime_model.get_ops())


def _rt(op: Any, key: str) -> str:
    info = op.get_rt_info()
    return info[key].astype(str) if key in info else ""


def classify_nodes(runtime_model: Any, original: Any) -> dict[str, tuple[str, str]]:
    """Runtime node name -> (name shown, category), for every node; snippets by what they hold."""
    bodies = snippet_bodies(runtime_model, original)
    out = {}
    for op in runtime_model.get_ops():
        node_type, exec_type = _rt(op, "layerType"), _rt(op, "primitiveType")
        name = op.get_friendly_name()
        if node_type == "Subgraph":
            body = bodies.get(name)
            out[name] = (snippet_name(body), openvino_category(node_type, exec_type, body, _broadcasts(op)))
        else:
            out[name] = (f"{node_type} ({exec_type})", openvino_category(node_type, exec_type))
    return out


def _broadcasts(op: Any) -> bool:
    """Whether the node's output shape is the broadcast of its inputs' (elementwise-only work)."""
    try:
        ins = [tuple(i.get_shape()) for i in op.inputs()]
        outs = [tuple(o.get_shape()) for o in op.outputs()]
        return len(outs) == 1 and np.broadcast_shapes(*ins) == outs[0]
    except (RuntimeError, ValueError):  # dynamic shapes, or shapes that do not broadcast
        return False


def snippet_bodies(runtime_model: Any, original: Any) -> dict[str, list[str]]:
    """Snippet name -> op types of the original model it holds: the ops after its producers and
    before its consumers (in the original graph) that no other runtime node lists as its own."""
    ops = {op.get_friendly_name(): op for op in original.get_ops()}
    claimed: dict[str, str] = {}
    for op in runtime_model.get_ops():
        for n in _original_names(op):
            claimed.setdefault(n, op.get_friendly_name())
    bodies = {}
    for op in runtime_model.get_ops():
        if _rt(op, "layerType") != "Subgraph":
            continue
        me = op.get_friendly_name()
        before = _neighbours(op, ops, upstream=True)
        after = _neighbours(op, ops, upstream=False)
        region = _reach(before, ops, after, forward=True) & _reach(after, ops, before, forward=False)
        body = [ops[n].get_type_name() for n in region if claimed.get(n, me) == me]
        bodies[me] = sorted(t for t in body if t not in _NO_BODY)
    return bodies


def _original_names(op: Any) -> list[str]:
    return [n for n in _rt(op, "originalLayersNames").split(",") if n]


def _upstream(node: Any) -> list[Any]:
    return [i.get_source_output().get_node() for i in node.inputs()]


def _downstream(node: Any) -> list[Any]:
    return [t.get_node() for o in node.outputs() for t in o.get_target_inputs()]


def _neighbours(op: Any, ops: dict[str, Any], upstream: bool) -> set[str]:
    """Original-model names of the nearest runtime nodes before (or after) ``op`` that have one
    (reorders the plugin inserted have none and are looked through)."""
    step = _upstream if upstream else _downstream
    found: set[str] = set()
    seen: set[int] = set()
    stack = [op]
    while stack:
        for n in step(stack.pop()):
            if id(n) in seen:
                continue
            seen.add(id(n))
            names = [m for m in _original_names(n) if m in ops]
            if names:
                found.update(names)
            else:
                stack.append(n)
    return found


def _reach(start: set[str], ops: dict[str, Any], stop: set[str], forward: bool) -> set[str]:
    """Original-model ops reachable from ``start`` (forward or backward), not passing ``stop``."""
    step = _downstream if forward else _upstream
    out: set[str] = set()
    stack = [ops[n] for n in start]
    while stack:
        for n in step(stack.pop()):
            name = n.get_friendly_name()
            if name in out or name in stop or name in start:
                continue
            out.add(name)
            stack.append(n)
    return out
