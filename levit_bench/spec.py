"""The vocabulary of *what was measured*: runtime options, settings, keys, statuses, events.

Every layer above the backends (bench, results, gate, report, the CLI and its tables) names a measurement
with these types and nothing else, so "which setting" means one thing everywhere.

Adding a runtime option is one edit here (a field of :class:`RuntimeOptions` with its
:class:`OptionInfo`) plus the backend code that honours it: the CLI flag, the results record, the
variant label in tables, reports and ``compare`` all follow from the declaration.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

DEVICES = ("cpu", "cuda")
#: precisions a torch tensor can be cast to (a GEMM peak, the torch backends)
FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")
#: int8: post-training static quantization of the fp32 export (ONNX Runtime, OpenVINO; ``backends/quantize.py``)
PRECISIONS = FLOAT_PRECISIONS + ("int8",)
BASELINE_BACKEND = "torch"
TORCH_BACKENDS = frozenset({"torch", "torch-compile", "torchscript"})
#: the torch dtype of each float precision (the torch backends cast to it, the peak's GEMM runs in it)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Status(str, enum.Enum):
    """How an entry ended: measured, could not run here, or broke (export, parity, runtime)."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


class EventKind(str, enum.Enum):
    """Progress notifications of a run (sent outside any timed region)."""

    STEP = "step"  # an entry is being prepared and timed
    ENTRY = "entry"  # an entry is finished (ok, failed or skipped)
    ROUND = "round"  # a round of timing (every prepared entry once) is done


def threads_text(n: int) -> str:
    """``1 thread``, ``2 threads``: how every label and table names a thread count."""
    return f"{n} thread{'s' if n != 1 else ''}"


@dataclass(frozen=True)
class OptionInfo:
    """How one runtime option is declared: where it applies, how it is shown and asked for."""

    backends: frozenset[str]  # the backends it changes; elsewhere it is not part of the variant
    label: str  # the variant label, ``{}`` replaced by the value ("mode {}", "channels last")
    help: str
    choices: tuple[str, ...] | None = None  # None: a boolean flag, unless ``metavar`` is given
    precisions: tuple[str, ...] | None = None  # only meaningful at these precisions (None: at all)
    metavar: str | None = None  # a free value (a path, ...): the flag takes it, e.g. ``--calibration DIR``
    show: Callable[[Any], str] = str  # the value as the label shows it (a folder: its name)

    def applies(self, backend: str, precision: str) -> bool:
        """Whether the option changes how ``backend`` runs at ``precision``."""
        return backend in self.backends and (self.precisions is None or precision in self.precisions)


def _option(default: Any, info: OptionInfo) -> Any:
    return field(default=default, metadata={"info": info})


@dataclass(frozen=True)
class RuntimeOptions:
    """Options that change how a backend runs a model (and so its speed); defaults are the plain run."""

    half_mode: str = _option("cast", OptionInfo(
        TORCH_BACKENDS, "{}", "how torch backends run fp16/bf16: cast the weights, or autocast",
        ("cast", "autocast"), precisions=("fp16", "bf16")))
    channels_last: bool = _option(False, OptionInfo(
        TORCH_BACKENDS, "channels last", "torch backends: channels_last memory format"))
    compile_mode: str = _option("default", OptionInfo(
        frozenset({"torch-compile"}), "mode {}", "torch-compile mode",
        ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")))
    cuda_graphs: bool = _option(False, OptionInfo(
        frozenset({"torch-compile"}), "CUDA graphs", "torch-compile on CUDA: replay CUDA graphs"))
    openvino_mode: str = _option("sync", OptionInfo(
        frozenset({"openvino"}), "{}", "sync: latency hint, one request; async: throughput hint, AsyncInferQueue",
        ("sync", "async")))
    calibration: str | None = _option(None, OptionInfo(
        frozenset({"onnxruntime", "openvino"}), "calibration {}",
        "int8: calibrate the quantization on this folder of images, read with each model's eval transform "
        "(default: seeded synthetic inputs, and the accuracy is then unknown)",
        precisions=("int8",), metavar="DIR", show=lambda v: Path(v).name or str(v)))

    @classmethod
    def declared(cls) -> list[tuple[str, Any, OptionInfo]]:
        """(name, default, info) of every option, in declaration order."""
        return [(f.name, f.default, f.metadata["info"]) for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RuntimeOptions:
        """From a results file's ``options`` (unknown keys ignored, missing ones default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def labels(self, backend: str, precision: str) -> list[str]:
        """Non-default options that apply to ``backend`` at ``precision``, as shown in tables."""
        out = []
        for name, default, info in self.declared():
            value = getattr(self, name)
            if value == default or not info.applies(backend, precision):
                continue
            out.append(info.label.format(info.show(value)))
        return out


def variant(backend: str, precision: str, options: RuntimeOptions) -> str:
    """The backend with its non-default runtime options, e.g. ``torch-compile [channels last, CUDA graphs]``.

    Two entries that differ only in variant ran differently: they are not the same measurement.
    """
    parts = options.labels(backend, precision)
    return backend + (f" [{', '.join(parts)}]" if parts else "")


@dataclass(frozen=True)
class Settings:
    """What a backend needs to know to prepare a runner.  ``threads`` is resolved (never empty)."""

    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 1
    options: RuntimeOptions = field(default_factory=RuntimeOptions)

    def with_options(self, **changes: Any) -> Settings:
        return replace(self, options=replace(self.options, **changes))


class Setting(NamedTuple):
    """Where and how an entry ran, apart from model and backend: entries of different models or
    backends are compared only at the same Setting."""

    device: str
    precision: str
    batch_size: int
    threads: int

    def words(self) -> str:
        return f"{self.device} {self.precision}, {threads_text(self.threads)}, batch {self.batch_size}"


class EntryKey(NamedTuple):
    """An entry's identity: model, backend variant (options included) and setting."""

    model: str
    variant: str
    setting: Setting

    def label(self) -> str:
        s = self.setting
        return f"{self.model} / {self.variant} / {s.device} {s.precision} / batch {s.batch_size} / {threads_text(s.threads)}"


@dataclass(frozen=True)
class ModelId:
    """Which model a runner computes, passed to backends explicitly (export cache keys, notes), so
    that no backend looks a model up in the zoo."""

    name: str
    img_size: int
    weights_hash: str
    #: the zoo's family (levit, deit, efficientnet, graft, timm): backends choose per-family settings
    #: by it (OpenVINO's int8 preset); empty when unknown (the runtime's generic settings)
    family: str = ""
