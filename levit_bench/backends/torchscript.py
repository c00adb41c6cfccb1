"""TorchScript: ``torch.jit.trace`` + ``freeze`` (cached) + ``optimize_for_inference`` (the ARM default).

TorchScript is deprecated upstream; it stays here because the paper's ARM protocol used it, and
warns once.  The frozen module is saved in the export cache and loaded from there.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .base import Backend, Prepared, Settings, model_name
from .cache import ExportCache, weights_hash
from .torch_eager import TorchRunner, place

_warned = False


def _warn_deprecated() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            "TorchScript is deprecated upstream (use torch-compile or onnxruntime where you can); "
            "levit-bench keeps it for the paper's ARM protocol",
            FutureWarning,
            stacklevel=3,
        )


class TorchScriptBackend(Backend):
    name = "torchscript"
    devices = ("cpu", "cuda")
    precisions = ("fp32", "fp16", "bf16")

    def prepare(self, model: nn.Module, example: torch.Tensor, settings: Settings, cache: ExportCache) -> Prepared:
        _warn_deprecated()
        placed, dtype = place(model, settings)
        key = cache.key(
            backend=self.name, model=model_name(model), weights=weights_hash(model), shape=tuple(example.shape),
            precision=settings.precision, half_mode=settings.half_mode, device=settings.device,
            channels_last=settings.channels_last, versions=self.versions(),
        )
        folder = cache.entry(self.name, model_name(model), key)
        runner_probe = TorchRunner(placed, settings, dtype)
        x = runner_probe._convert(example)

        def build(tmp: Path) -> None:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(placed, x, check_trace=False)
                frozen = torch.jit.freeze(traced.eval())
                torch.jit.save(frozen, str(tmp))  # optimized graphs don't serialise; optimise after loading

        start = time.perf_counter()
        path, reused = cache.get_or_build(folder, "model.pt", build, lambda: {"model": model_name(model)})
        export_s = 0.0 if reused else time.perf_counter() - start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.optimize_for_inference(torch.jit.load(str(path), map_location=settings.device).eval())
        return Prepared(
            TorchRunner(module, settings, dtype), export_s, str(path), path.stat().st_size, reused,
            notes=["deprecated upstream"],
        )
