"""Eager PyTorch on CPU or CUDA: fp32, or fp16/bf16 by casting the weights or by autocast."""
from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..spec import DTYPES, ModelId, Settings
from .base import Backend, Prepared, Runner
from .cache import ExportCache


class TorchRunner(Runner):
    """Calls a torch module (eager, compiled or scripted) under ``inference_mode``."""

    def __init__(self, module: Callable[[torch.Tensor], torch.Tensor], settings: Settings, input_dtype: torch.dtype):
        self.module = module
        self.device = torch.device(settings.device)
        self.input_dtype = input_dtype
        self.channels_last = settings.options.channels_last
        self.autocast = settings.precision != "fp32" and settings.options.half_mode == "autocast"
        self.autocast_dtype = DTYPES[settings.precision]

    def _convert(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.input_dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def _context(self) -> contextlib.AbstractContextManager:
        if self.autocast:
            return torch.autocast(self.device.type, dtype=self.autocast_dtype)
        return contextlib.nullcontext()

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        # the bound input is made the same kind of tensor (an inference tensor) as in the parity
        # call: torch.compile guards on it, and a mismatch costs a recompile per model
        with torch.inference_mode():
            x = self._convert(x)
        if not self.autocast:
            return functools.partial(self.module, x)

        def call() -> Any:
            with self._context():
                return self.module(x)

        return call

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with self._context():
            out = self.module(self._convert(x))
        return out.float().cpu()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def place(model: nn.Module, settings: Settings) -> tuple[nn.Module, torch.dtype]:
    """A copy of ``model`` on the settings' device, cast when precision says so; and the input dtype.

    A model that offers it (LeViT) uses the attention kernel of ``settings.options.attention`` (a
    declared runtime option, so it is part of the entry's identity; CUDA runs default to SDPA:
    measured 1.27x faster than explicit matmul attention for levit_256 fp16 on an H100,
    docs/performance.md).
    """
    model = copy.deepcopy(model).eval().to(settings.device)
    if hasattr(model, "set_attention"):
        model.set_attention(settings.options.attention)
    dtype = torch.float32
    if settings.precision != "fp32" and settings.options.half_mode == "cast":
        dtype = DTYPES[settings.precision]
        model = model.to(dtype)
    if settings.options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, dtype


class TorchBackend(Backend):
    name = "torch"
    devices = ("cpu", "cuda")
    precisions = ("fp32", "fp16", "bf16")

    def prepare(self, model: nn.Module, model_id: ModelId, example: torch.Tensor, settings: Settings,
                cache: ExportCache) -> Prepared:
        placed, dtype = place(model, settings)
        return Prepared(TorchRunner(placed, settings, dtype), notes=describe(placed, settings))


def describe(placed: nn.Module, settings: Settings) -> list[str]:
    """Notes for the results: how half precision is applied, memory format, attention kernel."""
    notes = [] if settings.precision == "fp32" else [f"{settings.precision} by {settings.options.half_mode}"]
    if settings.options.channels_last:
        notes.append("channels_last")
    if any(getattr(m, "sdpa", False) for m in placed.modules()):
        notes.append("sdpa attention")
    return notes
