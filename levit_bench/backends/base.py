"""The one interface every runtime implements, the settings it receives, and what it returns.

A backend turns a (fused) eager model into a :class:`Runner`.  The harness never sees the runtime:
it asks the runner to ``bind`` an input once, then calls the returned zero-argument function in its
timed loop.  Parity checks call the runner with a tensor and get float32 logits back.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..spec import ModelId, Settings
from .cache import ExportCache


@dataclass
class Prepared:
    """A ready runner and what preparing it cost."""

    runner: Runner
    export_s: float = 0.0
    artifact: str | None = None
    artifact_bytes: int | None = None
    reused: bool = False
    notes: list[str] = field(default_factory=list)
    #: the precision the runtime reports it computes in, when it can differ from the one asked for
    #: (OpenVINO on a CPU without bf16/fp16 units computes those requests in f32); None: as asked
    executed_precision: str | None = None


class Runner(ABC):
    """A prepared model in one runtime."""

    #: how many batches one bound call processes (more than one only for asynchronous queues)
    batches_per_call: int = 1

    @abstractmethod
    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        """Convert/copy ``x`` once and return a zero-argument call that runs one batch on it."""

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for ``x`` as a float32 CPU tensor (used for parity, not timed)."""

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA); a no-op for synchronous runtimes."""

    def close(self) -> None:
        """Release sessions/requests early; garbage collection does it otherwise."""

    # -- concurrency under load (issue 22: ``levit-bench load``)

    def bind_many(self, x: torch.Tensor, n: int) -> list[Callable[[], Any]]:
        """``n`` bound calls on ``x`` that ``n`` threads may run at once, each runtime its own way.
        The default is one call shared: a runtime whose call is thread-safe and runs calls from
        several threads side by side (an ONNX Runtime session, a torch module).  A runtime whose
        call holds a per-call object (OpenVINO's infer request) gives each thread its own."""
        call = self.bind(x)
        return [call] * n

    def concurrency_facts(self, n: int) -> dict[str, Any]:
        """How ``n`` concurrent calls run in this runtime, for the record (streams, requests, sessions)."""
        return {"shared_call": True}


class Backend(ABC):
    """A runtime: a name, where it runs, why it can't, and how to prepare a runner."""

    name: str = ""
    devices: tuple[str, ...] = ("cpu",)
    precisions: tuple[str, ...] = ("fp32",)

    def unavailable_reason(self, settings: Settings) -> str | None:
        """One line saying why this backend cannot run with ``settings`` here, or None."""
        if settings.device not in self.devices:
            return f"{self.name} does not run on {settings.device}"
        if settings.precision not in self.precisions:
            return f"{self.name} does not support {settings.precision} here (supports {', '.join(self.precisions)})"
        if settings.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device"
        return self.runtime_missing()

    def runtime_missing(self) -> str | None:
        """Reason the runtime's package is missing, or None."""
        return None

    @abstractmethod
    def prepare(self, model: nn.Module, model_id: ModelId, example: torch.Tensor, settings: Settings,
                cache: ExportCache) -> Prepared:
        """Export/compile ``model`` (already fused, eval, fp32, on CPU) for ``settings``.

        ``model_id`` names it (export cache keys); ``example`` is the batch parity runs on."""

    def versions(self) -> dict[str, str]:
        """Versions that go into the cache key and the results."""
        return {"torch": torch.__version__}

    def end_group(self) -> None:
        """Release process-wide state after a group of runners was timed and closed (a runtime
        whose state is global, like dynamo's caches, resets it here; never per runner, since the
        other runners of the group are still in use then)."""


def missing_package(module: str, pip_name: str) -> str | None:
    """``None`` if ``module`` imports, else the one-line reason with the install hint."""
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed (pip install {pip_name})"
    return None

