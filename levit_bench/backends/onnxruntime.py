"""ONNX Runtime: the shared ONNX export, one session with full graph optimisation.

CPU: intra-op threads = the run's threads, inter-op 1, sequential execution.  CUDA: the CUDA
execution provider when ``onnxruntime-gpu`` provides it; inputs are copied from host each call, as
an application feeding numpy arrays would.

int8 (CPU): the fp32 export quantized statically with ``onnxruntime.quantization.quantize_static``
in QDQ format, uint8 activations (asymmetric, per tensor: x86's u8×s8 instructions), int8 weights
(symmetric, per channel), MinMax ranges, 7-bit weights (``reduce_range``) on x86 CPUs without VNNI
as ONNX Runtime's documentation advises against saturating 16-bit sums (measured on this AVX2 EPYC,
levit_128s: centered cosine to fp32 0.996 with it, 0.977 without).  The calibration set and cache
are ``backends/quantize.py``'s.  ORT fuses QDQ groups into integer kernels when it optimizes the session;
how many Conv/MatMul/Gemm it fused is counted once (on the optimized graph) and noted, and an
artifact with none is a failed export, not an "int8" figure computed in fp32.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from ..spec import ModelId, Settings
from .base import Backend, Prepared, Runner, missing_package
from .cache import ExportCache
from .onnx_export import export_onnx
from .quantize import Calibration, cached_quantization, calibration_for, quiet, recipe_text, weights_7bit

#: kernels that compute in integers (after ORT fuses DequantizeLinear -> op -> QuantizeLinear)
INTEGER_KERNELS = frozenset({"QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger", "ConvInteger",
                             "MatMulIntegerToFloat", "DynamicQuantizeMatMul"})
DENSE_OPS = frozenset({"Conv", "MatMul", "Gemm"})


class OrtRunner(Runner):
    def __init__(self, session: Any):
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        feed = {self.input_name: np.ascontiguousarray(x.detach().cpu().float().numpy())}
        return functools.partial(self.session.run, None, feed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.array(self.bind(x)()[0], dtype=np.float32))

    def concurrency_facts(self, n: int) -> dict[str, Any]:
        """One session run from ``n`` threads (``InferenceSession.run`` is thread-safe), each run
        with the session's intra-op threads."""
        opts = self.session.get_session_options()
        return {"sessions": 1, "threads": n, "intra_op_threads": opts.intra_op_num_threads}

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
    precisions = ("fp32", "int8")

    def runtime_missing(self) -> str | None:
        return missing_package("onnxruntime", "onnxruntime") or missing_package("onnx", "onnx onnxscript")

    def unavailable_reason(self, settings: Settings) -> str | None:
        if settings.device == "cuda" and settings.precision == "int8":
            return "onnxruntime int8 is measured on CPU only (static QDQ quantization for the CPU execution provider)"
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
        notes = [exporter]
        if settings.precision == "int8":
            path, reused, quantize_s, int8_notes = self._quantized(path, model_id, settings, cache)
            export_s, notes = export_s + quantize_s, notes + int8_notes
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if settings.device == "cuda" else ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(path), sess_options=session_options(settings), providers=providers)
        return Prepared(OrtRunner(session), export_s, str(path), path.stat().st_size, reused, notes=notes)

    def _quantized(self, source: Path, model_id: ModelId, settings: Settings,
                   cache: ExportCache) -> tuple[Path, bool, float, list[str]]:
        """(int8 artifact, reused, seconds quantizing, notes) for the fp32 export at ``source``."""
        calibration = calibration_for(model_id, settings.options.calibration)
        recipe = int8_recipe()
        art = cached_quantization(cache, self.name, model_id, source, calibration, recipe, self.versions(),
                                  "model.onnx", lambda tmp: quantize_qdq(source, calibration, recipe, tmp))
        kernels = (f"ONNX Runtime runs {art.facts.get('integer_kernels')} of {art.facts.get('dense_ops')} "
                   "Conv/MatMul/Gemm as integer kernels")
        return art.path, art.reused, art.seconds, [
            f"int8: onnxruntime.quantization.quantize_static, {recipe_text(recipe)}", kernels, calibration.note()]


def int8_recipe() -> dict[str, Any]:
    """The quantization settings (they go into the cache key and the entry's notes)."""
    return {"format": "QDQ", "activations": "uint8 asymmetric per tensor", "weights": "int8 symmetric per channel",
            "weight bits": 7 if weights_7bit() else 8, "ranges": "MinMax"}


def quantize_qdq(source: Path, calibration: Calibration, recipe: dict[str, Any], out: Path) -> dict[str, Any]:
    """Quantize the fp32 ONNX model at ``source`` into ``out``; returns the facts kept with it (how many
    dense ops ORT runs as integer kernels).  An artifact with none is an ExportError."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = calibration.batches()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    with quiet():
        quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=recipe["weight bits"] == 7, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        optimized = out.with_name("optimized.onnx")
        opts.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(out), sess_options=opts, providers=["CPUExecutionProvider"])
    fused = sum(n.op_type in INTEGER_KERNELS for n in onnx.load(str(optimized)).graph.node)
    dense = sum(n.op_type in DENSE_OPS for n in onnx.load(str(source)).graph.node)
    optimized.unlink(missing_ok=True)
    if fused == 0:
        raise ExportError(f"int8: ONNX Runtime runs none of the {dense} Conv/MatMul/Gemm of the quantized model "
                          "as integer kernels (it would compute in fp32)")
    return {"integer_kernels": fused, "dense_ops": dense}
