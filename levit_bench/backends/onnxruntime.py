"""ONNX Runtime: the shared ONNX export, one session with full graph optimisation.

CPU: intra-op threads = the run's threads, inter-op 1, sequential execution.  CUDA: the CUDA
execution provider when ``onnxruntime-gpu`` provides it; inputs are copied from host each call, as
an application feeding numpy arrays would.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..spec import ModelId, Settings
from .base import Backend, Prepared, Runner, missing_package
from .cache import ExportCache
from .onnx_export import export_onnx


class OrtRunner(Runner):
    def __init__(self, session: Any):
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        feed = {self.input_name: np.ascontiguousarray(x.detach().cpu().float().numpy())}
        return functools.partial(self.session.run, None, feed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.array(self.bind(x)()[0], dtype=np.float32))

    def close(self) -> None:
        self.session = None


def session_options(settings: Settings) -> Any:
    """Full graph optimisation, intra-op threads = the run's threads, inter-op 1, quiet."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = settings.threads
    opts.log_severity_level = 3
    return opts


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    devices = ("cpu", "cuda")
    precisions = ("fp32",)

    def runtime_missing(self) -> str | None:
        return missing_package("onnxruntime", "onnxruntime") or missing_package("onnx", "onnx onnxscript")

    def unavailable_reason(self, settings: Settings) -> str | None:
        reason = super().unavailable_reason(settings)
        if reason is None and settings.device == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "onnxruntime has no CUDA execution provider (pip install onnxruntime-gpu)"
        return reason

    def versions(self) -> dict[str, str]:
        import onnxruntime as ort

        return {**super().versions(), "onnxruntime": ort.__version__}

    def prepare(self, model: nn.Module, model_id: ModelId, example: torch.Tensor, settings: Settings,
                cache: ExportCache) -> Prepared:
        import onnxruntime as ort

        path, reused, export_s, exporter = export_onnx(model, model_id, example, cache)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if settings.device == "cuda" else ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(path), sess_options=session_options(settings), providers=providers)
        return Prepared(OrtRunner(session), export_s, str(path), path.stat().st_size, reused, notes=[exporter])
