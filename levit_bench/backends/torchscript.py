"""TorchScript: ``torch.jit.trace`` + ``freeze`` (cached) + ``optimize_for_inference`` (the ARM default).

TorchScript is deprecated upstream; it stays here because the paper's ARM protocol used it, and
warns once.  The frozen module is saved in the export cache and loaded from there.
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..spec import ModelId, Settings
from .base import Backend, Prepared
from .cache import ExportCache
from .torch_eager import TorchRunner, place

_warned = False


DEPRECATION = ("TorchScript is deprecated upstream (use torch-compile or onnxruntime where you can); "
               "levit-bench keeps it for the paper's ARM protocol")


def _warn_deprecated() -> None:
    """Warn once per process.  Under ``-W error`` / ``PYTHONWARNINGS=error`` the warning would become
    an exception and fail every torchscript entry: it is logged instead (every entry's notes say
    "deprecated upstream" either way)."""
    global _warned
    if not _warned:
        _warned = True
        try:
            warnings.warn(DEPRECATION, FutureWarning, stacklevel=3)
        except FutureWarning:  # escalated to an error by the warnings filter
            logging.getLogger(__name__).warning("%s", DEPRECATION)


class TorchScriptBackend(Backend):
    name = "torchscript"
    devices = ("cpu", "cuda")
    precisions = ("fp32", "fp16", "bf16")

    def prepare(self, model: nn.Module, model_id: ModelId, example: torch.Tensor, settings: Settings,
                cache: ExportCache) -> Prepared:
        _warn_deprecated()
        placed, dtype = place(model, settings)
        key = cache.key(
            backend=self.name, model=model_id.name, weights=model_id.weights_hash, shape=tuple(example.shape),
            precision=settings.precision, half_mode=settings.options.half_mode, device=settings.device,
            channels_last=settings.options.channels_last, versions=self.versions(),
        )
        folder = cache.entry(self.name, model_id.name, key)
        runner_probe = TorchRunner(placed, settings, dtype)
        x = runner_probe._convert(example)

        def build(tmp: Path) -> None:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(placed, x, check_trace=False)
                frozen = torch.jit.freeze(traced.eval())
                torch.jit.save(frozen, str(tmp))  # optimized graphs don't serialise; optimise after loading

        start = time.perf_counter()
        path, reused = cache.get_or_build(folder, "model.pt", build, lambda: {"model": model_id.name})
        export_s = 0.0 if reused else time.perf_counter() - start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.optimize_for_inference(torch.jit.load(str(path), map_location=settings.device).eval())
        return Prepared(
            TorchRunner(module, settings, dtype), export_s, str(path), path.stat().st_size, reused,
            notes=["deprecated upstream"],
        )
