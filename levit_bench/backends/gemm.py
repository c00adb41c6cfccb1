"""One dense GEMM per runtime, for the machine's peak (``peak.py``): ONNX Runtime and OpenVINO each
run a one-MatMul model ``Y = A · B`` (``A`` an input, ``B`` a constant, as a model's weights are)
with the run's session settings, so the peak is the best dense GEMM among the installed runtimes
and no entry passes 100% of it (OpenVINO reached 98–120% of torch's GEMM on the 2-core VM).
torch's own GEMM stays in ``peak.py``, which sizes the problem with it."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import Settings
from .base import missing_package

#: the runtimes whose GEMM the peak takes the best of, in the order they are reported
GEMM_RUNTIMES = ("torch", "onnxruntime", "openvino")


def unavailable(runtime: str, device: str, precision: str) -> str | None:
    """Why ``runtime``'s GEMM is not measured here (None: it is)."""
    if runtime == "torch":
        return None
    if device != "cpu":
        return f"{runtime}'s GEMM is measured on cpu only"
    if precision != "fp32":
        return f"{runtime}'s GEMM is measured in fp32 only"
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}[runtime]
    return missing_package(module, module) or (missing_package("onnx", "onnx") if runtime == "onnxruntime" else None)


def operands(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded float32 ``A`` and ``B``, the same for every runtime."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32))


def onnxruntime_gemm(n: int, threads: int) -> Callable[[], Any]:
    """A session of one ONNX MatMul (built with ``onnx.helper``), run into one bound output: no
    allocation per call, as torch's ``mm(out=)``."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from .onnxruntime import session_options

    a, b = operands(n)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["Y"])], "gemm",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), sess_options=session_options(Settings(threads=threads)),
                                   providers=["CPUExecutionProvider"])
    y = np.empty((n, n), dtype=np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input("A", a)
    binding.bind_output("Y", "cpu", 0, np.float32, [n, n], y.ctypes.data)
    return _Call(lambda: session.run_with_iobinding(binding), lambda: y, a, y)  # the binding points into a and y


def openvino_gemm(n: int, threads: int) -> Callable[[], Any]:
    """A model of one ``opset.matmul`` compiled for CPU as the openvino backend compiles (LATENCY,
    f32, the run's threads), run by one infer request (its output tensor is reused)."""
    import openvino as ov
    from openvino import opset13 as ops

    a, b = operands(n)
    param = ops.parameter([n, n], np.float32, name="A")
    model = ov.Model([ops.matmul(param, ops.constant(b), False, False)], [param], "gemm")
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                                      "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(a, shared_memory=True))

    def call() -> None:
        request.start_async()
        request.wait()

    return _Call(call, lambda: request.get_output_tensor().data, a)  # the request reads a's memory


class _Call:
    """A zero-argument call that keeps alive the arrays a runtime reads or writes through pointers."""

    def __init__(self, fn: Callable[[], Any], output: Callable[[], np.ndarray], *keep: np.ndarray):
        self.fn, self.output, self.keep = fn, output, keep  # output(): the last call's product

    def __call__(self) -> Any:
        return self.fn()


BUILDERS: dict[str, Callable[[int, int], Callable[[], Any]]] = {
    "onnxruntime": onnxruntime_gemm, "openvino": openvino_gemm}
