"""OpenVINO on CPU (any x86-64, Intel or not): the shared ONNX export, compiled at a static shape.

Synchronous mode uses the LATENCY hint and one infer request; asynchronous mode the THROUGHPUT hint
and an ``AsyncInferQueue`` with the device's optimal number of requests, counting images as
``benchmark_app`` does (all batches completed / wall time).  Precision is f32 unless bf16/fp16 is
asked for: on CPUs with bf16 units OpenVINO otherwise computes in bf16 silently.  Compiled blobs go
into the export cache (OpenVINO's CACHE_DIR).
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..spec import ModelId, Settings
from .base import Backend, Prepared, Runner, missing_package
from .cache import ExportCache
from .onnx_export import export_onnx

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
#: OpenVINO's name in ``OPTIMIZATION_CAPABILITIES`` for a CPU that computes natively in this precision
OV_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}


#: OpenVINO's element type name (``compiled.get_property("INFERENCE_PRECISION_HINT")``) -> ours
FROM_OV_TYPE = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


@functools.lru_cache(maxsize=1)
def optimization_capabilities() -> tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (e.g. ``FP32, INT8, BIN, EXPORT_IMPORT``);
    empty when OpenVINO or its CPU plugin is missing.  Asked once per process."""
    try:
        import openvino as ov

        return tuple(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - no OpenVINO, or no CPU plugin: nothing is native
        return ()


def native_precisions() -> set[str]:
    """The precisions this CPU computes natively according to OpenVINO (``fp32``, and ``bf16``/``fp16``
    only on CPUs with those units); empty when OpenVINO is missing."""
    caps = set(optimization_capabilities())
    return {p for p, cap in OV_CAPABILITY.items() if cap in caps}


def executed_precision(reported: Any, native: set[str]) -> str:
    """Our name for the precision a compiled model computes in, from its ``INFERENCE_PRECISION_HINT``
    property (an element type: ``f32``, ``bf16``, ``f16``), cross-checked with the CPU's native
    precisions: a reduced precision the CPU has no units for is computed in f32."""
    name = reported.get_type_name() if hasattr(reported, "get_type_name") else str(reported)
    name = name.strip().lower()
    ours = FROM_OV_TYPE.get(name) or {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name)
    if ours is None:
        raise RuntimeError(f"OpenVINO reports an unknown inference precision {name!r}")
    if ours != "fp32" and native and ours not in native:
        return "fp32"
    return ours


def _as_array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().float().numpy())


class OpenVinoSyncRunner(Runner):
    def __init__(self, compiled: Any):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self._keep: np.ndarray | None = None

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        import openvino as ov

        self._keep = _as_array(x)  # the request reads this memory; keep it alive
        self.request.set_input_tensor(ov.Tensor(self._keep, shared_memory=True))
        request = self.request

        def call() -> None:
            request.start_async()
            request.wait()

        return call

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        request = self.compiled.create_infer_request()
        request.infer({0: _as_array(x)})
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32))


class OpenVinoAsyncRunner(OpenVinoSyncRunner):
    def __init__(self, compiled: Any):
        import openvino as ov

        super().__init__(compiled)
        self.queue = ov.AsyncInferQueue(compiled, 0)  # 0: the device's optimal number of requests
        self.batches_per_call = len(self.queue)

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        import openvino as ov

        self._keep = _as_array(x)
        tensor = ov.Tensor(self._keep, shared_memory=True)
        for i in range(len(self.queue)):
            self.queue[i].set_input_tensor(tensor)
        queue, n = self.queue, len(self.queue)

        def call() -> None:
            for _ in range(n):
                queue.start_async()
            queue.wait_all()

        return call


class OpenVinoBackend(Backend):
    name = "openvino"
    devices = ("cpu",)
    precisions = ("fp32", "bf16", "fp16")

    def runtime_missing(self) -> str | None:
        return missing_package("openvino", "openvino") or missing_package("onnx", "onnx onnxscript")

    def unavailable_reason(self, settings: Settings) -> str | None:
        """Besides the usual reasons: fp16/bf16 on a CPU without those units, where OpenVINO would
        silently compute in f32 (the entry would be an f32 figure labelled fp16/bf16)."""
        reason = super().unavailable_reason(settings)
        if reason is not None or settings.precision == "fp32":
            return reason
        if settings.precision not in native_precisions():
            caps = ", ".join(optimization_capabilities()) or "none reported"
            return (f"this CPU has no {settings.precision} units: OpenVINO would compute in f32 "
                    f"(OPTIMIZATION_CAPABILITIES: {caps})")
        return None

    def versions(self) -> dict[str, str]:
        import openvino as ov

        return {**super().versions(), "openvino": ov.get_version()}

    def prepare(self, model: nn.Module, model_id: ModelId, example: torch.Tensor, settings: Settings,
                cache: ExportCache) -> Prepared:
        import openvino as ov

        path, reused, export_s, exporter = export_onnx(model, model_id, example, cache)
        core = ov.Core()
        ov_model = core.read_model(str(path))
        ov_model.reshape({0: list(example.shape)})  # static shape, as benchmark_app -shape does
        hint = "THROUGHPUT" if settings.options.openvino_mode == "async" else "LATENCY"
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": hint,
            "INFERENCE_PRECISION_HINT": OV_PRECISION[settings.precision],
            "CACHE_DIR": str(cache.root / "openvino"),
        }
        config["INFERENCE_NUM_THREADS"] = settings.threads
        start = time.perf_counter()
        compiled = core.compile_model(ov_model, "CPU", config)
        compile_s = time.perf_counter() - start
        runner = OpenVinoAsyncRunner(compiled) if settings.options.openvino_mode == "async" else OpenVinoSyncRunner(compiled)
        prop = compiled.get_property("INFERENCE_PRECISION_HINT")
        actual = prop.get_type_name() if hasattr(prop, "get_type_name") else str(prop)
        executed = executed_precision(prop, native_precisions())
        notes = [exporter, f"{hint.lower()} hint, precision {actual}, compile {compile_s:.2f}s"]
        if executed != settings.precision:
            notes.append(f"asked for {settings.precision}, OpenVINO computes in {executed}")
        if settings.options.openvino_mode == "async":
            notes.append(f"{runner.batches_per_call} async requests")
        return Prepared(runner, export_s, str(path), path.stat().st_size, reused, notes=notes,
                        executed_precision=executed)
