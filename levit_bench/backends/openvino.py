"""OpenVINO on CPU (any x86-64, Intel or not): the shared ONNX export, compiled at a static shape.

Synchronous mode uses the LATENCY hint and one infer request; asynchronous mode the THROUGHPUT hint
and an ``AsyncInferQueue`` with the device's optimal number of requests, counting images as
``benchmark_app`` does (all batches completed / wall time).  Precision is f32 unless bf16/fp16 is
asked for: on CPUs with bf16 units OpenVINO otherwise computes in bf16 silently.  Compiled blobs go
into the export cache (OpenVINO's CACHE_DIR).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Backend, Prepared, Runner, Settings, missing_package
from .cache import ExportCache
from .onnx_export import export_onnx

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


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

    def versions(self) -> dict[str, str]:
        import openvino as ov

        return {**super().versions(), "openvino": ov.get_version()}

    def prepare(self, model: nn.Module, example: torch.Tensor, settings: Settings, cache: ExportCache) -> Prepared:
        import openvino as ov

        path, reused, export_s, exporter = export_onnx(model, example, cache)
        core = ov.Core()
        ov_model = core.read_model(str(path))
        ov_model.reshape({0: list(example.shape)})  # static shape, as benchmark_app -shape does
        hint = "THROUGHPUT" if settings.openvino_mode == "async" else "LATENCY"
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": hint,
            "INFERENCE_PRECISION_HINT": OV_PRECISION[settings.precision],
            "CACHE_DIR": str(cache.root / "openvino"),
        }
        if settings.threads:
            config["INFERENCE_NUM_THREADS"] = settings.threads
        start = time.perf_counter()
        compiled = core.compile_model(ov_model, "CPU", config)
        compile_s = time.perf_counter() - start
        runner = OpenVinoAsyncRunner(compiled) if settings.openvino_mode == "async" else OpenVinoSyncRunner(compiled)
        prop = compiled.get_property("INFERENCE_PRECISION_HINT")
        actual = prop.get_type_name() if hasattr(prop, "get_type_name") else str(prop)
        notes = [exporter, f"{hint.lower()} hint, precision {actual}, compile {compile_s:.2f}s"]
        if settings.openvino_mode == "async":
            notes.append(f"{runner.batches_per_call} async requests")
        return Prepared(runner, export_s, str(path), path.stat().st_size, reused, notes=notes)
