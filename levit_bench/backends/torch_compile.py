"""``torch.compile`` (inductor) on CPU or CUDA; on CUDA, optionally with CUDA-graph replay."""
from __future__ import annotations

import os
import shutil
import time

import torch
from torch import nn

from .base import Backend, Prepared, Settings
from .cache import ExportCache
from .torch_eager import TorchRunner, describe, place


class CompiledRunner(TorchRunner):
    """A compiled module; closing it drops dynamo's caches so the next model compiles afresh."""

    def close(self) -> None:
        torch._dynamo.reset()


def _no_silent_fallback() -> None:
    """Make dynamo raise, not quietly run eager, when it hits its recompile limit.

    The limit counts per code object, so models of one family share it: in one process the ninth
    LeViT compile used to fall back to eager and be timed as "torch-compile" (H100 log,
    docs/performance.md).
    """
    if hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):  # torch >= 2.6
        torch._dynamo.config.fail_on_recompile_limit_hit = True


class TorchCompileBackend(Backend):
    name = "torch-compile"
    devices = ("cpu", "cuda")
    precisions = ("fp32", "fp16", "bf16")

    def runtime_missing(self) -> str | None:
        if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
            return "torch.compile needs a C++ compiler (g++), none found"
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor, settings: Settings, cache: ExportCache) -> Prepared:
        # inductor keeps its own compiled-kernel cache; keep it beside our exports
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache.root / "inductor"))
        _no_silent_fallback()
        placed, dtype = place(model, settings)
        mode = settings.compile_mode
        if settings.device == "cuda" and settings.cuda_graphs and mode == "default":
            mode = "reduce-overhead"
        compiled = torch.compile(placed, mode=None if mode == "default" else mode, dynamic=False)
        runner = CompiledRunner(compiled, settings, dtype)
        start = time.perf_counter()
        with torch.inference_mode():
            runner.bind(example)()  # compilation happens on the first call
        runner.synchronize()
        graphs = mode in ("reduce-overhead", "max-autotune") and settings.device == "cuda"
        notes = [f"mode={mode}"] + (["cuda graphs"] if graphs else []) + describe(placed, settings)
        return Prepared(runner, export_s=time.perf_counter() - start, notes=notes)
