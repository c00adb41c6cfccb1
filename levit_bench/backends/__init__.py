"""Runtimes behind one interface (see ``base.py``); one module per runtime."""
from __future__ import annotations

import platform

from ..spec import Settings
from ..sysinfo import is_arm
from .base import Backend, Prepared, Runner
from .cache import ExportCache, default_cache_root
from .onnxruntime import OnnxRuntimeBackend
from .openvino import OpenVinoBackend
from .torch_compile import TorchCompileBackend
from .torch_eager import TorchBackend
from .torchscript import TorchScriptBackend

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (TorchBackend(), TorchCompileBackend(), TorchScriptBackend(), OnnxRuntimeBackend(), OpenVinoBackend())
}


def default_backends(device: str) -> list[str]:
    """The backends a plain run uses on ``device`` (the paper's ARM protocol puts TorchScript first)."""
    if device == "cuda":
        names = ["torch", "torch-compile"]
        if OnnxRuntimeBackend().unavailable_reason(Settings(device="cuda")) is None:
            names.append("onnxruntime")
        return names
    if is_arm(platform.machine()):
        return ["torchscript", "onnxruntime", "torch"]
    return ["torch", "torchscript", "onnxruntime", "openvino"]


__all__ = [
    "BACKENDS", "Backend", "ExportCache", "Prepared", "Runner", "Settings", "default_backends", "default_cache_root",
]
