"""``torch.compile`` (inductor) on CPU or CUDA; on CUDA, optionally with CUDA-graph replay.

Inductor's kernel cache (under the export cache) and dynamo's no-silent-fallback policy are set by
the run (``runstate.run_state``), not here: they are process state.
"""
from __future__ import annotations

import shutil
import time

import torch
from torch import nn

from ..spec import ModelId, Settings
from .base import Backend, Prepared
from .cache import ExportCache
from .torch_eager import TorchRunner, describe, place


class TorchCompileBackend(Backend):
    name = "torch-compile"
    devices = ("cpu", "cuda")
    precisions = ("fp32", "fp16", "bf16")

    def end_group(self) -> None:
        """Drop dynamo's caches once the group's compiled runners are closed (they are global)."""
        torch._dynamo.reset()

    def runtime_missing(self) -> str | None:
        if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
            return "torch.compile needs a C++ compiler (g++), none found"
        return None

    def prepare(self, model: nn.Module, model_id: ModelId, example: torch.Tensor, settings: Settings,
                cache: ExportCache) -> Prepared:
        placed, dtype = place(model, settings)
        mode = settings.options.compile_mode
        if settings.device == "cuda" and settings.options.cuda_graphs and mode == "default":
            mode = "reduce-overhead"
        compiled = torch.compile(placed, mode=None if mode == "default" else mode, dynamic=False)
        runner = TorchRunner(compiled, settings, dtype)
        start = time.perf_counter()
        with torch.inference_mode():
            runner.bind(example)()  # compilation happens on the first call
        runner.synchronize()
        graphs = mode in ("reduce-overhead", "max-autotune") and settings.device == "cuda"
        notes = [f"mode={mode}"] + (["cuda graphs"] if graphs else []) + describe(placed, settings)
        return Prepared(runner, export_s=time.perf_counter() - start, notes=notes)
