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
#: the input size labels leave unsaid (ImageNet's); any other size is named in every label
STANDARD_IMG_SIZE = 224
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
    #: where a device runs another value unless told otherwise (CUDA: SDPA attention); the resolved
    #: value is what the identity records, so entries timed either way never match
    device_defaults: dict[str, Any] | None = None

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
    attention: str = _option("matmul", OptionInfo(
        TORCH_BACKENDS, "{} attention",
        "torch backends: LeViT's attention kernel, explicit matmul or fused scaled_dot_product_attention "
        "(default: sdpa on cuda, matmul on cpu)", ("matmul", "sdpa"), device_defaults={"cuda": "sdpa"}))
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

    @classmethod
    def for_device(cls, device: str, given: dict[str, Any]) -> RuntimeOptions:
        """The options a run on ``device`` uses: ``given`` (None: not asked for) over the device's
        own defaults over the declared ones."""
        values = {}
        for name, default, info in cls.declared():
            value = given.get(name)
            if value is None:
                value = (info.device_defaults or {}).get(device, default)
            values[name] = value
        return cls(**values)

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


def unknown_options_label(options: dict[str, Any] | None) -> str:
    """`` {name=value, ...}`` for the runtime options of a results file this version does not know
    (a newer version's): part of the variant, so such an entry is never matched with one measured
    without them (its options are not the same measurement); "" when every key is known."""
    names = {f.name for f in fields(RuntimeOptions)}
    unknown = sorted((k, v) for k, v in (options or {}).items() if k not in names)
    return " {" + ", ".join(f"{k}={v!r}" for k, v in unknown) + "}" if unknown else ""


@dataclass(frozen=True)
class Settings:
    """What a backend needs to know to prepare a runner.  ``threads`` is resolved (never empty)."""

    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 1
    options: RuntimeOptions = field(default_factory=RuntimeOptions)

    def with_options(self, **changes: Any) -> Settings:
        return replace(self, options=replace(self.options, **changes))


class Conditions(NamedTuple):
    """Where and how an entry ran, apart from model and backend: entries of different models or
    backends are compared only under the same Conditions."""

    device: str
    precision: str
    batch_size: int
    threads: int

    def words(self) -> str:
        return f"{self.device} {self.precision}, {threads_text(self.threads)}, batch {self.batch_size}"


class EntryKey(NamedTuple):
    """What matching compares: model, backend variant (options included), conditions, input size.
    (The weights' values do not change a speed; the identity records their hash all the same.)"""

    model: str
    variant: str
    conditions: Conditions
    img_size: int | None = None

    def label(self) -> str:
        c = self.conditions
        size = f" @{self.img_size}px" if self.img_size and self.img_size != STANDARD_IMG_SIZE else ""
        return (f"{self.model}{size} / {self.variant} / {c.device} {c.precision} / batch {c.batch_size} / "
                f"{threads_text(c.threads)}")


@dataclass(frozen=True)
class Identity:
    """What was measured, once for every record type (a timing entry, an accuracy record, a
    profile): the model and its weights, the input, the runtime and its options, where it ran.

    ``key``, ``variant`` and ``label`` are defined here and nowhere else; a results file stores the
    fields flat in each record (``to_dict``/``from_dict``)."""

    model: str
    backend: str
    device: str
    precision: str
    threads: int
    batch_size: int
    img_size: int | None = None
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    weights_hash: str | None = None
    #: runtime options of a newer version's file that this one does not know, as (name, value) pairs:
    #: part of the variant, so such an entry never matches one measured without them
    unknown_options: tuple[tuple[str, Any], ...] = ()

    FIELDS = ("model", "backend", "device", "precision", "threads", "batch_size", "img_size", "weights_hash")

    @classmethod
    def of(cls, model_id: ModelId, backend: str, settings: Settings, batch_size: int) -> Identity:
        return cls(model_id.name, backend, settings.device, settings.precision, settings.threads, batch_size,
                   model_id.img_size, settings.options, model_id.weights_hash)

    @property
    def variant(self) -> str:
        return variant(self.backend, self.precision, self.options) + unknown_options_label(dict(self.unknown_options))

    @property
    def conditions(self) -> Conditions:
        return Conditions(self.device, self.precision, self.batch_size, self.threads)

    @property
    def key(self) -> EntryKey:
        return EntryKey(self.model, self.variant, self.conditions, self.img_size)

    @property
    def settings(self) -> Settings:
        return Settings(self.device, self.precision, self.threads, self.options)

    def label(self) -> str:
        return self.key.label()

    def to_dict(self) -> dict[str, Any]:
        return {**{f: getattr(self, f) for f in self.FIELDS},
                "options": {**self.options.to_dict(), **dict(self.unknown_options)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        """From a record's flat fields (``options`` a dict; missing optional fields default; options
        this version does not know are kept, and named in the variant)."""
        options = data.get("options") or {}
        known = {f.name for f in fields(RuntimeOptions)}
        unknown = tuple(sorted((k, v) for k, v in options.items() if k not in known))
        return cls(**{f: data.get(f) for f in cls.FIELDS if f in data},
                   options=RuntimeOptions.from_dict(options), unknown_options=unknown)


class Identified:
    """What every record type (a timing entry, an accuracy record, a profile) reads through its
    ``identity``: the same names, defined once."""

    identity: Identity

    model = property(lambda self: self.identity.model)
    backend = property(lambda self: self.identity.backend)
    device = property(lambda self: self.identity.device)
    precision = property(lambda self: self.identity.precision)
    threads = property(lambda self: self.identity.threads)
    batch_size = property(lambda self: self.identity.batch_size)
    img_size = property(lambda self: self.identity.img_size)
    weights_hash = property(lambda self: self.identity.weights_hash)
    runtime_options = property(lambda self: self.identity.options)
    variant = property(lambda self: self.identity.variant)
    conditions = property(lambda self: self.identity.conditions)

    @property
    def options(self) -> dict[str, Any]:
        return self.identity.options.to_dict()

    def label(self) -> str:
        return self.identity.label()


@dataclass(frozen=True)
class ModelId:
    """Which model a runner computes, passed to backends explicitly (export cache keys, notes), so
    that no backend looks a model up in the zoo."""

    name: str
    img_size: int
    weights_hash: str | None  # None: the model could not be built
    #: the zoo's family (levit, deit, efficientnet, graft, timm): backends choose per-family settings
    #: by it (OpenVINO's int8 preset); empty when unknown (the runtime's generic settings)
    family: str = ""
